#!/usr/bin/env python3
"""Load harness for DCA: the supervisor's idle cost with DCA on, and the console's actions.

Starts `datakit dca` (the console) and one agent with no inputs, once with `[dca]` off and once
on, and prints for each after a settle period:
  * the supervisor's PSS and RSS;
  * its CPU use (utime + stime from /proc) over an idle window;
then, with DCA on, the console process's RSS and the round-trip time of a stats request and of
a config save (checked like `datakit check`, written, reloaded) through the console's page API.

Usage: scripts/bench_dca.py [--bin target/release/datakit] [--settle 10] [--window 30] [--saves 20]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchkit import free_port, get, pss_kib, rss_kib, stop_agent


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait(what, f, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = f()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def start_agent(binary, console, dca):
    work = tempfile.mkdtemp(prefix="bench-dca-")
    os.makedirs(f"{work}/conf.d")
    port = free_port()
    dca_conf = (
        f'[dca]\n  enable = true\n  websocket_server = "ws://{console}/ws"\n  token = "bench-token"\n'
        if dca
        else ""
    )
    with open(f"{work}/conf.d/datakit.conf", "w") as f:
        f.write(
            f'default_enabled_inputs = []\n[http_api]\n  listen = "127.0.0.1:{port}"\n'
            f'[logging]\n  log = "{work}/log/log"\n[resource_limit]\n  enable = false\n{dca_conf}'
        )
    proc = subprocess.Popen([binary, "run", "--workdir", work],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait("the agent", lambda: get(port, "/v1/ping"))
    return proc, work, port


def api(console, method, path, body=None):
    req = urllib.request.Request(f"http://{console}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


def idle(proc, settle, window):
    time.sleep(settle)
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.time(), cpu_ticks(proc.pid)
    time.sleep(window)
    t1, c1 = time.time(), cpu_ticks(proc.pid)
    return pss_kib(proc.pid), rss_kib(proc.pid), (c1 - c0) / hz / (t1 - t0) * 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--settle", type=float, default=10)
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--saves", type=int, default=20)
    args = ap.parse_args()

    tokens = tempfile.NamedTemporaryFile("w", delete=False)
    tokens.write("bench bench-token\n")
    tokens.close()
    console = f"127.0.0.1:{free_port()}"
    cproc = subprocess.Popen([args.bin, "dca", "--listen", console, "--tokens", tokens.name],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait("the console", lambda: api(console, "GET", "/api/agents") is not None)
        for dca in (False, True):
            proc, work, _ = start_agent(args.bin, console, dca)
            try:
                if dca:
                    wait("the agent on the console", lambda: api(console, "GET", "/api/agents"))
                pss, rss, cpu = idle(proc, args.settle, args.window)
                print(f"supervisor, DCA {'on ' if dca else 'off'}: PSS {pss / 1024:.1f} MiB, "
                      f"RSS {rss / 1024:.1f} MiB, CPU {cpu:.3f} % over {args.window:.0f} s idle")
                if not dca:
                    continue
                agent = api(console, "GET", "/api/agents")[0]["id"]
                stats = []
                for _ in range(args.saves):
                    t = time.perf_counter()
                    assert api(console, "GET", f"/api/agents/{agent}/stats")["success"]
                    stats.append((time.perf_counter() - t) * 1000)
                saves = []
                for i in range(args.saves):
                    body = {"path": "host/cpu.conf", "isNew": False,
                            "config": f'[[inputs.cpu]]\n  interval = "{10 + i}s"\n'}
                    t = time.perf_counter()
                    r = api(console, "POST", f"/api/agents/{agent}/config", body)
                    saves.append((time.perf_counter() - t) * 1000)
                    assert r["success"], r
                stats.sort()
                saves.sort()
                print(f"stats round trip: median {stats[len(stats) // 2]:.1f} ms, max {stats[-1]:.1f} ms")
                print(f"checked save round trip: median {saves[len(saves) // 2]:.1f} ms, "
                      f"max {saves[-1]:.1f} ms ({args.saves} saves)")
                print(f"console RSS with one agent: {rss_kib(cproc.pid) / 1024:.1f} MiB")
            finally:
                stop_agent(proc, work)
    finally:
        cproc.terminate()
        cproc.wait(timeout=10)
        os.unlink(tokens.name)


if __name__ == "__main__":
    main()
