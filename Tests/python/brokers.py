"""Brokers that start from a definitions file: a Warren node booted with --load-definitions, or,
with WARREN_TEST_REFERENCE=rabbitmq, a scratch RabbitMQ (Debian's rabbitmq-server) that imports
the same file, so a module's assertions can be checked against RabbitMQ itself."""
import json
import os
import sys
import tempfile
import time

from conftest import ROOT, Node

sys.path.insert(0, os.path.join(ROOT, "Scripts", "lib"))
from scratch_rabbitmq import RabbitMQ  # noqa: E402


def reference_mode():
    return os.environ.get("WARREN_TEST_REFERENCE") == "rabbitmq"


class ScratchRabbit:
    """A scratch RabbitMQ with the definitions imported, shaped like conftest.Node."""

    def __init__(self, definitions_path, plugins=("rabbitmq_federation",)):
        self.rabbit = RabbitMQ(plugins=plugins)
        self.rabbit.rabbitmqctl("import_definitions", definitions_path)
        self.host, self.port = "127.0.0.1", self.rabbit.port
        self.log_path = None

    def log_text(self):
        logs = os.path.join(self.rabbit.dir, "log")
        return "".join(open(os.path.join(logs, f), errors="replace").read() for f in os.listdir(logs) if f.endswith(".log"))

    def stop(self):
        self.rabbit.stop()
        return 0


def write_definitions(definitions):
    fd, path = tempfile.mkstemp(prefix="warren-defs-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(definitions, f)
    os.chmod(path, 0o644)  # RabbitMQ reads it as the rabbitmq user
    return path


def start(name, definitions, extra_args=()):
    """A broker loaded with `definitions` (a dict in RabbitMQ's format)."""
    path = write_definitions(definitions)
    if reference_mode():
        return ScratchRabbit(path)
    return Node(name, ["--load-definitions", path, *extra_args])


def get(ch, queue, wait=1.0):
    """basic.get, retrying briefly: dead-lettering and expiry are asynchronous in RabbitMQ."""
    deadline = time.time() + wait
    while True:
        m = ch.basic_get(queue, auto_ack=True)
        if m[0] is not None or time.time() > deadline:
            return m
        time.sleep(0.02)
