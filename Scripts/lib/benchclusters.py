"""Clusters for the side-by-side benchmarks: Warren's from warren-cluster, RabbitMQ's from
Debian's package (three scratch nodes joined into one cluster), and warren-perf against them."""
import json
import secrets
import shutil
import subprocess
import tempfile

from scratch_rabbitmq import RabbitMQ


class WarrenCluster:
    def __init__(self, driver, nodes):
        self.driver = driver
        self.dir = tempfile.mkdtemp(prefix="warren-bench-cluster-")
        out = self.run("up", "--nodes", str(nodes), "--timeout", "120", "--", "--log-level", "warning", "--management", "on")
        self.nodes = json.loads(out)["nodes"]
        self.ports = [n["amqp"] for n in self.nodes]
        self.pids = [n["pid"] for n in self.nodes]

    def run(self, verb, *args):
        args = list(args)
        tail = []
        if "--" in args:
            i = args.index("--")
            args, tail = args[:i], args[i:]
        p = subprocess.run([self.driver, verb, "--dir", self.dir, *args, *tail], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"warren-cluster {verb}: {p.stderr}")
        return p.stdout

    def stop(self):
        try:
            self.run("down", "--kill")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RabbitCluster:
    def __init__(self, nodes):
        cookie = secrets.token_hex(16).upper()
        self.members = [RabbitMQ(cookie=cookie) for _ in range(nodes)]
        for m in self.members[1:]:
            m.join(self.members[0])
        self.ports = [m.port for m in self.members]
        self.pids = [m.pid for m in self.members]

    def stop(self):
        for m in reversed(self.members):
            m.stop()


def perf(binary, publish_port, declare_port, consume_port, args, seconds, label, pattern="xnode-%d"):
    """One warren-perf run; its JSON result line."""
    uri = lambda p: f"amqp://guest:guest@127.0.0.1:{p}/"
    cmd = [binary, "--uri", uri(publish_port), "--declare-uri", uri(declare_port), "--consumer-uri", uri(consume_port),
           "--duration", str(seconds), "--quiet", "--label", label, "--queue-pattern", pattern, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
    if out.returncode != 0:
        raise RuntimeError(f"warren-perf failed ({label}):\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_seconds(pids):
    """User + system CPU time of these processes so far."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / 100.0
        except OSError:
            pass
    return total
