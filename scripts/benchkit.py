"""What the load harnesses in scripts/ share: free loopback ports, GETs against the agent and
/proc readings of its processes. Imported by the bench_*.py scripts next to it."""
import shutil
import signal
import socket
import subprocess
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
