#!/usr/bin/env python3
"""Sums a `perf record -e cpu-clock` profile (bench_path.py --perf FILE) by cost centre: each
sample's own symbol (self time, from `perf report`; release builds have no frame pointers,
so call stacks are not walked) is put in the first bucket whose pattern it contains.

    scripts/perf_buckets.py FILE [--top 15]
"""
import argparse
import collections
import subprocess

BUCKETS = [
    ("deflate (gzip)", ["miniz_oxide", "zlib_rs", "deflate", "crc32", "adler"]),
    ("worker batch decode (bincode)", ["bincode", "rpc::_::", "Batch>::deserialize", "deserialize_"]),
    ("normalise", ["normalize", "Checker"]),
    ("protobuf encode (feed)", ["pb::encode", "pb::field_len", "pb::point_len", "pb::value_len"]),
    ("protobuf decode (queue read)", ["pb::decode", "pb::Entries", "pb::Wire", "ValueRef", "from_utf8"]),
    ("line protocol encode", ["lineproto::"]),
    ("queue, fsync, files", ["dk_queue", "fdatasync", "ext4", "jbd2", "vfs_", "file_"]),
    ("allocator", ["mi_", "_mi_", "mimalloc", "drop_in_place", "Drop>::drop"]),
    ("memcpy/memset", ["memmove", "memcpy", "memset", "memcmp"]),
    ("HTTP (hyper, reqwest)", ["hyper", "reqwest", "h2::", "http::"]),
    ("tokio, scheduling", ["tokio", "finish_task_switch", "schedule", "futex", "epoll", "_raw_spin"]),
    ("kernel, network", ["tcp_", "skb", "ip_", "net_", "sock", "unix_", "copy_to_iter", "copy_from_iter"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    out = subprocess.run(["perf", "report", "-i", args.file, "--no-children", "--sort", "sym", "--stdio",
                          "-g", "none", "--percent-limit", "0"], capture_output=True, text=True).stdout
    syms = collections.Counter()
    for line in out.splitlines():
        # "    44.99%  [.] miniz_oxide::deflate::core::compress_inner   ..." ([k] for the kernel)
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[0].endswith("%") or line.lstrip().startswith("#"):
            continue
        sym = parts[1] + " " + parts[2].split("  ")[0].strip()
        syms[sym] += float(parts[0].rstrip("%"))
    total = 100.0
    buckets = collections.Counter()
    for sym, n in syms.items():
        name = next((b for b, pats in BUCKETS if any(p in sym for p in pats)),
                    "kernel, other" if sym.startswith("[k]") else "other")
        buckets[name] += n
    for name, n in buckets.most_common():
        print(f"{100 * n / total:5.1f} %  {name}")
    print("top symbols:")
    for sym, n in syms.most_common(args.top):
        print(f"{100 * n / total:5.1f} %  {sym[:100]}")


if __name__ == "__main__":
    main()
