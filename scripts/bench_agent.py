#!/usr/bin/env python3
"""Load harness for the running agent (idle memory and restart figures).

Starts the real binary (release by default) in a temp work dir with Datakit's default inputs,
then prints:
  * idle PSS of the supervisor and every worker after a settle period;
  * time from `kill -9` of the host worker to the replacement being up (hello + control done,
    `datakit_worker_up{family="host"} 1`), over several rounds.

With --idle SECONDS it instead points the agent at a loopback Dataway stand-in
(dataway_stub.py), lets it settle, and prints the CPU seconds per minute (utime + stime from
/proc) of the supervisor and of every worker over SECONDS, with the inputs that were on, the
points that reached the stand-in and the load average.

Usage: scripts/bench_agent.py [--bin target/release/datakit] [--settle 20] [--rounds 10]
       scripts/bench_agent.py --idle 120 [--settle 20]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchkit import children, cpu_s, free_port, get, loadavg, pss_kib, rss_kib, stop_agent
from dataway_stub import Stub


def metric(port, series):
    for line in get(port, "/metrics").splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def wait_up(port, timeout=20, worker=True):
    """Until the host worker is up (or, with `worker` false, the API answers)."""
    deadline = time.time() + timeout
    while True:
        try:
            if not worker:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/ping", timeout=2).read()
                return
            if metric(port, 'datakit_worker_up{family="host"}') == 1.0:
                return
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("agent did not come up")
        time.sleep(0.05)


def kill_and_time(proc, port):
    host = [p for p, n in children(proc.pid) if n == "worker host"][0]
    t0 = time.perf_counter()
    os.kill(host, signal.SIGKILL)
    while True:
        kids = [p for p, n in children(proc.pid) if n == "worker host" and p != host]
        if kids:
            try:
                if metric(port, 'datakit_worker_up{family="host"}') == 1.0:
                    return (time.perf_counter() - t0) * 1000
            except OSError:
                pass
        time.sleep(0.002)


def set_dataway(conf, url):
    """The generated main config with `[dataway] urls` (maybe spread over lines) set to `url`."""
    out, section, skipping = [], "", False
    for line in conf.splitlines():
        t = line.strip()
        if skipping:
            skipping = "]" not in t.split("#", 1)[0]
            continue
        if t.startswith("["):
            section = t
        if section == "[dataway]" and t.startswith("urls"):
            out.append(f'  urls = ["{url}"]')
            skipping = "]" not in t.split("#", 1)[0].split("=", 1)[1]
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def set_inputs(conf, inputs):
    """The main config with `default_enabled_inputs` (maybe spread over lines) set to the
    comma-separated `inputs` ("" for none)."""
    names = [n.strip() for n in inputs.split(",") if n.strip()]
    out, skipping = [], False
    for line in conf.splitlines():
        t = line.split("#", 1)[0].strip()
        if skipping:
            skipping = "]" not in t
            continue
        if t.startswith("default_enabled_inputs"):
            out.append("default_enabled_inputs = [" + ", ".join(f'"{n}"' for n in names) + "]")
            skipping = "]" not in t
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def idle_cpu(proc, port, args, conf, stub):
    inputs = ""
    if "default_enabled_inputs" in conf:
        tail = conf.split("default_enabled_inputs", 1)[1]
        inputs = " ".join(l.split("#", 1)[0].strip() for l in tail[:tail.index("]") + 1].splitlines())
    procs = [(proc.pid, "supervisor")] + children(proc.pid)
    load0 = loadavg()
    c0 = {pid: cpu_s(pid) for pid, _ in procs}
    # utime + stime come in 10 ms clock ticks (a step of 0.0033 s/min over 180 s); perf's
    # task-clock (every thread, also those started meanwhile) is exact.
    perf = {}
    if shutil.which("perf"):
        for pid, _ in procs:
            perf[pid] = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", "task-clock", "-p", str(pid), "--", "sleep", str(args.idle)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(args.idle)
    per_min = 60.0 / args.idle
    print(f"idle CPU over {args.idle:.0f} s after {args.settle:.0f} s of settling, Dataway stand-in configured")
    print(f"  inputs: default_enabled_inputs {inputs or '(absent: the defaults)'}")
    total = 0.0
    exact = 0.0
    for pid, name in procs:
        c = (cpu_s(pid) - c0[pid]) * per_min
        total += c
        line = f"  {name:<20} pid {pid:>7}  {c:6.3f} CPU s per minute"
        if pid in perf:
            _, err = perf[pid].communicate(timeout=30)
            ms = next((float(l.split(",")[0]) for l in err.splitlines() if "task-clock" in l), None)
            if ms is not None:
                exact += ms / 1000 * per_min
                line += f"  (perf task-clock {ms / 1000 * per_min:.4f})"
        print(line)
    print(f"  total {total:.3f} CPU s per minute (target <= 0.05)"
          + (f"; perf task-clock {exact:.4f}" if perf else ""))
    print(f"  points at the stand-in: {stub.snapshot()}")
    print(f"  load average (1 min): {load0:.2f} before, {loadavg():.2f} after")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--settle", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--idle", type=float, default=0,
                    help="measure idle CPU per process over this many seconds (Dataway stand-in configured)")
    ap.add_argument("--inputs", default=None,
                    help="replace default_enabled_inputs with these (comma-separated; '' for none)")
    args = ap.parse_args()
    stub = None
    if args.idle:
        stub = Stub()
        stub.start()
    work = tempfile.mkdtemp(prefix="dk-bench-")
    port = free_port()
    os.makedirs(f"{work}/conf.d")
    proc = subprocess.Popen([args.bin, "run", "--workdir", work, "--log", f"{work}/log"],
                            stdin=subprocess.DEVNULL)
    try:
        # The first run writes conf.d/datakit.conf on the default port; restart on ours.
        deadline = time.time() + 10
        while not os.path.exists(f"{work}/conf.d/datakit.conf") and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        conf = open(f"{work}/conf.d/datakit.conf").read().replace("localhost:9529", f"127.0.0.1:{port}")
        if stub:
            conf = set_dataway(conf, stub.url)
        if args.inputs is not None:
            conf = set_inputs(conf, args.inputs)
        open(f"{work}/conf.d/datakit.conf", "w").write(conf)
        proc = subprocess.Popen([args.bin, "run", "--workdir", work, "--log", f"{work}/log"],
                                stdin=subprocess.DEVNULL)
        host = args.inputs is None or any(
            n.strip() and not n.strip().startswith("-") for n in args.inputs.split(","))
        wait_up(port, worker=host)
        time.sleep(args.settle)
        if args.idle:
            idle_cpu(proc, port, args, conf, stub)
            return
        procs = [(proc.pid, "supervisor")] + children(proc.pid)
        total_pss = 0
        print(f"idle after {args.settle:.0f}s with the default inputs:")
        for pid, name in procs:
            pss, rss = pss_kib(pid), rss_kib(pid)
            total_pss += pss
            print(f"  {name:<20} pid {pid:>7}  PSS {pss/1024:6.1f} MiB  RSS {rss/1024:6.1f} MiB")
        print(f"  total PSS {total_pss/1024:.1f} MiB")

        times = [kill_and_time(proc, port)]
        for _ in range(args.rounds - 1):
            # A fresh agent per round: restarts in a row back off (100, 200, 400 ms...), and
            # the figure wanted is the first restart after a healthy period.
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            proc = subprocess.Popen([args.bin, "run", "--workdir", work, "--log", f"{work}/log"],
                                    stdin=subprocess.DEVNULL)
            wait_up(port)
            times.append(kill_and_time(proc, port))
        times.sort()
        print(f"kill -9 host worker -> replacement up: median {times[len(times)//2]:.0f} ms, "
              f"min {times[0]:.0f} ms, max {times[-1]:.0f} ms over {len(times)} rounds "
              f"(includes the 100 ms +-20 % first backoff step)")
    finally:
        stop_agent(proc, work, timeout=20)
        if stub:
            stub.stop()


if __name__ == "__main__":
    main()
