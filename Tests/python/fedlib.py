"""Helpers for the federation tests: brokers that are separate Warren nodes on one machine (each
its own cluster, with its own name), a TCP proxy that can cut a link, and polling."""
import os
import socket
import threading
import time

import pika

import brokers  # noqa: F401 - puts Scripts/lib on the path
from cluster import eventually
from conftest import Node
from management_scenario import API
from scratch_rabbitmq import free_port


class Broker:
    """A Warren node named `name` (its cluster name too: loop detection compares them), on a
    fixed AMQP port so that a restart keeps the upstream URI valid."""

    def __init__(self, name, port=None, data_dir=None, extra=()):
        self.name = name
        self.extra = tuple(extra)
        self.fixed_port = port or free_port()
        self.node = Node(f"federation-{name}", extra_args=("--node-name", f"{name}@localhost", "--amqp-port", str(self.fixed_port), *self.extra),
                         data_dir=data_dir, append_log=data_dir is not None)
        self.port = self.node.port
        self.api = API(self.node.management_port)

    @property
    def uri(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}"

    def connect(self):
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port))

    def restart(self, kill=False):
        if kill:
            self.node.kill()
        else:
            self.node.stop()
        self.__init__(self.name, self.fixed_port, self.node.data_dir, self.extra)

    def set_upstream(self, name, uri, **settings):
        s, b, _ = self.api.call("PUT", f"/api/parameters/federation-upstream/%2F/{name}", {"value": dict(uri=uri, **settings)})
        assert s in (201, 204), b

    def set_policy(self, name, pattern, definition, apply_to="all"):
        s, b, _ = self.api.call("PUT", f"/api/policies/%2F/{name}", {"pattern": pattern, "definition": definition, "apply-to": apply_to})
        assert s in (201, 204), b

    def links(self, down=False):
        s, b, _ = self.api.call("GET", "/api/federation-links" + ("/state/down" if down else ""))
        assert s == 200, b
        return b

    def wait_running(self, count, timeout=30):
        return eventually(lambda: (lambda ls: ls if len(ls) == count and all(l["status"] == "running" for l in ls) else None)(self.links()),
                          timeout=timeout, what=f"{count} federation links running on {self.name}")

    def bindings(self, source):
        s, b, _ = self.api.call("GET", "/api/bindings/%2F")
        assert s == 200, b
        return sorted((x["routing_key"], x["destination"]) for x in b if x["source"] == source)

    def stop(self):
        return self.node.stop()


def drain(ch, queue, expect, timeout=20):
    """Gets messages until `expect` have come or nothing more comes for 1 s after the deadline."""
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline and len(got) < expect:
        m, p, body = ch.basic_get(queue, auto_ack=True)
        if m is None:
            time.sleep(0.05)
            continue
        got.append((p, body))
    return got


class CuttableProxy:
    """Forwards 127.0.0.1:port to a target; `cut()` closes every connection and refuses new ones
    until `heal()` (a link that drops, as WAN links do)."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.lock = threading.Lock()
        self.pairs = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.pairs.append((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for c, u in pairs:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def heal(self):
        self.open = True

    def close(self):
        self.closed = True
        self.cut()
        self.listener.close()
