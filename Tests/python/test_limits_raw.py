"""Node-wide limits against hostile numbers of sockets: 10,000 idle unauthenticated sockets
leave the node serving with bounded memory; a connection limit refuses sockets beyond it."""
import resource
import socket
import time

import pytest

from conftest import Node, against_warren
from test_protocol_raw import assert_serving

pytestmark = pytest.mark.skipif(not against_warren(), reason="starts its own nodes")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def test_ten_thousand_idle_unauthenticated_sockets():
    count = 10_000
    limit = raise_fd_limit(2 * count + 500)  # the node inherits it
    if limit < count + 200:
        pytest.skip(f"open-file limit {limit} is too low")
    node = Node("test_limits_raw-idle", ["--handshake-timeout", "60"])
    socks = []
    try:
        time.sleep(0.5)
        before = rss_mb(node.proc.pid)
        for i in range(count):
            s = socket.create_connection((node.host, node.port), timeout=10)
            if i % 2:
                s.sendall(b"AMQP\x00\x00\x09\x01")  # half stop right after the protocol header
            socks.append(s)
        time.sleep(1.0)
        held = rss_mb(node.proc.pid)
        assert_serving(node)
        growth = held - before
        print(f"\n{count} idle unauthenticated sockets: node RSS {before:.1f} -> {held:.1f} MB "
              f"({growth * 1024 / count:.1f} KB per socket)")
        assert growth < 200, f"RSS grew by {growth:.0f} MB"
    finally:
        for s in socks:
            s.close()
        assert node.stop() == 0


def test_connections_over_the_limit_are_refused():
    node = Node("test_limits_raw-max", ["--max-connections", "3"])
    socks = []
    try:
        for _ in range(3):
            s = socket.create_connection((node.host, node.port), timeout=5)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            assert s.recv(1), "the first three get connection.start"
            socks.append(s)
        extra = socket.create_connection((node.host, node.port), timeout=5)
        try:
            extra.sendall(b"AMQP\x00\x00\x09\x01")
            got = extra.recv(1)
        except ConnectionResetError:
            got = b""
        assert got == b"", "the fourth is closed at once"
        extra.close()
        assert "connection limit is reached" in node.log_text()
        socks.pop().close()
        time.sleep(0.2)
        assert_serving(node)  # a slot is free again
    finally:
        for s in socks:
            s.close()
        assert node.stop() == 0
