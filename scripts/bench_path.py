#!/usr/bin/env python3
"""The data path to Dataway, end to end, one path at a time (release build):

    scripts/bench_path.py logs|graphite|statsd|http [--encoding v1|v2] [--no-gzip] [--bin PATH]

Starts `datakit run` on a temp work dir with one input (none for `http`) and `[dataway]`
pointed at a loopback stand-in (dataway_stub.py) that decompresses and decodes every body
(v1 line protocol or v2 protobuf) and counts the points in it, so nothing is counted that did
not arrive. Then it sends the load and waits until the stub has every point (or nothing moved
for --stall seconds), and prints points/s end to end (first byte sent to the last body at the
stub), CPU µs per point arrived for the supervisor and the worker (/proc/<pid>/stat before and
after), their peak RSS (VmHWM), the bytes on the wire, and the load average.

  logs      --lines (1 M) lines of --size (120) bytes over --connections (4) TCP connections
            to a `[[inputs.logging]]` socket; points of category logging
  graphite  --lines plaintext lines over --connections TCP connections, 100 metrics a
            connection; points of category metric
  statsd    --lines distinct counters, 40 a UDP datagram, paced over --seconds so an interval
            stays under max_series; every counter is one point at the next flush
  http      wrk (Debian `wrk`) posting 1000-line bodies to /v1/write/metric over --connections
            (8) for --seconds (10); every 200 is a body fsynced in the queue

One JSON line with the figures goes to stdout, a summary to stderr.
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
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchkit import cpu_s, free_port, get, http_lua, metric, pss_kib, status_kib, stop_agent, udp_drops, worker_pid  # noqa: E402
from dataway_stub import Stub  # noqa: E402

MAIN_CONF = """default_enabled_inputs = []
[http_api]
  listen = "127.0.0.1:{api}"
  request_rate_limit = 0.0
[dataway]
  urls = ["{url}"]
  content_encoding = "{encoding}"
  gzip = {gzip}
  [dataway.ntp]
    enable = false
[logging]
  log = "{work}/log"
  level = "warn"
"""

FAMILY = {"logs": "logging", "graphite": "graphite", "statsd": "statsd", "http": None}
CATEGORY = {"logs": "logging", "graphite": "metric", "statsd": "metric", "http": "metric"}


def input_conf(path, port):
    if path == "logs":
        return "logging/logging.conf", (f'[[inputs.logging]]\n  sockets = ["tcp://127.0.0.1:{port}"]\n'
                                        f'  source = "load"\n')
    if path == "graphite":
        return "graphite/graphite.conf", f'[[inputs.graphite]]\n  address = "127.0.0.1:{port}"\n'
    if path == "statsd":
        return "statsd/statsd.conf", (f'[[inputs.statsd]]\n  interval = "1s"\n  protocol = "udp"\n'
                                      f'  service_address = "127.0.0.1:{port}"\n  service_unix_address = ""\n'
                                      f'  delete_counters = true\n')
    return None, None


def tcp_payloads(path, lines, conns, size):
    """One bytes object per connection; lines differ (connection, sequence, a varying word)."""
    words = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
    out = []
    now = int(time.time())
    for c in range(conns):
        if path == "logs":
            def line(i):
                text = (f"2026-12-03T12:00:{i % 60:02d}Z INFO conn={c} seq={i:09d} {words[i % 6]} "
                        f"/api/v1/item/{(i * 7919) % 100000} status={200 + i % 5} "
                        f"req={(i * 2654435761 + c) & 0xFFFFFFFFFFFF:012x} ")
                return text + "x" * max(0, size - 1 - len(text)) + "\n"
            buf = "".join(line(i) for i in range(lines))
        else:
            buf = "".join(f"load.conn{c}.host{i % 10}.metric{i % 100} {i}.5 {now}\n" for i in range(lines))
        out.append(buf.encode())
    return out


def send_tcp(port, payload, errors):
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            view = memoryview(payload)
            for off in range(0, len(view), 1 << 16):
                s.sendall(view[off:off + (1 << 16)])
    except OSError as e:
        errors.append(str(e))


def wait_port(port, deadline):
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", choices=sorted(FAMILY))
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--encoding", choices=["v1", "v2"], default="v1")
    ap.add_argument("--no-gzip", action="store_true")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=0, help="default 4 (8 for http)")
    ap.add_argument("--size", type=int, default=120, help="logs: bytes a line, newline included")
    ap.add_argument("--seconds", type=float, default=0, help="statsd: sending time (default lines/150k); "
                                                            "http: wrk duration (default 10)")
    ap.add_argument("--stall", type=float, default=15, help="give up when no point arrived for this long")
    ap.add_argument("--save-body", default="", help="write the first raw (uncompressed) body that "
                                                    "arrived to this file")
    ap.add_argument("--decode-during", action="store_true",
                    help="decode and count bodies as they arrive (the stub then competes with the "
                         "agent for the cores) instead of after the load")
    ap.add_argument("--perf", default="", help="record the supervisor with `perf record -e cpu-clock` "
                                               "into this file during the load")
    args = ap.parse_args()
    conns = args.connections or (8 if args.path == "http" else 4)
    if args.path == "http" and not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} is not there: cargo build --release -p datakit")

    stub = Stub(answer_first=True).start()
    stub.keep_body = bool(args.save_body)
    work = tempfile.mkdtemp(prefix=f"dk-path-{args.path}.")
    api = free_port()
    port = free_port(socket.SOCK_DGRAM if args.path == "statsd" else socket.SOCK_STREAM)
    os.makedirs(f"{work}/conf.d")
    with open(f"{work}/conf.d/datakit.conf", "w") as f:
        f.write(MAIN_CONF.format(api=api, url=stub.url, encoding=args.encoding,
                                 gzip="false" if args.no_gzip else "true", work=work))
    rel, conf = input_conf(args.path, port)
    if rel:
        os.makedirs(os.path.dirname(f"{work}/conf.d/{rel}"), exist_ok=True)
        with open(f"{work}/conf.d/{rel}", "w") as f:
            f.write(conf)
    category = CATEGORY[args.path]
    # Build the load before the agent starts: generating it is not part of the figures.
    payloads = tcp_payloads(args.path, args.lines // conns, conns, args.size) \
        if args.path in ("logs", "graphite") else None
    lua = http_lua(work) if args.path == "http" else None

    proc = subprocess.Popen([args.bin, "run", "--workdir", work], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {"path": args.path, "encoding": args.encoding, "gzip": not args.no_gzip, "bin": args.bin,
           "t": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        deadline = time.time() + 30
        while True:
            try:
                get(api, "/v1/ping")
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    sys.exit(f"the agent did not answer /v1/ping; see {work}/log")
                time.sleep(0.05)
        worker = None
        if FAMILY[args.path]:
            while (worker := worker_pid(proc.pid, FAMILY[args.path])) is None:
                if time.time() > deadline:
                    sys.exit(f"no {FAMILY[args.path]} worker; see {work}/log")
                time.sleep(0.05)
            if args.path != "statsd" and not wait_port(port, deadline):
                sys.exit(f"nothing listens on {port}")
        time.sleep(0.5)  # let start-up work (first host reads, NTP) settle out of the figures
        out["loadavg_start"] = float(open("/proc/loadavg").read().split()[0])
        p0 = stub.total(category, 1)
        cpu0 = (cpu_s(proc.pid), cpu_s(worker) if worker else 0.0)
        errors = []
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g",
                                     "-o", args.perf, "-p", str(proc.pid)], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
        # Peaks of supervisor + worker together (sampled every 50 ms): RSS counts the binary's
        # code pages both processes share twice, PSS splits them.
        both = {"rss": 0, "pss": 0}
        sampling = threading.Event()

        def sample():
            while not sampling.wait(0.05):
                pids = [proc.pid] + ([worker] if worker else [])
                both["rss"] = max(both["rss"], sum(status_kib(p) for p in pids))
                both["pss"] = max(both["pss"], sum(pss_kib(p) for p in pids))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ok = f'datakit_io_sink_point_total{{sink="dataway",category="{category}",status="ok"}}'
        base = metric(get(api, "/metrics"), ok)
        if not args.decode_during:
            stub.counting.clear()
        t0 = time.perf_counter()
        me0 = os.times()
        expected = args.lines
        if payloads:
            threads = [threading.Thread(target=send_tcp, args=(port, p, errors)) for p in payloads]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            expected = (args.lines // conns) * conns
        elif args.path == "statsd":
            drops0 = udp_drops(port) or 0
            expected = send_statsd(port, args.lines, args.seconds or max(1.0, args.lines / 150_000))
            # What the kernel dropped never reached the agent (counted, as the agent does).
            out["kernel_drops"] = ((udp_drops(port) or 0) - drops0) * 40
            expected -= out["kernel_drops"]
        else:
            wrk = subprocess.run(["wrk", "-t", "1", "-c", str(conns), "-d", f"{args.seconds or 10:g}s",
                                  "-s", lua, f"http://127.0.0.1:{api}/v1/write/metric"],
                                 capture_output=True, text=True).stdout
            total, non2xx = 0, 0
            for line in wrk.splitlines():
                if " requests in " in line:
                    total = int(line.split()[0])
                if "Non-2xx" in line:
                    non2xx = int(line.split()[-1])
            expected = (total - non2xx) * 1000
            secs = time.perf_counter() - t0
            out.update(http_requests=total, http_non2xx=non2xx,
                       accepted_points_per_s=round(expected / max(secs, 1e-9)))
        out["send_s"] = round(time.perf_counter() - t0, 3)
        # Every point sent (acknowledged, for http) must reach the stub. During the load the stub
        # only answers and keeps the bodies; they are decoded and counted afterwards, so the
        # stub takes no CPU from the agent. The load is over when the agent reports every point
        # written to the sink (status ok: the stub answered 200) or no body arrived for --stall
        # seconds; the time is when the stub received the last body.
        seen = stub.last_write
        quiet = time.perf_counter()
        while time.perf_counter() - quiet < args.stall:
            time.sleep(0.1)
            if args.decode_during:
                if stub.total(category, 1) - p0 >= expected:
                    break
            elif metric(get(api, "/metrics"), ok) - base >= expected:
                break
            if stub.last_write != seen or (args.decode_during and not stub.backlog.empty()):
                seen, quiet = stub.last_write, time.perf_counter()
        me1 = os.times()
        sampling.set()
        sampler.join()
        stub.counting.set()
        stub.drain()
        wall = stub.last_write - t0
        got = stub.total(category, 1) - p0
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        cpu = (cpu_s(proc.pid) - cpu0[0], (cpu_s(worker) - cpu0[1]) if worker else 0.0)
        out.update(
            sent=expected, arrived=got, errors=errors[:3], bad=stub.total(category, 4),
            wall_s=round(wall, 3), points_per_s=round(got / max(wall, 1e-9)),
            supervisor_cpu_s=round(cpu[0], 2), worker_cpu_s=round(cpu[1], 2),
            supervisor_us_per_point=round(cpu[0] * 1e6 / max(got, 1), 3),
            worker_us_per_point=round(cpu[1] * 1e6 / max(got, 1), 3),
            supervisor_hwm_mib=round(status_kib(proc.pid, "VmHWM") / 1024, 1),
            worker_hwm_mib=round(status_kib(worker, "VmHWM") / 1024, 1) if worker else 0,
            both_rss_peak_mib=round(both["rss"] / 1024, 1), both_pss_peak_mib=round(both["pss"] / 1024, 1),
            # After the load: anonymous memory (heap) and file pages (the binary's code) apart.
            supervisor_anon_mib=round(status_kib(proc.pid, "RssAnon") / 1024, 1),
            supervisor_file_mib=round(status_kib(proc.pid, "RssFile") / 1024, 1),
            worker_anon_mib=round(status_kib(worker, "RssAnon") / 1024, 1) if worker else 0,
            worker_file_mib=round(status_kib(worker, "RssFile") / 1024, 1) if worker else 0,
            raw_bytes=stub.total(category, 2), wire_bytes=stub.total(category, 3),
            # This script's own CPU over the load (senders and the stub share the 2 cores).
            harness_cpu_s=round(me1.user + me1.system - me0.user - me0.system, 2),
            loadavg_end=float(open("/proc/loadavg").read().split()[0]))
        if args.path == "statsd":
            drops = get(api, "/metrics")
            out["statsd_dropped"] = sum(float(l.rsplit(" ", 1)[1]) for l in drops.splitlines()
                                        if l.startswith("datakit_input_statsd") and "drop" in l
                                        and not l.startswith("#"))
    finally:
        stop_agent(proc, work)
        stub.stop()
        if args.save_body and stub.bodies:
            with open(args.save_body, "wb") as f:
                f.write(next(iter(stub.bodies.values())))
    print(json.dumps(out), flush=True)
    print(f"{args.path} {args.encoding}{'' if args.no_gzip else '+gzip'}: {out['arrived']:,} of "
          f"{out['sent']:,} points at the stub ({out['bad']} bad) in {out['wall_s']:.2f} s = "
          f"{out['points_per_s']:,} points/s; CPU per point: supervisor {out['supervisor_us_per_point']:.2f} µs, "
          f"worker {out['worker_us_per_point']:.2f} µs; peak RSS supervisor {out['supervisor_hwm_mib']} MiB, "
          f"worker {out['worker_hwm_mib']} MiB (together, sampled: RSS {out['both_rss_peak_mib']}, PSS {out['both_pss_peak_mib']} MiB); wire {out['wire_bytes'] / max(out['raw_bytes'], 1):.3f} of raw; "
          f"load average {out['loadavg_start']} → {out['loadavg_end']}", file=sys.stderr)
    if out["arrived"] < out["sent"] or out["bad"]:
        sys.exit(1)


def send_statsd(port, lines, seconds):
    """Distinct counters `path.s<i>:1|c`, 40 a datagram, paced evenly over `seconds`; the number of
    counters sent."""
    per = 40
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(("127.0.0.1", port))
    datagrams = lines // per
    t0 = time.perf_counter()
    for d in range(datagrams):
        tx.send("".join(f"path.s{d * per + j}:1|c\n" for j in range(per)).encode())
        if d % 250 == 249:
            ahead = t0 + seconds * (d + 1) / datagrams - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    return datagrams * per


if __name__ == "__main__":
    main()
