#!/usr/bin/env python3
"""Idle CPU of the agent with the first-run config, with and without the `dk` input.

Starts the real binary (release by default) in a temp work dir, lets the first run write
conf.d/datakit.conf (Datakit's default inputs), moves the API to a free port, settles, then
reads the CPU time (utime + stime) of the supervisor and every worker over a window and prints
it as seconds of CPU per minute. With --dk it also writes conf.d/host/dk.conf (the sample,
interval 30 s), so the difference is the cost of `dk`.

Usage: scripts/bench_idle_cpu.py [--bin target/release/datakit] [--settle 15] [--window 60] [--dk]
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from benchkit import free_port, get, stop_agent

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    f = stat.rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICKS


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
                out.append((int(d), b" ".join(cmd[1:3]).decode()))
        except (OSError, IndexError, ValueError):
            pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--settle", type=float, default=15)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--dk", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dk-idle-")
    port = free_port()
    os.makedirs(f"{work}/conf.d")
    run = [args.bin, "run", "--workdir", work, "--log", f"{work}/log"]
    proc = subprocess.Popen(run, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not os.path.exists(f"{work}/conf.d/datakit.conf") and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        conf = open(f"{work}/conf.d/datakit.conf").read().replace("localhost:9529", f"127.0.0.1:{port}")
        open(f"{work}/conf.d/datakit.conf", "w").write(conf)
        if args.dk:
            os.makedirs(f"{work}/conf.d/host", exist_ok=True)
            here = os.path.dirname(os.path.abspath(__file__))
            sample = open(os.path.join(here, "..", "conf.d", "host", "dk.conf")).read()
            open(f"{work}/conf.d/host/dk.conf", "w").write(sample)
        proc = subprocess.Popen(run, stdin=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                if 'datakit_worker_up{family="host"} 1' in get(port, "/metrics"):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("agent did not come up")
            time.sleep(0.1)
        time.sleep(args.settle)
        procs = [(proc.pid, "supervisor")] + children(proc.pid)
        before = {p: cpu_seconds(p) for p, _ in procs}
        time.sleep(args.window)
        total = 0.0
        label = "default inputs + dk" if args.dk else "default inputs"
        print(f"idle CPU over {args.window:.0f}s ({label}):")
        for pid, name in procs:
            used = (cpu_seconds(pid) - before[pid]) * 60 / args.window
            total += used
            print(f"  {name:<20} pid {pid:>7}  {used:.3f} s/min")
        print(f"  total {total:.3f} s/min")
    finally:
        stop_agent(proc, work, timeout=20)


if __name__ == "__main__":
    main()
