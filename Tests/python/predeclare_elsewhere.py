"""A pytest plugin for running the single-node pika suites against one cluster node while their
queues live on another: every named, non-exclusive queue a test declares is first declared, with
the same arguments, through a connection to WARREN_PREDECLARE_ON (host:port), so its home is
that node; the test's own declare then finds it there. Loaded with `-p predeclare_elsewhere`."""
import os

import pika
from pika.adapters.blocking_connection import BlockingChannel

_target = os.environ.get("WARREN_PREDECLARE_ON")
_conn = None
_original = BlockingChannel.queue_declare
_placed = set()


def _home_channel():
    global _conn
    if _conn is None or not _conn.is_open:
        host, port = _target.rsplit(":", 1)
        _conn = pika.BlockingConnection(pika.ConnectionParameters(host, int(port)))
    return _conn.channel()


def _declare(self, queue, passive=False, durable=False, exclusive=False, auto_delete=False, arguments=None):
    if queue and not passive and not exclusive and not queue.startswith("amq."):
        vhost = self.connection._impl.params.virtual_host
        if vhost == "/":
            try:
                ch = _home_channel()
                _original(ch, queue, durable=durable, auto_delete=auto_delete, arguments=arguments)
                _placed.add(queue)
                ch.close()
            except pika.exceptions.AMQPError:
                pass  # refused there too: the test's own declare gets the same answer
    return _original(self, queue, passive=passive, durable=durable, exclusive=exclusive, auto_delete=auto_delete, arguments=arguments)


if _target:
    BlockingChannel.queue_declare = _declare


def pytest_terminal_summary(terminalreporter):
    if _target:
        terminalreporter.write_line(f"predeclared {len(_placed)} queues on {_target}")
