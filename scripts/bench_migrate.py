#!/usr/bin/env python3
"""Adopting a large Datakit cache/dw-wal (migration figure).

Writes a synthetic Datakit 1.84 fail cache into a new work dir (diskcache files of 20 MiB:
uint32 LE length + CacheData protobuf with a gzipped line-protocol body of 1000 points,
EOF marker 0xdeadbeef), starts the real binary with an unreachable Dataway (so the adopted
points stay queued) and prints how long until the API answers, until every point is counted
in datakit_io_migrated_point_total, and the supervisor's peak RSS (VmHWM).

Usage: scripts/bench_migrate.py [--bin target/release/datakit] [--points 2000000]
"""
import argparse
import gzip
import os
import struct
import subprocess
import sys
import tempfile
import time

from benchkit import free_port, get, stop_agent, status_kib

BATCH = 20 << 20
EOF = struct.pack("<I", 0xDEADBEEF)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def cache_data(category, payload, pts, raw_len, pkg_time):
    return (b"\x08" + varint(category) + b"\x10" + varint(0)
            + b"\x1a" + varint(len(payload)) + payload
            + b"\x20" + varint(pts) + b"\x28" + varint(raw_len) + b"\x40" + varint(pkg_time))


def write_wal(fc, points):
    os.makedirs(fc)
    seq, size, f, written = 0, 0, None, 0
    now = int(time.time())
    while written < points:
        n = min(1000, points - written)
        raw = "".join(f"bench,host=h{i % 10},region=eu-west-1 value={written + i}.5,seq={written + i}i "
                      f"{(now - 60) * 10**9 + written + i}\n" for i in range(n)).encode()
        rec = cache_data(3, gzip.compress(raw, 1), n, len(raw), now)
        if f is None:
            f, size = open(f"{fc}/data", "wb"), 0
        f.write(struct.pack("<I", len(rec)) + rec)
        size += 4 + len(rec)
        written += n
        if size >= BATCH or written == points:
            f.write(EOF)
            f.close()
            os.rename(f"{fc}/data", f"{fc}/data.{seq:032d}")
            seq, f = seq + 1, None
    open(f"{fc}/data", "wb").close()
    open(f"{fc}/.pos", "wb").write(struct.pack("<q", -1))
    return seq


def migrated(port):
    total = 0.0
    for line in get(port, "/metrics").splitlines():
        if line.startswith("datakit_io_migrated_point_total{"):
            total += float(line.split()[-1])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--points", type=int, default=2_000_000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dk-migrate-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    port, dead = free_port(), free_port()
    os.makedirs(f"{work}/conf.d")
    open(f"{work}/conf.d/datakit.conf", "w").write(f"""
default_enabled_inputs = []
[http_api]
  listen = "127.0.0.1:{port}"
[dataway]
  urls = ["http://127.0.0.1:{dead}?token=tkn_0123456789abcdef0123456789abcdef"]
[logging]
  log = "{work}/log"
""")
    files = write_wal(f"{work}/cache/dw-wal/fc", args.points)
    wal_bytes = sum(os.path.getsize(os.path.join(f"{work}/cache/dw-wal/fc", f))
                    for f in os.listdir(f"{work}/cache/dw-wal/fc"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([args.bin, "run", "--workdir", work], stdin=subprocess.DEVNULL)
    try:
        while True:
            try:
                get(port, "/v1/ping")
                break
            except OSError:
                if time.perf_counter() - t0 > 60:
                    sys.exit("agent did not answer")
                time.sleep(0.005)
        ping = time.perf_counter() - t0
        while migrated(port) < args.points:
            if time.perf_counter() - t0 > 600:
                sys.exit(f"only {migrated(port)} of {args.points} points adopted in 600 s")
            time.sleep(0.02)
        done = time.perf_counter() - t0
        hwm = status_kib(proc.pid, "VmHWM")
        left = os.path.exists(f"{work}/cache/dw-wal/fc")
        print(f"Datakit WAL: {args.points} points, {files} files, {wal_bytes / (1 << 20):.1f} MiB")
        print(f"start -> API answering: {ping * 1000:.0f} ms; -> all points adopted: {done * 1000:.0f} ms "
              f"({args.points / (done - ping):,.0f} points/s after the API was up); "
              f"supervisor VmHWM {hwm / 1024:.1f} MiB; Datakit files left: {left}")
    finally:
        stop_agent(proc, work)


if __name__ == "__main__":
    main()
