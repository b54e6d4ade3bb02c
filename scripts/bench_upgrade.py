#!/usr/bin/env python3
"""Upgrade harness: A -> B under StatsD load with a release binary, and a rollback.

A and B are copies of one binary stamped with two versions (the `DK-VERSION-STAMP:` bytes
rewritten, no rebuild). The agent runs StatsD on UDP and the upgrade service; a sender thread
sends `RATE` datagrams/s; the upgrade is asked for on 9542 and the script prints:
  * time from the POST to `/v1/ping` answering B, and from the POST's answer to B;
  * datagrams sent / counted by the agent / kernel drops on the StatsD socket;
  * HTTP writes acknowledged / refused during the swap;
  * time from the POST to A serving again when B fails at start (DK_DEBUG_CRASH_AT_START);
  * how long the StatsD worker held its batches (prepare_handover -> pushing to B) and how long
    its move to B took (B's worker up -> A's worker flushed and exited), from the agent's log.

Usage: scripts/bench_upgrade.py [--bin target/release/datakit] [--rate 50000] [--rounds 3]
"""
import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request

from benchkit import free_port

TOKEN = "bench-token"


def version_of(binary):
    return subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout.split()[1]


def stamp(src, dst, version):
    data = bytearray(open(src, "rb").read())
    needle = b"DK-VERSION-STAMP:" + version_of(src).encode() + b"\0"
    at = data.find(needle)
    assert at >= 0, "no version stamp in the binary"
    new = (b"DK-VERSION-STAMP:" + version.encode()).ljust(64, b"\0")
    data[at:at + 64] = new
    open(dst, "wb").write(data)
    os.chmod(dst, 0o755)


def arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def publish(binary, base, keys, version):
    stage = tempfile.mkdtemp()
    stamp(binary, os.path.join(stage, "datakit"), version)
    name = f"datakit-linux-{arch()}-{version}.tar.gz"
    path = os.path.join(base, name)
    with tarfile.open(path, "w:gz", compresslevel=1) as t:
        t.add(os.path.join(stage, "datakit"), arcname="datakit")
    subprocess.run([binary, "tool", "--sign", path, "--key", os.path.join(keys, "datakit.key")], check=True)
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    json.dump({"version": version, "commit": "", "tarball": name, "sha256": sha}, open(os.path.join(base, "version"), "w"))


def http(method, port, path, body=b"", token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body if method == "POST" else None, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ping_version(port):
    try:
        return json.loads(http("GET", port, "/v1/ping")[1])["content"]["version"]
    except Exception:
        return None


def udp_drops(port):
    hexport = f":{port:04X}"
    total = 0
    for line in open("/proc/net/udp").read().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(hexport):
            total += int(f[-1])
    return total


def wait(what, timeout, f):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {what}")


def start_agent(binary, rate_buffer, env_extra):
    work = tempfile.mkdtemp()
    bindir = tempfile.mkdtemp()
    exe = os.path.join(bindir, "datakit")
    stamp(binary, exe, "1.0.0")
    keys = os.path.join(tempfile.mkdtemp(), "k")
    subprocess.run([binary, "tool", "--keygen", keys], check=True, capture_output=True)
    public = open(os.path.join(keys, "datakit.pub")).read().strip()
    base = tempfile.mkdtemp()
    publish(binary, base, keys, "1.1.0")
    api, up, udp = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    os.makedirs(os.path.join(work, "conf.d", "statsd"))
    open(os.path.join(work, "conf.d", "datakit.conf"), "w").write(f"""
default_enabled_inputs = []
[http_api]
  listen = "127.0.0.1:{api}"
  request_rate_limit = 0.0
[io]
  flush_interval = "200ms"
[logging]
  log = "{work}/agent.log"
[resource_limit]
  enable = false
[dk_upgrader]
  enable = true
  listen = "127.0.0.1:{up}"
  token = "{TOKEN}"
  install_base_url = "{base}"
  public_keys = ["{public}"]
  rollback_after = "10s"
""")
    open(os.path.join(work, "conf.d", "statsd", "statsd.conf"), "w").write(f"""
[[inputs.statsd]]
  interval = "1s"
  protocol = "udp"
  service_address = "127.0.0.1:{udp}"
  read_buffer_size = {rate_buffer}
""")
    env = dict(os.environ, **env_extra)
    proc = subprocess.Popen([exe, "run", "--workdir", work], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait("the agent", 20, lambda: ping_version(api) == "1.0.0")
    return proc, work, api, up, udp


def counted(work):
    total = 0.0
    d = os.path.join(work, "data", "local", "metric")
    for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not f.endswith(".lp"):
            continue
        for line in open(os.path.join(d, f), errors="replace"):
            if line.startswith("upg,") or line.startswith("upg "):
                for field in line.split(" ")[1].split(","):
                    k, _, v = field.partition("=")
                    if k == "hits":
                        total += float(v.rstrip("i"))
    return total


def log_time(line):
    import datetime
    stamp = line.split()[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp[:26]).timestamp()


def handover_figures(work):
    """(ms the statsd worker held its batches, ms its move took) from the agent log."""
    held_from = held_to = moved = None
    for line in open(os.path.join(work, "agent.log"), errors="replace"):
        if "family=statsd" in line and "Holding pushes" in line:
            held_from = log_time(line)
        elif "family=statsd" in line and "Taken over by the new supervisor" in line:
            held_to = log_time(line)
        elif "Worker moved to the new binary" in line and 'family="statsd"' in line:
            moved = int(line.rsplit("ms=", 1)[1].split()[0])
    held = round((held_to - held_from) * 1000) if held_from and held_to else None
    return held, moved


def round_upgrade(binary, rate, buffer):
    proc, work, api, up, udp = start_agent(binary, buffer, {})
    stop = threading.Event()
    sent = [0]
    http_stats = {"acked": 0, "refused": 0, "failed": 0}

    def sender():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        start = time.time()
        while not stop.is_set():
            s.sendto(b"upg.hits:1|c", ("127.0.0.1", udp))
            sent[0] += 1
            if sent[0] % 100 == 0:
                ahead = sent[0] / rate - (time.time() - start)
                if ahead > 0:
                    time.sleep(ahead)

    def writer():
        while not stop.is_set():
            try:
                status, _ = http("POST", api, "/v1/write/metric", f"upgw v=1i {time.time_ns()}".encode())
                http_stats["acked" if status == 200 else "failed"] += 1
            except urllib.error.URLError as e:
                http_stats["refused" if isinstance(e.reason, ConnectionRefusedError) else "failed"] += 1
            except Exception:
                http_stats["failed"] += 1
            time.sleep(0.005)

    threads = [threading.Thread(target=sender), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    time.sleep(1)
    t0 = time.time()
    status, body = http("POST", up, "/v1/datakit/upgrade", token=TOKEN)
    t_answer = time.time()
    assert status == 200, (status, body)
    wait("B", 30, lambda: ping_version(api) == "1.1.0")
    t_b = time.time()
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    wait("every datagram counted", 30, lambda: counted(work) >= sent[0] or None) if udp_drops(udp) == 0 else None
    wait("the statsd worker moved", 30, lambda: handover_figures(work)[1] is not None)
    held, moved = handover_figures(work)
    result = dict(
        request_to_b_ms=round((t_b - t0) * 1000),
        worker_held_ms=held, worker_move_ms=moved,
        answer_to_b_ms=round((t_b - t_answer) * 1000),
        sent=sent[0], counted=int(counted(work)), kernel_drops=udp_drops(udp), **http_stats,
        same_pid=int(open(os.path.join(work, ".pid")).read()) == proc.pid,
    )
    proc.terminate()
    proc.wait(timeout=20)
    return result


def round_rollback(binary):
    proc, work, api, up, _ = start_agent(binary, 4 << 20, {"DK_DEBUG_CRASH_AT_START": "1.1.0"})
    t0 = time.time()
    status, body = http("POST", up, "/v1/datakit/upgrade", token=TOKEN)
    assert status == 200, (status, body)
    pid = wait("A after the rollback", 30, lambda: (lambda p: p if p and p != proc.pid and ping_version(api) == "1.0.0" else None)(
        int(open(os.path.join(work, ".pid")).read().strip() or 0)))
    ms = round((time.time() - t0) * 1000)
    os.kill(pid, 15)
    proc.wait(timeout=20)
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/datakit")
    ap.add_argument("--rate", type=int, default=50000)
    ap.add_argument("--buffer", type=int, default=4 << 20,
                    help="StatsD read_buffer_size (default: the input's default, 4 MiB)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    for i in range(a.rounds):
        print("upgrade", i + 1, round_upgrade(binary, a.rate, a.buffer), flush=True)
    for i in range(a.rounds):
        print("rollback", i + 1, "request to A serving again:", round_rollback(binary), "ms", flush=True)


if __name__ == "__main__":
    sys.exit(main())
