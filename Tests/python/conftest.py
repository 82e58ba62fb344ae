"""Fixtures that start a real Warren node (the built binary) on a free port, per test module."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")


def warren_binary():
    return os.environ.get("WARREN_BIN") or os.path.join(ROOT, ".build", "debug", "warren")


class Node:
    """A warren process bound to 127.0.0.1 on a port it picked."""

    def __init__(self, name, extra_args=(), bind="127.0.0.1", data_dir=None, append_log=False):
        """`data_dir` reuses a node's directory (a restart); `append_log` keeps the earlier log."""
        name = name.replace('/', '_')
        os.makedirs(ARTIFACTS, exist_ok=True)
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="warren-test-")
        self.log_path = os.path.join(ARTIFACTS, f"{name}.log")
        self.log = open(self.log_path, "a" if append_log else "w")
        self.log_start = self.log.tell()
        self.proc = subprocess.Popen(
            [warren_binary(), "--amqp-port", "0", "--bind", bind, "--data-dir", self.data_dir,
             "--management-port", "0", "--prometheus-port", "0", "--cluster-port", "0", *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.host = bind
        flags = dict(zip(extra_args[::2], extra_args[1::2]))  # every flag takes one value
        plain = flags.get("--plain-listener", "on") != "off"
        self.port = self._wait_for_port() if plain else None
        self.amqps_port = self._wait_for_port(kind="AMQPS") if "--tls-cert" in flags else None
        self.management_port = self._wait_for_port(kind="management") if flags.get("--management", "on") != "off" else None
        self.prometheus_port = self._wait_for_port(kind="prometheus") if flags.get("--prometheus", "on") != "off" else None

    def _wait_for_port(self, timeout=30, kind="AMQP"):
        deadline = time.time() + timeout
        pattern = re.compile(kind + r" listener started on [^ ]+:(\d+)\s*\n")  # whole line only
        while time.time() < deadline:
            with open(self.log_path) as f:
                f.seek(self.log_start)
                m = pattern.search(f.read())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"warren exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        raise RuntimeError(f"warren did not start listening; see {self.log_path}")

    def env(self):
        """Environment for child programs: where the broker is."""
        e = dict(os.environ)
        e["AMQP_HOST"] = self.host
        e["AMQP_PORT"] = str(self.port)
        e["PYTHONUNBUFFERED"] = "1"
        return e

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def kill(self):
        """kill -9: no shutdown, no final sync; what the store promised must still be there."""
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self):
        """SIGTERM, as an operator would; the node must exit cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class ExternalBroker(Node):
    """A broker someone else runs (WARREN_TEST_BROKER=host:port), e.g. RabbitMQ, to check that
    the suite asserts RabbitMQ's behaviour and not just Warren's."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.log_path = None

    def log_text(self):
        return ""

    def stop(self):
        return 0


@pytest.fixture(scope="module")
def warren(request):
    external = os.environ.get("WARREN_TEST_BROKER")
    node = ExternalBroker(external) if external else Node(request.module.__name__.split(".")[-1])
    yield node
    code = node.stop()
    assert code == 0, f"warren exited with {code}; see {node.log_path}"


@pytest.fixture
def progs(warren):
    """Starts tutorial programs against the node and stops them after the test."""
    from programs import Programs
    p = Programs(warren)
    yield p
    p.stop_all()


def against_warren():
    """False when the suite runs against an external broker."""
    return not os.environ.get("WARREN_TEST_BROKER")


def _log_tails(value):
    """(title, path) of the node logs a fixture value holds: a `Node`, or a `Cluster`'s nodes."""
    if isinstance(value, Node):
        return [(os.path.splitext(os.path.basename(value.log_path))[0], value.log_path)]
    nodes = getattr(value, "nodes", None)
    if isinstance(nodes, list) and all(isinstance(n, dict) and "log" in n for n in nodes):
        return [(n.get("name", "node"), n["log"]) for n in nodes]
    return []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines of its nodes' logs: CI prints only the
    report, and the logs themselves stay in test-artifacts/ on the CI machine."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        for title, path in _log_tails(value):
            try:
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-30:]
            except OSError:
                continue
            report.sections.append((f"last lines of the log of {title}", "".join(l[:400] for l in tail)))
