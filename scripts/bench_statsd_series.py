#!/usr/bin/env python3
"""StatsD under a flood of distinct series (series-cap figure).

Starts the real binary with one statsd input (interval 1s), sends --series distinct counters
(40 lines per datagram) over loopback in about --send-seconds, then watches the statsd worker for
--watch seconds: its peak and final RSS, whether it was restarted (health checks missed, memory
limit), how long /v1/ping takes meanwhile, and what the input counted (points handed on, samples
dropped past max_series, datagrams dropped).

Usage: scripts/bench_statsd_series.py [--bin target/release/datakit] [--series 1000000]
       [--max-series 200000] [--mem-max-mb 0]
`--max-series 0` leaves the key out (an agent without the cap ignores it anyway).
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from benchkit import free_port, get, metric, status_kib, stop_agent, worker_pid

PER_DATAGRAM = 40


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--series", type=int, default=1_000_000)
    ap.add_argument("--max-series", type=int, default=200_000)
    ap.add_argument("--mem-max-mb", type=int, default=0, help="[resource_limit] mem_max_mb (0: off)")
    ap.add_argument("--send-seconds", type=float, default=1.0)
    ap.add_argument("--watch", type=float, default=12.0)
    args = ap.parse_args()

    api = free_port()
    udp = free_port(socket.SOCK_DGRAM)
    work = tempfile.mkdtemp(prefix="dk-statsd-series.")
    os.makedirs(f"{work}/conf.d/statsd")
    limits = (
        f"[resource_limit]\n  enable = true\n  cpu_cores = 0.0\n  mem_max_mb = {args.mem_max_mb}\n"
        if args.mem_max_mb
        else "[resource_limit]\n  enable = false\n"
    )
    with open(f"{work}/conf.d/datakit.conf", "w") as f:
        f.write(
            f'default_enabled_inputs = []\n[http_api]\n  listen = "127.0.0.1:{api}"\n'
            f'[io]\n  flush_interval = "200ms"\n[logging]\n  log = "stdout"\n  level = "info"\n{limits}'
        )
    cap = f"  max_series = {args.max_series}\n" if args.max_series else ""
    with open(f"{work}/conf.d/statsd/statsd.conf", "w") as f:
        f.write(
            f'[[inputs.statsd]]\n  interval = "1s"\n  service_address = "127.0.0.1:{udp}"\n'
            f'  service_unix_address = ""\n{cap}'
        )
    log = open(f"{work}/agent.log", "w")
    agent = subprocess.Popen([args.bin, "run", "--workdir", work], stdout=log, stderr=log)
    try:
        deadline = time.time() + 20
        worker = None
        while time.time() < deadline and worker is None:
            try:
                get(api, "/v1/ping")
                worker = worker_pid(agent.pid, "statsd")
            except OSError:
                pass
            time.sleep(0.05)
        if worker is None:
            sys.exit("no statsd worker")
        time.sleep(0.5)
        rss0 = status_kib(worker)

        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect(("127.0.0.1", udp))
        datagrams = args.series // PER_DATAGRAM
        t0 = time.perf_counter()
        for d in range(datagrams):
            base = d * PER_DATAGRAM
            tx.send("".join(f"flood.s{base + j}:1|c\n" for j in range(PER_DATAGRAM)).encode())
            if d % 500 == 499:
                ahead = t0 + args.send_seconds * (d + 1) / datagrams - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
        sent_in = time.perf_counter() - t0

        peak = 0
        worst_ping = 0.0
        pids = {worker}
        end = time.perf_counter() + args.watch
        while time.perf_counter() < end:
            w = worker_pid(agent.pid, "statsd")
            if w:
                pids.add(w)
                peak = max(peak, status_kib(w))
            p0 = time.perf_counter()
            try:
                get(api, "/v1/ping")
                worst_ping = max(worst_ping, time.perf_counter() - p0)
            except OSError:
                worst_ping = float("inf")
            time.sleep(0.05)
        m = get(api, "/metrics")
        w = worker_pid(agent.pid, "statsd")
        final = status_kib(w) if w else 0
        hwm = status_kib(w, "VmHWM") if w else 0
        restarts = metric(m, 'datakit_worker_restarts_total{family="statsd"')
        print(
            f"sent {args.series} series ({datagrams} datagrams) in {sent_in:.2f}s; "
            f"max_series {args.max_series or 'unset'}\n"
            f"worker RSS before {rss0 // 1024} MiB, peak seen {peak // 1024} MiB, VmHWM {hwm // 1024} MiB, "
            f"after {args.watch:.0f}s {final // 1024} MiB; worker pids {len(pids)}\n"
            f"restarts {restarts:.0f}; "
            f"points handed {metric(m, 'datakit_statsd_points_total'):.0f}, "
            f"series dropped {metric(m, 'datakit_statsd_series_dropped_total'):.0f}, "
            f"datagrams received {metric(m, 'datakit_statsd_packets_total'):.0f}, "
            f"queue_full {metric(m, 'datakit_statsd_dropped_total'):.0f}, "
            f"kernel drops {metric(m, 'datakit_statsd_kernel_drops_total'):.0f}; "
            f"slowest /v1/ping {worst_ping * 1000:.1f} ms"
        )
    finally:
        stop_agent(agent, work)


if __name__ == "__main__":
    main()
