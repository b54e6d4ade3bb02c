#!/usr/bin/env python3
"""API abuse harness: the supervisor under slow clients and compressed bombs.

Starts the real binary (release by default) with the API on a loopback port and no inputs, then
  1. opens --slow connections that each send one header byte every second (slowloris),
     pinging /v1/ping meanwhile, and reports how many the agent kept open, how many it closed
     at once (connection cap) or after the header timeout, the ping latencies and the
     supervisor's peak RSS;
  2. sends --bombs concurrent 1 MiB gzip bodies that inflate to 1 GiB of zeros and reports the
     answers, the time and the supervisor's peak RSS;
  3. checks that a normal write still lands afterwards.
Bounded in count and time; loopback only. Raises its own RLIMIT_NOFILE to fit --slow.

Usage: scripts/bench_api_abuse.py [--bin target/release/datakit] [--slow 20000] [--bombs 64]
"""
import argparse
import gzip
import os
import resource
import selectors
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from benchkit import free_port, status_kib


def ping(port, timeout=5.0):
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/ping", timeout=timeout) as r:
            r.read()
            ok = r.status == 200
    except (urllib.error.URLError, OSError):
        ok = False
    return ok, (time.perf_counter() - t) * 1000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def metric(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def slowloris(port, pid, n, seconds):
    sel = selectors.DefaultSelector()
    socks, refused = [], 0
    for _ in range(n):
        try:
            s = socket.socket()
        except OSError:
            refused += 1
            continue
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
            s.close()
            continue
        socks.append(s)
        sel.register(s, selectors.EVENT_READ)
    header = b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\n"
    pings, failed, peak = [], 0, 0
    closed_at = {}
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < seconds:
        # One header byte per connection per second.
        for s in socks:
            if s.fileno() in closed_at or s.fileno() < 0:
                continue
            try:
                s.send(header[step % len(header):step % len(header) + 1])
            except OSError:
                pass
        step += 1
        tick_end = time.monotonic() + 1.0
        while time.monotonic() < tick_end:
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed_at[s.fileno()] = time.monotonic() - start
                    sel.unregister(s)
            ok, ms = ping(port)
            pings.append(ms)
            failed += 0 if ok else 1
            peak = max(peak, status_kib(pid, "VmRSS"))
    early = sum(1 for t in closed_at.values() if t < 1.0)
    late = len(closed_at) - early
    still = len(socks) - len(closed_at)
    for s in socks:
        s.close()
    print(f"slow clients: {n} opened ({refused} refused by the kernel), {early} closed within 1 s "
          f"(connection cap), {late} closed later (header timeout), {still} open after {seconds} s")
    print(f"  /v1/ping meanwhile: {len(pings)} pings, {failed} failed, p50 {pct(pings, .5):.1f} ms, "
          f"p99 {pct(pings, .99):.1f} ms, max {max(pings):.1f} ms")
    print(f"  supervisor RSS peak {peak / 1024:.1f} MiB")


def bombs(port, pid, n):
    body = gzip.compress(b"\0" * (1 << 30), compresslevel=9)
    answers = {}
    lock = threading.Lock()
    peak = [0]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
            time.sleep(0.02)

    def one():
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/write/metric", data=body,
                                     headers={"Content-Encoding": "gzip"})
        try:
            code = urllib.request.urlopen(req, timeout=60).status
        except urllib.error.HTTPError as e:
            code = e.code
        except OSError as e:
            code = type(e).__name__
        with lock:
            answers[code] = answers.get(code, 0) + 1

    threading.Thread(target=sampler, daemon=True).start()
    t = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    done.set()
    print(f"gzip bombs: {n} × {len(body) / 1e6:.1f} MB (1 GiB inflated) in {time.monotonic() - t:.1f} s, "
          f"answers {answers}, supervisor RSS peak {peak[0] / 1024:.1f} MiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--slow", type=int, default=20000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--bombs", type=int, default=64)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.slow + 4096
    try:  # root may raise its hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, want)), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.slow > soft - 512:
        print(f"open-files limit {soft}: {soft - 512} slow clients instead of {args.slow}")
        args.slow = soft - 512
    work = tempfile.mkdtemp(prefix="dk-abuse-")
    port = free_port()
    os.makedirs(f"{work}/conf.d")
    open(f"{work}/conf.d/datakit.conf", "w").write(f"""
default_enabled_inputs = []
[http_api]
  listen = "127.0.0.1:{port}"
  request_rate_limit = 0.0
  timeout = "10s"
[logging]
  log = "{work}/log"
""")
    proc = subprocess.Popen([args.bin, "run", "--workdir", work], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not ping(port, 1)[0]:
            if time.monotonic() > deadline:
                raise SystemExit("the agent did not answer /v1/ping within 20 s")
            time.sleep(0.05)
        print(f"idle supervisor RSS {status_kib(proc.pid, 'VmRSS') / 1024:.1f} MiB")
        if args.slow:
            slowloris(port, proc.pid, args.slow, args.seconds)
        if args.bombs:
            bombs(port, proc.pid, args.bombs)
        rejected = metric(port, "datakit_http_api_rejected_total")
        print("rejected:", {k.split("{")[1].rstrip("}"): int(v) for k, v in rejected.items() if "{" in k})
        now = time.time_ns()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/write/metric",
                                     data=f"after,t=1 f=1i {now}\n".encode())
        print("a normal write afterwards:", urllib.request.urlopen(req, timeout=10).status)
        print(f"supervisor VmHWM {status_kib(proc.pid, 'VmHWM') / 1024:.1f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
