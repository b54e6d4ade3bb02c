#!/usr/bin/env python3
"""HTTP write load harness (durable delivery figures).

Starts the real binary (release by default) with the durable queue and the local-files sink as
the upstream (or a URL given with --dataway), then drives `POST /v1/write/metric` with
1000-line bodies over N connections using `wrk` (Debian package `wrk`), and prints:
  points/s accepted (HTTP 200), non-200 responses, ack latency percentiles from wrk,
  CPU seconds and CPU microseconds per accepted point of the supervisor and of each worker,
  peak and final RSS of the supervisor, and the load average before and after (other work
  on the machine skews every figure).

Usage: scripts/bench_write.py [--bin target/release/datakit] [--conns 8] [--seconds 20]
"""
import argparse
import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchkit import children, cpu_s, free_port, loadavg, rss_kib, status_kib, stop_agent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--dataway", default="")
    ap.add_argument("--gzip", action="store_true", help="send the bodies gzipped (Content-Encoding: gzip)")
    ap.add_argument("--perf", default="", help="also record the supervisor with `perf record -e cpu-clock -g` into this file")
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
    if args.gzip:
        data = gzip.compress(body.encode(), 6)
        open(f"{work}/body.gz", "wb").write(data)
        open(lua, "wb").write(b'wrk.method = "POST"\nlocal f = io.open("' + f"{work}/body.gz".encode() +
                              b'", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
                              b'wrk.headers["Content-Type"] = "text/plain"\n'
                              b'wrk.headers["Content-Encoding"] = "gzip"\n')
    else:
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
        procs = [(proc.pid, "supervisor")] + children(proc.pid)
        cpu0 = {pid: cpu_s(pid) for pid, _ in procs}
        load0 = loadavg()
        threading.Thread(target=sample, daemon=True).start()
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", args.perf,
                                     "-p", str(proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = subprocess.run(["wrk", "-t", str(args.threads), "-c", str(args.conns), "-d", f"{args.seconds}s",
                              "--latency", "-s", lua, f"http://127.0.0.1:{port}/v1/write/metric"],
                             capture_output=True, text=True).stdout
        stop.set()
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        cpu = {pid: cpu_s(pid) - cpu0[pid] for pid, _ in procs}
        load1 = loadavg()
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
        points = (total - non2xx) * 1000
        for pid, name in procs:
            per = cpu[pid] * 1e6 / points if points else 0.0
            print(f"{name:<20} CPU {cpu[pid]:6.2f} s  {per:5.2f} us per accepted point")
        print(f"supervisor RSS: idle {idle/1024:.1f} MiB, peak {max(peak[0], status_kib(proc.pid, 'VmHWM'))/1024:.1f} MiB, "
              f"after {rss_kib(proc.pid)/1024:.1f} MiB")
        print(f"load average (1 min): {load0:.2f} before, {load1:.2f} after")
    finally:
        stop_agent(proc, work)


if __name__ == "__main__":
    main()
