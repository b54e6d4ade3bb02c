"""Emits a fixed set of OpenTelemetry signals with the official Python SDK and exporters.

Usage: otel_emit.py grpc|http ENDPOINT [SPAN_COUNT]

Spans: a server span `GET /checkout` (parent) with a child `charge` that fails with an
exception event, and a client db span `SELECT orders`. Metrics: a counter `orders.placed`
and a histogram `checkout.duration`. Logs: one warning record inside the parent span.
SPAN_COUNT extra spans `bulk-<i>` (for load). Everything is flushed before exit; the exit
status is 0 only when every export succeeded.
"""
import logging
import sys

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.trace import Status, StatusCode, SpanKind

proto, endpoint = sys.argv[1], sys.argv[2]
bulk = int(sys.argv[3]) if len(sys.argv) > 3 else 0

if proto == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    span_exp = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    metric_exp = OTLPMetricExporter(endpoint=endpoint, insecure=True)
    log_exp = OTLPLogExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    base = endpoint.rstrip("/")
    span_exp = OTLPSpanExporter(endpoint=base + "/otel/v1/traces")
    metric_exp = OTLPMetricExporter(endpoint=base + "/otel/v1/metrics")
    log_exp = OTLPLogExporter(endpoint=base + "/otel/v1/logs")

failures = []


class Checked:
    """Wraps an exporter to record failed exports."""

    def __init__(self, inner):
        self.inner = inner

    def export(self, batch, **kw):
        r = self.inner.export(batch, **kw)
        if r not in (SpanExportResult.SUCCESS,) and getattr(r, "name", "") != "SUCCESS":
            failures.append(repr(r))
        return r

    def __getattr__(self, name):
        return getattr(self.inner, name)


resource = Resource.create({"service.name": "shop", "deployment.environment": "test", "host.name": "shop-host"})
tp = TracerProvider(resource=resource)
tp.add_span_processor(BatchSpanProcessor(Checked(span_exp)))
tracer = tp.get_tracer("shop.tracer")

lp = LoggerProvider(resource=resource)
lp.add_log_record_processor(BatchLogRecordProcessor(Checked(log_exp)))
log = logging.getLogger("shop")
log.addHandler(LoggingHandler(logger_provider=lp))
log.setLevel(logging.INFO)

reader = PeriodicExportingMetricReader(Checked(metric_exp), export_interval_millis=3_600_000)
mp = MeterProvider(resource=resource, metric_readers=[reader])
meter = mp.get_meter("shop.meter")
counter = meter.create_counter("orders.placed", unit="1")
hist = meter.create_histogram("checkout.duration", unit="ms")

with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER,
                                  attributes={"http.request.method": "GET", "http.response.status_code": 200}):
    log.warning("payment slow for order %s", 42)
    try:
        with tracer.start_as_current_span("charge") as child:
            raise ValueError("card declined")
    except ValueError:
        pass
    with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT,
                                      attributes={"db.system": "postgresql", "server.address": "db.local",
                                                  "db.statement": "SELECT * FROM orders"}):
        pass
    counter.add(3, {"region": "eu"})
    hist.record(12.5, {"region": "eu"})
    hist.record(250.0, {"region": "eu"})

for i in range(bulk):
    with tracer.start_as_current_span("bulk-%d" % i):
        pass

mp.force_flush()
mp.shutdown()
tp.shutdown()
lp.shutdown()
if failures:
    print("export failures:", failures, file=sys.stderr)
    sys.exit(1)
print("ok")
