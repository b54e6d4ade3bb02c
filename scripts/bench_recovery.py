#!/usr/bin/env python3
"""Recovery after kill -9 with a large queue (recovery figure).

Starts the real binary with an unreachable Dataway (so everything stays queued), fills the
metric queue to --gib GiB through the write API (wrk, 1000-line bodies), kills the supervisor
with SIGKILL, starts it again on the same work dir and prints how long until the API answers
(/v1/ping) and until the queue gauge is back, plus the queued bytes before and after.

Usage: scripts/bench_recovery.py [--bin target/release/datakit] [--gib 1]
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from benchkit import free_port, get, stop_agent


def queue_bytes(port):
    for line in get(port, "/metrics").splitlines():
        if line.startswith('datakit_io_queue_bytes{category="metric"}'):
            return float(line.split()[-1])
    return None


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def start(binary, work):
    return subprocess.Popen([binary, "run", "--workdir", work], stdin=subprocess.DEVNULL)


def wait_ping(port, timeout=120):
    t0 = time.perf_counter()
    while True:
        try:
            get(port, "/v1/ping")
            return time.perf_counter() - t0
        except OSError:
            if time.perf_counter() - t0 > timeout:
                sys.exit("agent did not answer")
            time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--gib", type=float, default=1.0)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dk-recover-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    port, dead = free_port(), free_port()
    os.makedirs(f"{work}/conf.d")
    open(f"{work}/conf.d/datakit.conf", "w").write(f"""
default_enabled_inputs = []
[http_api]
  listen = "127.0.0.1:{port}"
  request_rate_limit = 0.0
[dataway]
  urls = ["http://127.0.0.1:{dead}?token=tkn_0123456789abcdef0123456789abcdef"]
  [dataway.wal]
    max_capacity_gb = {args.gib * 2}
[logging]
  log = "{work}/log"
""")
    body = "\n".join(f"bench,host=h{i % 10},region=eu-west-1 value={i}.5,count={i}i 1700000000{i:09d}"
                     for i in range(1000)) + "\n"
    lua = f"{work}/post.lua"
    open(lua, "w").write('wrk.method = "POST"\nwrk.body = [[' + body + ']]\n')
    proc = start(args.bin, work)
    try:
        wait_ping(port)
        target = args.gib * (1 << 30)
        qdir = f"{work}/cache"
        while du(qdir) < target:
            subprocess.run(["wrk", "-t1", "-c8", "-d5s", "-s", lua, f"http://127.0.0.1:{port}/v1/write/metric"],
                           capture_output=True)
        before = du(qdir)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.perf_counter()
        proc = start(args.bin, work)
        ping = wait_ping(port)
        while queue_bytes(port) in (None, 0.0):
            time.sleep(0.01)
        gauge = time.perf_counter() - t0
        print(f"queued before kill -9: {before / (1 << 30):.2f} GiB on disk")
        print(f"restart -> API answering: {ping * 1000:.0f} ms; -> queue gauge reported: {gauge * 1000:.0f} ms; "
              f"queued after restart: {queue_bytes(port) / (1 << 30):.2f} GiB")
    finally:
        stop_agent(proc, work)


if __name__ == "__main__":
    main()
