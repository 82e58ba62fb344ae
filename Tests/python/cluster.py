"""Real Warren clusters for the tests, started and broken with `warren-cluster` (the driver users
get), found beside the warren binary under test."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pika

from conftest import ARTIFACTS, warren_binary
from management_scenario import API


def driver_binary():
    return os.path.join(os.path.dirname(warren_binary()), "warren-cluster")


class Cluster:
    def __init__(self, nodes=3, name="cluster", extra=(), timeout=120, tls=False):
        os.makedirs(ARTIFACTS, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=f"warren-{name}-")
        self.name = name
        args = ["--nodes", str(nodes), "--timeout", str(timeout)] + (["--tls"] if tls else [])
        self.layout = json.loads(self.run("up", *args, "--", *extra, timeout=timeout + 60))
        self.nodes = self.layout["nodes"]

    def run(self, verb, *args, timeout=120, check=True):
        """Runs a driver verb; returns its stdout (raises with its stderr when it fails)."""
        args = list(args)
        tail = []
        if "--" in args:
            i = args.index("--")
            args, tail = args[:i], args[i:]
        p = subprocess.run([driver_binary(), verb, "--dir", self.dir, *args, *tail],
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"warren-cluster {verb} {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout

    def amqp(self, i):
        """AMQP port of node i (from 1)."""
        return self.nodes[i - 1]["amqp"]

    def node_name(self, i):
        return self.nodes[i - 1]["name"]

    def api(self, i):
        return API(self.nodes[i - 1]["management"])

    def connect(self, i, **kw):
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.amqp(i), **kw))

    def ctl(self, i, *args, check=True):
        """Runs warrenctl VERB ARGS against node i's management port."""
        tool = os.path.join(os.path.dirname(warren_binary()), "warrenctl")
        p = subprocess.run([tool, args[0], "--port", str(self.nodes[i - 1]["management"]), *args[1:]],
                           capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
        return p

    def status(self, i):
        s, body, _ = self.api(i).call("GET", "/api/warren/cluster")
        assert s == 200, body
        return body

    def leader(self, among=None):
        """The metadata leader's index, as the given nodes (default: all) agree on it."""
        for i in among or range(1, len(self.nodes) + 1):
            try:
                name = self.status(i).get("metadata_leader")
            except Exception:
                continue
            if name:
                return self.index_of(name)
        return None

    def index_of(self, name):
        return next(i for i, n in enumerate(self.nodes, 1) if n["name"] == name)

    def log_text(self, i):
        with open(self.nodes[i - 1]["log"]) as f:
            return f.read()

    def down(self):
        try:
            self.run("down", "--kill", timeout=60, check=False)
        finally:
            # Keep the logs for CI's artifacts; the data goes.
            dest = os.path.join(ARTIFACTS, f"{self.name}-logs")
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest, exist_ok=True)
            for n in self.nodes:
                if os.path.exists(n["log"]):
                    shutil.copy(n["log"], os.path.join(dest, os.path.basename(os.path.dirname(n["log"])) + ".log"))
            shutil.rmtree(self.dir, ignore_errors=True)


def drain(ch, queue, expect, timeout=30):
    """Consumes with manual acks until `expect` bodies came (or the time is up)."""
    got = []
    deadline = time.time() + timeout
    for method, props, body in ch.consume(queue, inactivity_timeout=0.5):
        if method is not None:
            got.append(body)
            ch.basic_ack(method.delivery_tag)
        if len(got) >= expect or time.time() > deadline:
            break
    ch.cancel()
    return got


def eventually(check, timeout=20, interval=0.05, what="condition"):
    """Polls `check` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - kept to report
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last!r}" if last else ""))
