"""A minimal Dataway stand-in on loopback for load comparisons: answers 200 to everything and
counts what arrives at POST /v1/write/<category>, after decoding it: gzip bodies are
decompressed, line-protocol (v1) points are the non-empty lines holding a measurement and a
field set, protobuf (v2, `PBPoints`) points are the entries of field 1 walked to the body's
exact end. What does not decode is counted as `bad` (bodies or lines), never as points.

    stub = Stub(); stub.start()   # stub.url is "http://127.0.0.1:<port>?token=tkn_..."
    ... stub.points("logging") ...
"""
import gzip
import json
import queue
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "tkn_0123456789abcdef0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _answer(self, body=b"", code=200, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        self.server.stub._note("GET " + path, 0, 0)
        if path.startswith("/v1/ntp"):
            return self._answer(json.dumps({"timestamp_sec": int(time.time())}).encode())
        return self._answer(b"{}")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path = self.path.split("?", 1)[0]
        enc = (self.headers.get("Content-Encoding") or "").lower()
        ctype = (self.headers.get("Content-Type") or "").lower()
        st = self.server.stub
        if path.startswith("/v1/write/"):
            st.last_write = time.perf_counter()
        if st.backlog is not None and path.startswith("/v1/write/"):
            # Answer at once; the counting thread decodes (what it counts did arrive).
            st.backlog.put((path, enc, ctype, body))
        else:
            st._count(path, enc, ctype, body)
        if path.startswith("/v1/election"):
            return self._answer(json.dumps({"content": {"status": "success", "interval": 4}}).encode())
        self._answer(b"")


class _Counter:
    def _count(self, path, enc, ctype, body):
        raw = body
        st = self
        bad = 0
        try:
            if "gzip" in enc or body[:2] == b"\x1f\x8b":
                raw = gzip.decompress(body)
            elif "deflate" in enc:
                raw = zlib.decompress(body)
        except Exception:  # noqa: BLE001 - a stub: a body that does not inflate is bad
            raw, bad = b"", 1
        points = 0
        if path.startswith("/v1/write/") and "protobuf" in ctype:
            points, broken = pb_points(raw)
            bad += broken
        elif path.startswith("/v1/write/"):
            lines = [line for line in raw.split(b"\n") if line.strip()]
            # measurement[,tags] fields[ time]: a line without its field set is not a point.
            good = [line for line in lines if b" " in line.strip() and b"=" in line]
            points = len(good)
            bad += len(lines) - len(good)
            if st.keep_sum and path.startswith("/v1/write/metric"):
                st._sum(good)
        st._note("POST " + path, points, len(raw), len(body), bad)
        if st.keep_body and points and path not in st.bodies:
            st.bodies[path] = raw


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def pb_points(raw):
    """(points, broken) of a `PBPoints` body: the length-delimited entries of field 1, each
    inside the body; broken is 1 when the walk does not end exactly at the body's end."""
    n, i, end = 0, 0, len(raw)
    try:
        while i < end:
            key, i = _varint(raw, i)
            if key & 7 != 2:
                return n, 1
            size, i = _varint(raw, i)
            i += size
            if i > end:
                return n, 1
            if key >> 3 == 1:
                n += 1
    except (IndexError, ValueError):
        return n, 1
    return n, 0


class Stub(_Counter):
    def __init__(self, port=0, answer_first=False):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.stub = self
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}?token={TOKEN}"
        self.lock = threading.Lock()
        # "POST /v1/write/metric" -> [requests, points, raw bytes, wire bytes, bad bodies/lines]
        self.counts = {}
        self.thread = None
        # Optional: sum the numeric field values of metric points whose line starts with
        # sum_prefix (a statsd counter flood: the sum is the number of samples aggregated).
        self.keep_sum = False
        self.sum_prefix = b""
        self.value_sum = 0.0
        self.series = set()
        # Optional: keep the first decoded (raw) body of each write path, to study it offline.
        self.keep_body = False
        self.bodies = {}
        # answer_first: writes are answered before they are decoded and counted, on one
        # counting thread, so the agent's next body is not held up by this Python stub;
        # drain() waits until everything received is counted.
        self.backlog = queue.Queue() if answer_first else None
        self.last_write = 0.0  # time.perf_counter() when the latest write arrived
        # Cleared: the counting thread holds what arrived until it is set again, so decoding
        # does not take CPU from the agent during a load on the same cores (the arrival times
        # are kept: last_write is the time the latest body arrived, counted or not).
        self.counting = threading.Event()
        self.counting.set()
        if answer_first:
            threading.Thread(target=self._count_backlog, daemon=True).start()

    def _count_backlog(self):
        while True:
            item = self.backlog.get()
            self.counting.wait()
            try:
                self._count(*item)
            finally:
                self.backlog.task_done()

    def drain(self):
        if self.backlog is not None:
            self.backlog.join()

    def _sum(self, lines):
        total, keys = 0.0, []
        for line in lines:
            if not line.startswith(self.sum_prefix):
                continue
            parts = line.split(b" ")
            if len(parts) < 2:
                continue
            for kv in parts[1].split(b","):
                k, _, v = kv.partition(b"=")
                try:
                    total += float(v.rstrip(b"iu"))
                    keys.append(parts[0] + b" " + k)
                except ValueError:
                    pass
        with self.lock:
            self.value_sum += total
            self.series.update(keys)

    def _note(self, key, points, raw, wire=0, bad=0):
        with self.lock:
            c = self.counts.setdefault(key, [0, 0, 0, 0, 0])
            c[0] += 1
            c[1] += points
            c[2] += raw
            c[3] += wire
            c[4] += bad

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def points(self, category):
        with self.lock:
            return sum(v[1] for k, v in self.counts.items() if k.startswith(f"POST /v1/write/{category}"))

    def total(self, category, index):
        """Column `index` of the counts (1 points, 2 raw bytes, 3 wire bytes, 4 bad) summed
        over the writes of `category`."""
        with self.lock:
            return sum(v[index] for k, v in self.counts.items() if k.startswith(f"POST /v1/write/{category}"))

    def snapshot(self):
        with self.lock:
            return {k: list(v) for k, v in self.counts.items()}


if __name__ == "__main__":
    import sys

    s = Stub(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(s.url, flush=True)
    try:
        while True:
            time.sleep(5)
            print(s.snapshot(), flush=True)
    except KeyboardInterrupt:
        s.stop()
