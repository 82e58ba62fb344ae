"""A publish/consume workload for fault tests of replicated queues: numbered messages published
with confirms, consumed with manual acks, clients that reconnect to another node when theirs
goes, and the check afterwards: every confirmed message delivered at least once (lost),
nothing delivered that was never published (unexpected), duplicates counted."""
import threading
import time

import pika
import pika.exceptions


class Workload:
    def __init__(self, cluster, queue, publish_nodes, consume_nodes, prefetch=50, first=0):
        self.first = first
        self.cluster = cluster
        self.queue = queue
        self.publish_nodes = list(publish_nodes)
        self.consume_nodes = list(consume_nodes)
        self.prefetch = prefetch
        self.attempted = set()
        self.confirmed = set()
        self.nacked = set()
        self.received = {}
        self.cancels = 0
        self.reconnects = 0
        self.confirm_times = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.publishing = threading.Event()
        self.publishing.set()
        self.threads = [threading.Thread(target=self._publish, daemon=True), threading.Thread(target=self._consume, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _connect(self, nodes, k):
        node = nodes[k % len(nodes)]
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.cluster.amqp(node), heartbeat=5,
                                                                 blocked_connection_timeout=10, socket_timeout=5))

    def _publish(self):
        n = self.first
        k = 0
        while self.publishing.is_set() and not self.stopping.is_set():
            try:
                conn = self._connect(self.publish_nodes, k)
                ch = conn.channel()
                ch.confirm_delivery()
                nacks = 0
                while self.publishing.is_set() and not self.stopping.is_set():
                    body = str(n).encode()
                    with self.lock:
                        self.attempted.add(n)
                    try:
                        ch.basic_publish("", self.queue, body, properties=pika.BasicProperties(delivery_mode=2), mandatory=True)
                        with self.lock:
                            self.confirmed.add(n)
                            self.confirm_times.append(time.time())
                        nacks = 0
                    except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                        with self.lock:
                            self.nacked.add(n)
                        nacks += 1
                        if nacks >= 3 and len(self.publish_nodes) > 1:
                            # Its node is cut off from the queue (a partition): another node.
                            n += 1
                            raise ConnectionError("nacked three times in a row")
                        time.sleep(0.05)
                    n += 1
                conn.close()
            except Exception:  # noqa: BLE001 - the node went: another one
                n += 1
                k += 1
                self.reconnects += 1
                time.sleep(0.2)

    def _consume(self):
        k = 0
        while not self.stopping.is_set():
            try:
                conn = self._connect(self.consume_nodes, k)
                ch = conn.channel()
                ch.basic_qos(prefetch_count=self.prefetch)

                def on_message(ch, method, props, body):
                    with self.lock:
                        key = int(body)
                        self.received[key] = self.received.get(key, 0) + 1
                    ch.basic_ack(method.delivery_tag)

                def on_cancel(frame):
                    self.cancels += 1

                ch.add_on_cancel_callback(on_cancel)
                ch.basic_consume(self.queue, on_message)
                while not self.stopping.is_set():
                    conn.process_data_events(time_limit=0.2)
                    if not ch.consumer_tags:
                        ch.basic_consume(self.queue, on_message)
                conn.close()
            except Exception:  # noqa: BLE001 - the node went: another one
                k += 1
                self.reconnects += 1
                time.sleep(0.2)

    def wait_confirmed(self, more, timeout=30):
        """Waits until `more` further messages were confirmed."""
        with self.lock:
            target = len(self.confirmed) + more
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.confirmed) >= target:
                    return True
            time.sleep(0.02)
        raise AssertionError(f"fewer than {more} confirms in {timeout} s (confirmed {len(self.confirmed)}, nacked {len(self.nacked)})")

    def stop_publishing(self):
        self.publishing.clear()
        self.threads[0].join(timeout=30)

    def drain_and_stop(self, timeout=60):
        """Stops publishing, waits until every confirmed message arrived (or the time is up),
        then stops the consumer. Returns the report."""
        self.stop_publishing()
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if self.confirmed <= set(self.received):
                    break
            time.sleep(0.1)
        # Whatever else is still on its way (nacked or unconfirmed but delivered anyway): until
        # the queue has nothing ready or unacked (asked of a consuming node), bounded.
        api = self.cluster.api(self.consume_nodes[0])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                s, q, _ = api.call("GET", f"/api/queues/%2F/{self.queue}")
                if s == 200 and q.get("messages", 1) == 0:
                    break
            except Exception:  # noqa: BLE001 - that node may be down: the deadline decides
                pass
            time.sleep(0.1)
        self.stopping.set()
        self.threads[1].join(timeout=30)
        return self.report()

    def report(self):
        with self.lock:
            received = set(self.received)
            return {
                "attempted": len(self.attempted),
                "confirmed": len(self.confirmed),
                "nacked": len(self.nacked),
                "lost": sorted(self.confirmed - received),
                "unexpected": sorted(received - self.attempted),
                "duplicated": sum(c - 1 for c in self.received.values() if c > 1),
                "recovered": len((self.attempted - self.confirmed) & received),
                "cancels": self.cancels,
                "reconnects": self.reconnects,
            }
