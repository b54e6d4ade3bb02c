#!/usr/bin/env python3
"""OTLP trace load: spans per second over gRPC and over HTTP (9529), and the otel worker's
CPU and memory.

Starts the real binary with one [[inputs.opentelemetry]] instance, then for each transport
sends --seconds worth of pre-encoded ExportTraceServiceRequests of --spans spans each (a
server span and children with HTTP and db attributes, like an instrumented web app) from
--clients threads: over gRPC with grpcio's generated stub (the OpenTelemetry exporter's own
dependency), over HTTP with keep-alive POSTs to /otel/v1/traces. Reports requests and spans
accepted per second, spans fed by the agent (datakit_io_feed_point_total), the worker's CPU
seconds (spans per CPU second is the steady figure on a shared machine) and its RSS before
and at peak.

Usage: scripts/bench_otel.py [--bin target/release/datakit] [--spans 512] [--clients 4]
       [--seconds 5] [--transport grpc,http]
Needs: pip install opentelemetry-exporter-otlp-proto-grpc (grpcio, opentelemetry-proto).
"""
import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from benchkit import cpu_s, free_port, get, metric, status_kib, stop_agent, worker_pid


def kv(k, v):
    if isinstance(v, int):
        return common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(int_value=v))
    return common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))


def request(n, seed):
    now = time.time_ns()
    tid = seed.to_bytes(16, "big")
    spans = []
    for i in range(n):
        attrs = [kv("http.request.method", "GET"), kv("http.route", "/api/items/{id}"),
                 kv("http.response.status_code", 200), kv("thread.id", i)]
        if i % 2:
            attrs += [kv("db.system", "postgresql"), kv("db.statement", "SELECT * FROM items WHERE id = $1")]
        spans.append(trace_pb2.Span(
            trace_id=tid, span_id=(i + 1).to_bytes(8, "big"),
            parent_span_id=b"" if i == 0 else (1).to_bytes(8, "big"),
            name=f"span-{i % 16}", kind=2 if i == 0 else 3,
            start_time_unix_nano=now + i * 1000, end_time_unix_nano=now + i * 1000 + 500_000,
            attributes=attrs))
    res = resource_pb2.Resource(attributes=[kv("service.name", "bench"), kv("host.name", "bench-host")])
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=res, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])


def grpc_senders(port, bodies):
    """A factory of gRPC senders (one channel per client) exporting `bodies` in turn."""
    def factory(i):
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        reqs = [trace_service_pb2.ExportTraceServiceRequest.FromString(b) for b in bodies]
        n = [0]

        def send():
            n[0] += 1
            stub.Export(reqs[n[0] % len(reqs)], timeout=10)
        return send
    return factory


def http_senders(port, bodies, path="/otel/v1/traces"):
    """A factory of OTLP/HTTP senders (one keep-alive connection per client) posting `bodies` in turn."""
    def factory(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = [0]

        def send():
            n[0] += 1
            conn.request("POST", path, body=bodies[n[0] % len(bodies)],
                         headers={"Content-Type": "application/x-protobuf"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")
        return send
    return factory


def run_clients(args, send_factory):
    """Runs --clients threads calling their send() until --seconds pass; returns requests done."""
    done = [0] * args.clients
    errors = []
    stop = time.perf_counter() + args.seconds

    def loop(i):
        send = send_factory(i)
        while time.perf_counter() < stop:
            try:
                send()
                done[i] += 1
            except Exception as e:  # counted, the run goes on
                errors.append(repr(e))
                time.sleep(0.01)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    return threads, done, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--spans", type=int, default=512)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--transport", default="grpc,http")
    args = ap.parse_args()

    api, grpc_port = free_port(), free_port()
    work = tempfile.mkdtemp(prefix="dk-otel.")
    os.makedirs(f"{work}/conf.d/opentelemetry")
    with open(f"{work}/conf.d/datakit.conf", "w") as f:
        f.write(
            f'default_enabled_inputs = []\n[http_api]\n  listen = "127.0.0.1:{api}"\n'
            f'[io]\n  flush_interval = "200ms"\n[logging]\n  log = "stdout"\n  level = "info"\n'
            "[resource_limit]\n  enable = false\n"
        )
    with open(f"{work}/conf.d/opentelemetry/opentelemetry.conf", "w") as f:
        f.write(f'[[inputs.opentelemetry]]\n  [inputs.opentelemetry.grpc]\n    addr = "127.0.0.1:{grpc_port}"\n')
    log = open(f"{work}/agent.log", "w")
    agent = subprocess.Popen([args.bin, "run", "--workdir", work], stdout=log, stderr=log)
    try:
        deadline = time.time() + 20
        worker = None
        while time.time() < deadline and worker is None:
            try:
                get(api, "/v1/ping")
                worker = worker_pid(agent.pid, "otel")
            except OSError:
                pass
            time.sleep(0.05)
        if worker is None:
            sys.exit("no otel worker")
        time.sleep(1.0)
        bodies = [request(args.spans, s + 1).SerializeToString() for s in range(8)]
        print(f"request: {args.spans} spans, {len(bodies[0])} bytes protobuf; {args.clients} clients; "
              f"worker RSS idle {status_kib(worker) // 1024} MiB")
        for transport in args.transport.split(","):
            factory = grpc_senders(grpc_port, bodies) if transport == "grpc" else http_senders(api, bodies)
            m0 = get(api, "/metrics")
            fed0 = metric(m0, 'datakit_io_feed_point_total{name="opentelemetry",category="tracing"')
            cpu0 = cpu_s(worker)
            rss0 = status_kib(worker)
            t0 = time.perf_counter()
            threads, done, errors = run_clients(args, factory)
            peak = rss0
            while any(t.is_alive() for t in threads):
                peak = max(peak, status_kib(worker))
                time.sleep(0.1)
            elapsed = time.perf_counter() - t0
            cpu = cpu_s(worker) - cpu0
            time.sleep(1.5)
            fed = metric(get(api, "/metrics"), 'datakit_io_feed_point_total{name="opentelemetry",category="tracing"') - fed0
            reqs = sum(done)
            print(
                f"{transport}: {reqs} requests = {reqs * args.spans} spans in {elapsed:.2f}s "
                f"-> {reqs * args.spans / elapsed:,.0f} spans/s accepted; fed {fed:,.0f}; "
                f"errors {len(errors)}{' e.g. ' + errors[0] if errors else ''}\n"
                f"  worker CPU {cpu:.2f}s = {reqs * args.spans / max(cpu, 1e-9):,.0f} spans per CPU second; "
                f"RSS before {rss0 // 1024} MiB, peak {peak // 1024} MiB; "
                f"supervisor RSS {status_kib(agent.pid) // 1024} MiB"
            )
    finally:
        stop_agent(agent, work)


if __name__ == "__main__":
    main()
