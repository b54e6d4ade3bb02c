"""What the load harnesses in scripts/ share: free loopback ports, GETs against the agent and
/proc readings of its processes. Imported by the bench_*.py scripts next to it."""
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request


def free_port(kind=socket.SOCK_STREAM):
    """A free loopback port (bound and released; another process could take it, rarely)."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path, timeout=2):
    """The body of GET http://127.0.0.1:<port><path>, as text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def status_kib(pid, key="VmRSS"):
    """A kB line of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 when the process is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime + stime of a process in seconds; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            x = f.read().rsplit(")", 1)[1].split()
        return (int(x[11]) + int(x[12])) / TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid):
    """(pid, "worker <family>") of the live (not zombie) direct children of `pid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            after = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            if after[0] != "Z" and int(after[1]) == pid:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
                out.append((int(d), b" ".join(cmd[1:3]).decode()))
        except (OSError, IndexError, ValueError):
            pass
    return out


def loadavg():
    """The 1-minute load average, as other work on the machine skews every figure."""
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def rss_kib(pid):
    """Resident memory of a process in KiB; 0 when it is gone."""
    return status_kib(pid, "VmRSS")


def stop_agent(proc, work, timeout=60):
    """SIGTERM the agent, kill it if it does not stop within `timeout`, remove its work dir."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(work, ignore_errors=True)


def worker_pid(agent, family):
    """The pid of the live `datakit worker <family>` child of the supervisor `agent`, or None."""
    return next((p for p, name in children(agent) if name == f"worker {family}"), None)


def pss_kib(pid):
    """Proportional set size of a process in KiB (shared pages split); 0 when it is gone."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def metric(text, prefix):
    """Sum of the samples of a /metrics page whose line starts with `prefix`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def http_lua(work, lines=1000):
    """wrk's script for POST /v1/write/metric: a `lines`-line body of current points (points
    more than 2 h off would be corrected by auto_timestamp_correction). Its path."""
    now_s = int(time.time())
    body = "".join(f"bench,host=h{i % 10},region=eu-west-1,service=api value={i}.5,count={i}i,ok=true "
                   f"{now_s}{i:09d}\n" for i in range(lines))
    lua = f"{work}/post.lua"
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = [[' + body + ']]\nwrk.headers["Content-Type"] = "text/plain"\n')
    return lua


def udp_drops(port):
    """Kernel drops counted on the UDP socket(s) bound to `port` (IPv4 and IPv6 tables)."""
    total, found = 0, False
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port:
                total += int(f[-1])
                found = True
    return total if found else None
