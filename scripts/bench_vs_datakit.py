#!/usr/bin/env python3
"""Side-by-side loads for Guance Datakit 1.84 and our agent, on one machine, same load generators.

Each run starts ONE agent (--kind dk: Datakit's single Go process, run in the foreground through
its DK_DEBUG_WORKDIR debug work dir, so /usr/local/datakit is never touched; --kind ours: our
`datakit run --workdir`), both pointed at the same loopback Dataway stub (dataway_stub.py,
line protocol, gzip), and measures the WHOLE process tree (supervisor + workers for ours):
CPU seconds, RSS/PSS, kernel UDP drops on the listening port (/proc/net/udp), and the points
that reach the stub. The load senders are the ones of this directory (bench_netflow.packet
and its softflowd template; bench_statsd_series' datagram format) and, for Beats, a Python
port of workers/beats/examples/beats_load.rs (same events, same compressed windows, acks).

OTLP (otlp-grpc, otlp-http) reuses bench_otel.py's requests (--spans spans each, pre-encoded)
and client threads (--clients, for --seconds): both agents get the same [[inputs.opentelemetry]]
(its sample's keys, [grpc] addr on an ephemeral loopback port, the default HTTP routes on the API
port); the figures are spans accepted/s, spans delivered to the stub (tracing), CPU s and peak RSS
of the whole tree. Needs grpcio and opentelemetry-proto (as bench_otel.py).

Usage: bench_vs_datakit.py --kind dk|ours --bin PATH LOAD [options]
  LOAD: idle | netflow | statsd-flood | statsd-rate | beats | otlp-grpc | otlp-http
Prints one JSON line with the figures (and a human summary on stderr).
"""
import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchkit import cpu_s, free_port, get, pss_kib, status_kib, udp_drops  # noqa: E402
import bench_netflow  # noqa: E402  (packet(), TEMPLATE, PER_PACKET)

from dataway_stub import Stub  # noqa: E402

DEFAULT_INPUTS = ["cpu", "disk", "diskio", "host_processes", "hostobject", "mem", "net", "swap", "system"]


# ---------------------------------------------------------------- process tree figures
def tree(root):
    kids = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                after = f.read().rsplit(")", 1)[1].split()
            if after[0] == "Z":
                continue
            kids.setdefault(int(after[1]), []).append(int(e))
        except (OSError, IndexError, ValueError):
            pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


class Tree:
    """CPU and memory of an agent's process tree; CPU of exited descendants is lost, so the
    set of pids seen is reported too."""

    def __init__(self, root):
        self.root = root
        self.seen = set()

    def cpu(self):
        pids = tree(self.root)
        self.seen.update(pids)
        return sum(cpu_s(p) for p in pids)

    def rss(self):
        return sum(status_kib(p) for p in tree(self.root))

    def pss(self):
        return sum(pss_kib(p) for p in tree(self.root))

    def hwm(self):
        return sum(status_kib(p, "VmHWM") for p in tree(self.root))


# ---------------------------------------------------------------- agents
MAIN_CONF = """default_enabled_inputs = {inputs}
[http_api]
  listen = "127.0.0.1:{api}"
[io]
  flush_interval = "{flush}"
[dataway]
  urls = ["{url}"]
  content_encoding = "v1"
  gzip = true
  [dataway.ntp]
    enable = false
  [dataway.wal]
    path = "{work}/cache/dw-wal"
[logging]
  log = "{work}/log"
  gin_log = "{work}/gin.log"
  level = "info"
[resource_limit]
  enable = false
"""


class Agent:
    def __init__(self, kind, binary, stub, inputs, flush="200ms", extra_env=None):
        self.kind, self.bin = kind, binary
        self.work = tempfile.mkdtemp(prefix=f"dkcmp-{kind}.")
        self.api = free_port()
        os.makedirs(f"{self.work}/conf.d")
        with open(f"{self.work}/conf.d/datakit.conf", "w") as f:
            f.write(MAIN_CONF.format(inputs=json.dumps(inputs), api=self.api, flush=flush, url=stub.url,
                                     work=self.work))
        self.extra_env = extra_env or {}
        self.proc = None

    def add_input(self, rel, text):
        path = f"{self.work}/conf.d/{rel}"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def start(self, timeout=60):
        env = dict(os.environ, **self.extra_env)
        self.log = open(f"{self.work}.out", "w")
        if self.kind == "dk":
            # Datakit derives some paths (the WAL's default) from /usr/local/datakit before it
            # reads DK_DEBUG_WORKDIR: run it in a private mount namespace where /usr/local is an
            # empty tmpfs and /usr/local/datakit is this work dir, so the host's is never touched.
            env["DK_DEBUG_WORKDIR"] = self.work
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs tmpfs /usr/local && mkdir /usr/local/datakit && '
                    'mount --bind "$DK_DEBUG_WORKDIR" /usr/local/datakit && exec "$0"',
                    os.path.abspath(self.bin)]
        else:
            argv = [self.bin, "run", "--workdir", self.work]
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        self.tree = Tree(self.proc.pid)
        self.t_start = time.time()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.kind} exited {self.proc.returncode}; see {self.work}.out")
            try:
                get(self.api, "/v1/ping")
                self.t_up = time.time() - self.t_start
                return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"{self.kind} API did not answer in {timeout}s; see {self.work}.out")

    def metrics(self):
        try:
            return get(self.api, "/metrics", timeout=10)
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def metric_sum(text, prefix):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))


# ---------------------------------------------------------------- loads
def wait_listening_udp(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if udp_drops(port) is not None:
            return True
        time.sleep(0.1)
    return False


def run_idle(a, args, stub, out):
    time.sleep(args.settle)
    out["idle_settle_s"] = args.settle
    out["idle_rss_kib"] = a.tree.rss()
    out["idle_pss_kib"] = a.tree.pss()
    out["processes"] = len(tree(a.proc.pid))
    c0 = a.tree.cpu()
    time.sleep(args.window)
    out["idle_cpu_s_per_min"] = (a.tree.cpu() - c0) * 60 / args.window
    out["idle_rss_kib_end"] = a.tree.rss()
    out["idle_pss_kib_end"] = a.tree.pss()
    out["stub"] = stub.snapshot()


def run_netflow(a, args, stub, out):
    if not wait_listening_udp(args.udp):
        raise SystemExit("netflow port never bound")
    time.sleep(1.0)
    per = bench_netflow.PER_PACKET
    rss0, cpu0, d0 = a.tree.rss(), a.tree.cpu(), udp_drops(args.udp)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(("127.0.0.1", args.udp))
    tx.send(open(bench_netflow.TEMPLATE, "rb").read())
    time.sleep(0.2)
    pool = [bench_netflow.packet(i, i * per, args.keys) for i in range(max(1, args.keys // per + 1))]
    packets = args.records // per
    peak = rss0
    t0 = time.perf_counter()
    for d in range(packets):
        tx.send(pool[d % len(pool)])
        if d % 200 == 199:
            ahead = t0 + args.send_seconds * (d + 1) / packets - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            if d % 5000 == 4999:
                peak = max(peak, a.tree.rss())
    sent_in = time.perf_counter() - t0
    end = time.perf_counter() + 5
    while time.perf_counter() < end:
        peak = max(peak, a.tree.rss())
        time.sleep(0.1)
    cpu = a.tree.cpu() - cpu0
    drops = udp_drops(args.udp) - d0
    received = packets + 1 - drops
    out.update(records_sent=packets * per, datagrams_sent=packets + 1, send_s=round(sent_in, 2),
               offered_records_per_s=round(packets * per / sent_in), kernel_drops=drops,
               records_received=max(0, received - 1) * per, cpu_s=round(cpu, 2),
               records_per_cpu_s=round(max(0, received - 1) * per / max(cpu, 1e-9)),
               rss_before_kib=rss0, rss_peak_kib=peak, rss_after_kib=a.tree.rss())
    if args.wait_points:
        end = time.time() + args.wait_points
        while time.time() < end:
            time.sleep(2)
        out["netflow_points_at_stub"] = stub.points("logging") + stub.points("network")
    out["stub"] = stub.snapshot()
    m = a.metrics()
    out["metrics"] = [l for l in m.splitlines() if ("netflow" in l or "flow" in l) and not l.startswith("#")][:40]


def statsd_datagram(base, per=40):
    return "".join(f"flood.s{base + j}:1|c\n" for j in range(per)).encode()


def run_statsd(a, args, stub, out, flood):
    if not wait_listening_udp(args.udp):
        raise SystemExit("statsd port never bound")
    time.sleep(1.0)
    rss0, cpu0, d0 = a.tree.rss(), a.tree.cpu(), udp_drops(args.udp)
    m0 = stub.points("metric")
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(("127.0.0.1", args.udp))
    per = 40
    if flood:  # bench_statsd_series: --series distinct counters, 40 a datagram, in --send-seconds
        datagrams = args.series // per
        pool = None
    else:  # a rate test: --lines samples over --keys counters, 40 a datagram, in --send-seconds
        datagrams = args.lines // per
        pool = [statsd_datagram(i * per) for i in range(max(1, args.keys // per))]
    stub.sum_prefix = b"flood"
    stub.keep_sum = True
    t0 = time.perf_counter()
    peak = rss0
    for d in range(datagrams):
        tx.send(statsd_datagram(d * per) if flood else pool[d % len(pool)])
        if d % 500 == 499:
            ahead = t0 + args.send_seconds * (d + 1) / datagrams - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            if d % 5000 == 4999:
                peak = max(peak, a.tree.rss())
    sent_in = time.perf_counter() - t0
    worst_ping = 0.0
    end = time.perf_counter() + args.watch
    while time.perf_counter() < end:
        peak = max(peak, a.tree.rss())
        p0 = time.perf_counter()
        try:
            get(a.api, "/v1/ping", timeout=5)
            worst_ping = max(worst_ping, time.perf_counter() - p0)
        except OSError:
            worst_ping = float("inf")
        time.sleep(0.1)
    cpu = a.tree.cpu() - cpu0
    drops = udp_drops(args.udp) - d0
    lines = datagrams * per
    recv_lines = (datagrams - drops) * per
    out.update(lines_sent=lines, datagrams_sent=datagrams, send_s=round(sent_in, 2),
               offered_lines_per_s=round(lines / sent_in), kernel_drops=drops, lines_received=recv_lines,
               cpu_s=round(cpu, 2), lines_per_cpu_s=round(recv_lines / max(cpu, 1e-9)),
               rss_before_kib=rss0, rss_peak_kib=peak, rss_after_kib=a.tree.rss(), hwm_kib=a.tree.hwm(),
               slowest_ping_ms=round(worst_ping * 1000, 1),
               points_at_stub=stub.points("metric") - m0, flood_value_sum=round(stub.value_sum),
               flood_series_seen=len(stub.series))
    out["stub"] = stub.snapshot()


# Beats: the events and windows of workers/beats/examples/beats_load.rs, Lumberjack v2.
def beats_window(c, w, events):
    inner = bytearray()
    for i in range(events):
        ev = (
            '{"@timestamp":"2026-01-01T00:00:00.000Z","message":"127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] '
            f'\\"GET /api/v1/items/{c}/{w}/{i} HTTP/1.1\\" 200 512","host":{{"name":"web-{c}"}},'
            f'"log":{{"file":{{"path":"/var/log/nginx/access.log"}},"offset":{i}}},"fields":{{"team":"ops"}}}}'
        ).encode()
        inner += b"2J" + struct.pack("!II", 1 + i, len(ev)) + ev
    z = zlib.compress(bytes(inner), 1)
    return b"2W" + struct.pack("!I", events) + b"2C" + struct.pack("!I", len(z)) + z


def beats_client(port, c, windows, events, errors):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(120)
        wire = [beats_window(c, w, events) for w in range(4)]
        for w in range(windows):
            s.sendall(wire[w % 4])
            while True:  # acks may come early as keep-alives with a lower sequence
                buf = b""
                while len(buf) < 6:
                    chunk = s.recv(6 - len(buf))
                    if not chunk:
                        raise OSError("closed")
                    buf += chunk
                if buf[:2] != b"2A":
                    raise OSError(f"bad ack {buf!r}")
                if struct.unpack("!I", buf[2:])[0] == events:
                    break
        s.close()
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))


def run_beats(a, args, stub, out):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", args.tcp), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0)
    l0 = stub.points("logging")
    rss0, cpu0 = a.tree.rss(), a.tree.cpu()
    total = args.connections * args.windows * args.events
    errors = []
    peak = [rss0]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            peak[0] = max(peak[0], a.tree.rss())
            time.sleep(0.2)

    threading.Thread(target=sampler, daemon=True).start()
    t0 = time.perf_counter()
    ths = [threading.Thread(target=beats_client, args=(args.tcp, c, args.windows, args.events, errors))
           for c in range(args.connections)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    acked = time.perf_counter() - t0
    end = time.time() + args.watch
    while time.time() < end and stub.points("logging") - l0 < total:
        time.sleep(0.1)
    got = stub.points("logging") - l0
    done_s = time.perf_counter() - t0
    done.set()
    cpu = a.tree.cpu() - cpu0
    out.update(events=total, connections=args.connections, acked_s=round(acked, 2),
               acked_events_per_s=round(total / acked), at_stub=got, at_stub_s=round(done_s, 2),
               delivered_events_per_s=round(got / done_s), cpu_s=round(cpu, 2),
               events_per_cpu_s=round(total / max(cpu, 1e-9)), rss_before_kib=rss0,
               rss_peak_kib=peak[0], rss_after_kib=a.tree.rss(), errors=errors[:3])
    out["stub"] = stub.snapshot()


# OTLP: bench_otel.py's requests and client threads, over gRPC or HTTP on the API port.
OTEL_CONF = """[[inputs.opentelemetry]]
  split_service_name = true
  log_max = 500
  jmarshaler = "protojson"
  clean_message = true
  [inputs.opentelemetry.http]
    http_status_ok = 200
    trace_api = "/otel/v1/traces"
    metric_api = "/otel/v1/metrics"
    logs_api = "/otel/v1/logs"
  [inputs.opentelemetry.grpc]
    addr = "127.0.0.1:{port}"
    max_payload = 16777216
"""


def wait_otlp_ready(a, args, timeout=30):
    """Both transports answer an export of one empty ResourceSpans (no span) before the load."""
    import bench_otel
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    empty = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans()])
    body = empty.SerializeToString()
    deadline = time.time() + timeout
    ready = {"grpc": False, "http": False}
    last = None
    while time.time() < deadline and not all(ready.values()):
        try:
            if not ready["grpc"]:
                bench_otel.grpc_senders(args.grpc, [body])(0)()
                ready["grpc"] = True
            if not ready["http"]:
                bench_otel.http_senders(a.api, [body])(0)()
                ready["http"] = True
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
            time.sleep(0.1)
    if not all(ready.values()):
        raise SystemExit(f"OTLP not ready in {timeout}s ({ready}, last error {last!r}); see {a.work}.out")


def run_otlp(a, args, stub, out, transport):
    import argparse as _ap

    import bench_otel

    wait_otlp_ready(a, args)
    time.sleep(1.0)
    bodies = [bench_otel.request(args.spans, s + 1).SerializeToString() for s in range(8)]
    factory = (bench_otel.grpc_senders(args.grpc, bodies) if transport == "grpc"
               else bench_otel.http_senders(a.api, bodies))
    t0_points = stub.points("tracing")
    rss0, cpu0 = a.tree.rss(), a.tree.cpu()
    peak = [rss0]
    timeline = []  # (seconds since start, spans at the stub)
    done = threading.Event()

    def sampler():
        while not done.is_set():
            peak[0] = max(peak[0], a.tree.rss())
            timeline.append((time.perf_counter() - t0, stub.points("tracing") - t0_points))
            time.sleep(0.1)

    t0 = time.perf_counter()
    threading.Thread(target=sampler, daemon=True).start()
    threads, reqs, errors = bench_otel.run_clients(_ap.Namespace(clients=args.clients, seconds=args.seconds),
                                                   factory)
    for t in threads:
        t.join()
    sent_s = time.perf_counter() - t0
    cpu_sent = a.tree.cpu() - cpu0
    got_sent = stub.points("tracing") - t0_points
    accepted = sum(reqs) * args.spans
    end = time.time() + args.watch
    while time.time() < end and stub.points("tracing") - t0_points < accepted:
        time.sleep(0.1)
    got = stub.points("tracing") - t0_points
    done_s = time.perf_counter() - t0
    done.set()
    cpu = a.tree.cpu() - cpu0
    # Datakit holds a last partial batch for its flush timer: the time to 95 % is the steadier figure.
    t95 = next((t for t, n in timeline if n >= 0.95 * accepted), done_s)
    out.update(transport=transport, clients=args.clients, spans_per_request=args.spans,
               request_bytes=len(bodies[0]), requests=sum(reqs), spans_accepted=accepted,
               send_s=round(sent_s, 2), accepted_spans_per_s=round(accepted / sent_s),
               at_stub_when_sent=got_sent, at_stub=got, at_stub_s=round(done_s, 2), delivered_spans_per_s=round(got / done_s),
               at_stub_95pct_s=round(t95, 2), delivered_95pct_spans_per_s=round(0.95 * accepted / t95),
               cpu_s_during_send=round(cpu_sent, 2), cpu_s=round(cpu, 2),
               spans_per_cpu_s=round(accepted / max(cpu, 1e-9)), rss_before_kib=rss0,
               rss_peak_kib=peak[0], rss_after_kib=a.tree.rss(), errors=len(errors), error_sample=errors[:3])
    out["per_process"] = per_process(a.proc.pid)
    out["stub"] = stub.snapshot()


def per_process(root):
    """CPU s and peak RSS (VmHWM) of each process of the tree, by its argv (worker family for ours)."""
    rows = []
    for p in tree(root):
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        name = b" ".join(x for x in argv[1:4] if x).decode(errors="replace") or argv[0].decode(errors="replace")
        rows.append({"proc": name, "cpu_s": round(cpu_s(p), 2), "hwm_kib": status_kib(p, "VmHWM")})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["dk", "ours"], required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("load", choices=["idle", "netflow", "statsd-flood", "statsd-rate", "beats", "otlp-grpc",
                                     "otlp-http"])
    ap.add_argument("--settle", type=float, default=30)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--records", type=int, default=3_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--send-seconds", type=float, default=3.0)
    ap.add_argument("--read-buffer", type=int, default=0, help="ours only: netflow read_buffer_size")
    ap.add_argument("--wait-points", type=float, default=0)
    ap.add_argument("--series", type=int, default=1_000_000)
    ap.add_argument("--max-series", type=int, default=200_000)
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--watch", type=float, default=12)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--events", type=int, default=2048)
    ap.add_argument("--flush", default="200ms")
    ap.add_argument("--clients", type=int, default=4, help="otlp: client threads")
    ap.add_argument("--spans", type=int, default=512, help="otlp: spans per request")
    ap.add_argument("--seconds", type=float, default=5.0, help="otlp: sending time")
    args = ap.parse_args()

    stub = Stub().start()
    inputs = DEFAULT_INPUTS if args.load == "idle" else []
    a = Agent(args.kind, args.bin, stub, inputs, flush=args.flush)
    if args.load == "netflow":
        args.udp = free_port(socket.SOCK_DGRAM)
        rb = f"  read_buffer_size = {args.read_buffer}\n" if (args.kind == "ours" and args.read_buffer) else ""
        a.add_input("netflow/netflow.conf",
                    f'[[inputs.netflow]]\n  source = "netflow"\n{rb}'
                    f'  [[inputs.netflow.listeners]]\n    flow_type = "netflow9"\n    port = {args.udp}\n')
    elif args.load.startswith("statsd"):
        args.udp = free_port(socket.SOCK_DGRAM)
        cap = f"  max_series = {args.max_series}\n" if args.max_series else ""
        a.add_input("statsd/statsd.conf",
                    f'[[inputs.statsd]]\n  interval = "1s"\n  protocol = "udp"\n'
                    f'  service_address = "127.0.0.1:{args.udp}"\n  service_unix_address = ""\n'
                    f'  delete_counters = true\n{cap}')
    elif args.load == "beats":
        args.tcp = free_port()
        a.add_input("beats_output/beats_output.conf",
                    f'[[inputs.beats_output]]\n  listen = "tcp://127.0.0.1:{args.tcp}"\n')
    elif args.load.startswith("otlp"):
        args.grpc = free_port()
        a.add_input("opentelemetry/opentelemetry.conf", OTEL_CONF.format(port=args.grpc))
    out = {"kind": args.kind, "load": args.load, "bin": args.bin,
           "t": time.strftime("%H:%M:%S", time.gmtime()), "loadavg_start": open("/proc/loadavg").read().split()[0]}
    a.start()
    out["startup_s"] = round(a.t_up, 2)
    try:
        if args.load == "idle":
            run_idle(a, args, stub, out)
        elif args.load == "netflow":
            run_netflow(a, args, stub, out)
        elif args.load == "statsd-flood":
            run_statsd(a, args, stub, out, True)
        elif args.load == "statsd-rate":
            run_statsd(a, args, stub, out, False)
        elif args.load == "beats":
            run_beats(a, args, stub, out)
        elif args.load.startswith("otlp"):
            run_otlp(a, args, stub, out, args.load.split("-", 1)[1])
        out["loadavg_end"] = open("/proc/loadavg").read().split()[0]
        out["pids_seen"] = len(a.tree.seen)
        out["process_tree_cpu_total_s"] = round(a.tree.cpu(), 2)
    finally:
        a.stop()
        stub.stop()
        out["work"] = a.work
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
