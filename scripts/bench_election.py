#!/usr/bin/env python3
"""Load harness for leader election (failover time, idle cost of the supervisor).

Starts three agents (release binary by default) on loopback with `[election]` on and the
socket input probing a local listener, against a real etcd (`--backend etcd`, Debian
`etcd-server`) or the fake Dataway's election protocol (`--backend dataway`, the
`fake_dataway` example). Then prints:
  * the supervisor's idle RSS/PSS and CPU over `--settle` seconds, for the leader and a
    follower (election on, socket input only);
  * failover time over `--rounds` rounds: `kill -9` of the leader's supervisor -> the new
    leader's first socket point received by its supervisor
    (`datakit_rpc_push_points_total{family="socket"}` rises). The killed agent is restarted
    as a follower before the next round.

Usage: scripts/bench_election.py [--backend etcd|dataway] [--bin target/release/datakit]
         [--fake target/release/examples/fake_dataway] [--lease 2] [--interval 1]
         [--rounds 5] [--settle 30]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from benchkit import cpu_s, free_port, get, pss_kib, rss_kib, stop_agent

TOKEN = "tkn_0123456789abcdef0123456789abcdef"
PUSHED = 'datakit_rpc_push_points_total{family="socket"}'


def metric(port, series):
    for line in get(port, "/metrics").splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def info(port):
    return json.loads(get(port, "/v1/election/info"))["content"]


def wait(what, timeout, f, step=0.02):
    deadline = time.time() + timeout
    while True:
        try:
            v = f()
            if v:
                return v
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(step)


class Agent:
    def __init__(self, binary, name, election, probe_port):
        self.binary, self.name = binary, name
        self.work = tempfile.mkdtemp(prefix=f"dk-elect-{name}-")
        self.port = free_port()
        os.makedirs(f"{self.work}/conf.d/network")
        with open(f"{self.work}/conf.d/datakit.conf", "w") as f:
            f.write(f'default_enabled_inputs = []\n[http_api]\n  listen = "127.0.0.1:{self.port}"\n'
                    f'[logging]\n  log = "{self.work}/log"\n[sinks.local]\n  enable = true\n'
                    f'[resource_limit]\n  enable = false\n{election}')
        with open(f"{self.work}/conf.d/network/socket.conf", "w") as f:
            f.write(f'[[inputs.socket]]\n  dest_url = ["tcp://127.0.0.1:{probe_port}"]\n  interval = "10s"\n')
        self.proc = None

    def start(self):
        env = dict(os.environ, ENV_HOSTNAME=self.name)
        self.proc = subprocess.Popen([self.binary, "run", "--workdir", self.work],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        wait(f"{self.name} to answer", 20, lambda: get(self.port, "/v1/ping"))

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        stop_agent(self.proc, self.work, timeout=20)


def start_backend(args, tmp):
    if args.backend == "etcd":
        client, peer = free_port(), free_port()
        c, p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        proc = subprocess.Popen(["etcd", "--name", "b", "--data-dir", f"{tmp}/etcd",
                                 "--listen-client-urls", c, "--advertise-client-urls", c,
                                 "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
                                 "--initial-cluster", f"b={p}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("etcd", 20, lambda: "true" in get(client, "/health"))
        conf = (f'[election]\n  enable = true\n  backend = "etcd"\n'
                f'  [election.etcd]\n    endpoints = ["127.0.0.1:{client}"]\n    lease = "{args.lease}s"\n')
        return proc, conf
    port = free_port()
    proc = subprocess.Popen([args.fake, TOKEN, f"127.0.0.1:{port}", str(args.interval)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    wait("the fake Dataway", 20, up)
    conf = (f'[dataway]\n  urls = ["http://127.0.0.1:{port}?token={TOKEN}"]\n'
            f'  [dataway.ntp]\n    enable = false\n[election]\n  enable = true\n  backend = "dataway"\n')
    return proc, conf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["etcd", "dataway"], default="etcd")
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--fake", default="target/release/examples/fake_dataway")
    ap.add_argument("--lease", type=int, default=2, help="etcd lease, seconds")
    ap.add_argument("--interval", type=int, default=1, help="Dataway election interval, seconds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--settle", type=float, default=30)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dk-elect-bench-")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    backend, conf = start_backend(args, tmp)
    agents = [Agent(args.bin, n, conf, listener.getsockname()[1]) for n in ("node-a", "node-b", "node-c")]
    try:
        for a in agents:
            a.start()

        def leader():
            leaders = [a for a in agents if a.proc and info(a.port)["status"] == "success"]
            return leaders[0] if len(leaders) == 1 else None
        lead = wait("a leader", 30, leader)
        follower = next(a for a in agents if a is not lead)
        time.sleep(2)
        before = {a.name: (cpu_s(a.proc.pid), time.time()) for a in (lead, follower)}
        time.sleep(args.settle)
        print(f"idle supervisor with election on ({args.backend}), socket input only, over {args.settle:.0f}s:")
        for role, a in (("leader", lead), ("follower", follower)):
            cpu0, t0 = before[a.name]
            cpu = (cpu_s(a.proc.pid) - cpu0) / (time.time() - t0) * 100
            print(f"  {role:<9} RSS {rss_kib(a.proc.pid)/1024:5.1f} MiB  PSS {pss_kib(a.proc.pid)/1024:5.1f} MiB"
                  f"  CPU {cpu:.2f} % of a core")

        times = []
        for _ in range(args.rounds):
            lead = wait("a leader", 60, leader)
            others = [a for a in agents if a is not lead]
            pushed = {a.name: metric(a.port, PUSHED) for a in others}
            t0 = time.perf_counter()
            lead.kill()
            lead.proc = None

            def new_point():
                return next((a for a in others if metric(a.port, PUSHED) > pushed[a.name]), None)
            wait("the new leader's first point", 120, new_point)
            times.append(time.perf_counter() - t0)
            lead.start()
        times.sort()
        what = f"lease {args.lease}s" if args.backend == "etcd" else f"interval {args.interval}s, lease {3 * args.interval}s"
        print(f"failover ({args.backend}, {what}): kill -9 leader -> new leader's first point: "
              f"median {times[len(times)//2]:.2f} s, min {times[0]:.2f} s, max {times[-1]:.2f} s "
              f"over {len(times)} rounds")
    finally:
        for a in agents:
            if a.proc:
                a.stop()
            else:
                shutil.rmtree(a.work, ignore_errors=True)
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
