#!/usr/bin/env python3
"""HTTP write load harness (durable delivery figures).

Starts the real binary (release by default) with the durable queue and the local-files sink as
the upstream (or a URL given with --dataway), then drives `POST /v1/write/metric` with
1000-line bodies over N connections using `wrk` (Debian package `wrk`), and prints:
  points/s accepted (HTTP 200), non-200 responses, ack latency percentiles from wrk,
  peak and final RSS of the supervisor, and the points that reached the sink.

Usage: scripts/bench_write.py [--bin target/release/datakit] [--conns 8] [--seconds 20]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchkit import free_port, rss_kib, stop_agent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--dataway", default="")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    work = tempfile.mkdtemp(prefix="dk-write-")
    port = free_port()
    os.makedirs(f"{work}/conf.d")
    dw = f'urls = ["{args.dataway}"]' if args.dataway else ""
    open(f"{work}/conf.d/datakit.conf", "w").write(f"""
default_enabled_inputs = []
[http_api]
  listen = "127.0.0.1:{port}"
  request_rate_limit = 0.0
[dataway]
  {dw}
[logging]
  log = "{work}/log"
""")
    lines = []
    # Current times: points more than 2 h off would be corrected (auto_timestamp_correction).
    now_s = int(time.time())
    for i in range(1000):
        lines.append(f"bench,host=h{i % 10},region=eu-west-1,service=api value={i}.5,count={i}i,ok=true {now_s}{i:09d}")
    body = "\n".join(lines) + "\n"
    lua = f"{work}/post.lua"
    open(lua, "w").write('wrk.method = "POST"\nwrk.body = [[' + body + ']]\n'
                         'wrk.headers["Content-Type"] = "text/plain"\n')
    proc = subprocess.Popen([args.bin, "run", "--workdir", work], stdin=subprocess.DEVNULL)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(proc.pid))
            time.sleep(0.2)

    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/ping", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("agent did not come up")
                time.sleep(0.05)
        idle = rss_kib(proc.pid)
        threading.Thread(target=sample, daemon=True).start()
        out = subprocess.run(["wrk", "-t", str(args.threads), "-c", str(args.conns), "-d", f"{args.seconds}s",
                              "--latency", "-s", lua, f"http://127.0.0.1:{port}/v1/write/metric"],
                             capture_output=True, text=True).stdout
        stop.set()
        print(out)
        total = 0
        secs = float(args.seconds)
        non2xx = 0
        for line in out.splitlines():
            if " requests in " in line:
                parts = line.split()
                total = int(parts[0])
                secs = float(parts[3].rstrip("s,"))
            if "Non-2xx" in line:
                non2xx = int(line.split()[-1])
        ok = (total - non2xx) / secs
        print(f"accepted: {ok * 1000:,.0f} points/s over {args.conns} connections "
              f"({ok:,.0f} bodies/s of 1000 lines answered 200), non-2xx responses: {non2xx} of {total}")
        print(f"supervisor RSS: idle {idle/1024:.1f} MiB, peak {peak[0]/1024:.1f} MiB, "
              f"after {rss_kib(proc.pid)/1024:.1f} MiB")
    finally:
        stop_agent(proc, work)


if __name__ == "__main__":
    main()
