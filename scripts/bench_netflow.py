#!/usr/bin/env python3
"""NetFlow v9 load: records decoded and aggregated by the netflow worker, and its memory.

Starts the real binary with one netflow9 listener, sends softflowd's v9 template packet
(workers/netflow/tests/fixtures/softflowd_v9.bin), then --records flow records in v9 packets of
30 records (softflowd's IPv4 template 1024) over loopback, spread over --keys distinct
aggregation keys, in about --send-seconds. Then waits for the flush and reports: datagrams the
worker received and the kernel dropped, netflow points fed, the worker's CPU seconds (records
per CPU second is the steady figure on a shared machine) and its RSS before, at peak and after.

Usage: scripts/bench_netflow.py [--bin target/release/datakit] [--records 3000000]
       [--keys 10000] [--send-seconds 3] [--read-buffer 4194304]
Raise net.core.rmem_max first (sysctl -w net.core.rmem_max=16777216) or the buffer is capped.
"""
import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

from benchkit import cpu_s, free_port, get, metric, status_kib, stop_agent, worker_pid

PER_PACKET = 30
HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "../workers/netflow/tests/fixtures/softflowd_v9.bin")


def packet(seq, first_key, keys):
    out = bytearray(struct.pack("!HHIIII", 9, PER_PACKET, 100000, int(time.time()), seq, 0))
    out += struct.pack("!HH", 1024, 4 + PER_PACKET * 42)
    for i in range(PER_PACKET):
        k = (first_key + i) % keys
        out += struct.pack(
            "!4s4sIIIIIIBBHHBBBB",
            bytes([10, (k >> 16) & 255, (k >> 8) & 255, k & 255]),
            bytes([10, 200, 0, k % 7]),
            90000, 99000, 1500, 3, 1, 2, 0, 2,
            40000 + k % 5, 443, 6, 0x1B, 4, 0,
        )
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--records", type=int, default=3_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--send-seconds", type=float, default=3.0)
    ap.add_argument("--read-buffer", type=int, default=4 << 20, help="read_buffer_size (0: kernel default)")
    args = ap.parse_args()

    api = free_port()
    udp = free_port(socket.SOCK_DGRAM)
    work = tempfile.mkdtemp(prefix="dk-netflow.")
    os.makedirs(f"{work}/conf.d/netflow")
    with open(f"{work}/conf.d/datakit.conf", "w") as f:
        f.write(
            f'default_enabled_inputs = []\n[http_api]\n  listen = "127.0.0.1:{api}"\n'
            f'[io]\n  flush_interval = "200ms"\n[logging]\n  log = "stdout"\n  level = "info"\n'
            "[resource_limit]\n  enable = false\n"
        )
    with open(f"{work}/conf.d/netflow/netflow.conf", "w") as f:
        f.write(
            f'[[inputs.netflow]]\n  flush_interval = "2s"\n  read_buffer_size = {args.read_buffer}\n'
            f'  [[inputs.netflow.listeners]]\n    flow_type = "netflow9"\n    port = {udp}\n'
        )
    log = open(f"{work}/agent.log", "w")
    agent = subprocess.Popen([args.bin, "run", "--workdir", work], stdout=log, stderr=log)
    try:
        deadline = time.time() + 20
        worker = None
        while time.time() < deadline and worker is None:
            try:
                get(api, "/v1/ping")
                worker = worker_pid(agent.pid, "netflow")
            except OSError:
                pass
            time.sleep(0.05)
        if worker is None:
            sys.exit("no netflow worker")
        time.sleep(0.5)
        rss0 = status_kib(worker)
        cpu0 = cpu_s(worker)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect(("127.0.0.1", udp))
        tx.send(open(TEMPLATE, "rb").read())
        time.sleep(0.2)
        # Pre-built packets, reused round-robin (sequence numbers do not matter here).
        pool = [packet(i, i * PER_PACKET, args.keys) for i in range(max(1, args.keys // PER_PACKET + 1))]
        packets = args.records // PER_PACKET
        peak = rss0
        t0 = time.perf_counter()
        for d in range(packets):
            tx.send(pool[d % len(pool)])
            if d % 200 == 199:
                ahead = t0 + args.send_seconds * (d + 1) / packets - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
                if d % 5000 == 4999:
                    peak = max(peak, status_kib(worker))
        sent_in = time.perf_counter() - t0
        end = time.perf_counter() + 5
        while time.perf_counter() < end:
            peak = max(peak, status_kib(worker))
            time.sleep(0.1)
        cpu = cpu_s(worker) - cpu0
        m = get(api, "/metrics")
        received = metric(m, 'datakit_input_received_events_total{input="netflow"')
        dropped = metric(m, 'datakit_input_dropped_total{input="netflow"')
        points = metric(m, 'datakit_io_feed_point_total{name="netflow"')
        if os.environ.get("DK_BENCH_METRICS"):
            print("\n".join(l for l in m.splitlines() if "netflow" in l and not l.startswith("#")))
        print(
            f"sent {packets * PER_PACKET} records in {packets} datagrams over {sent_in:.2f}s "
            f"({packets * PER_PACKET / sent_in / 1e6:.2f} M records/s offered), {args.keys} keys\n"
            f"worker received {received:.0f} datagrams (+1 template), dropped {dropped:.0f}; "
            f"netflow points fed {points:.0f}\n"
            f"worker CPU {cpu:.2f}s = {received * PER_PACKET / max(cpu, 1e-9) / 1e6:.2f} M records per CPU second\n"
            f"worker RSS before {rss0 // 1024} MiB, peak {peak // 1024} MiB, "
            f"VmHWM {status_kib(worker, 'VmHWM') // 1024} MiB"
        )
    finally:
        stop_agent(agent, work)


if __name__ == "__main__":
    main()
