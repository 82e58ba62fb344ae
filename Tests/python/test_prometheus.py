"""The Prometheus endpoint, scraped and parsed with prometheus_client's own text parser."""
import urllib.request

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Node


@pytest.fixture(scope="module")
def node():
    n = Node("test_prometheus")
    yield n
    n.stop()


def scrape(node, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.prometheus_port}{path}", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_scrape_parses_and_counts_what_happened(node):
    before = scrape(node)
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("prom-q")
    for i in range(10):
        ch.basic_publish("", "prom-q", b"m%d" % i)
    ch.basic_publish("", "nowhere", b"x", mandatory=False)
    for _ in range(4):
        method, _, _ = ch.basic_get("prom-q")
        ch.basic_ack(method.delivery_tag)
    method, _, _ = ch.basic_get("prom-q")
    ch.basic_nack(method.delivery_tag, requeue=True)
    ch.basic_consume("prom-q", lambda *a: None, auto_ack=False)
    conn.process_data_events(time_limit=0.3)
    after = scrape(node)

    def delta(name):
        return after[(name, ())] - before.get((name, ()), 0)

    assert after[("rabbitmq_connections", ())] == 1
    assert after[("rabbitmq_channels", ())] == 1
    assert after[("rabbitmq_consumers", ())] == 1
    assert after[("rabbitmq_queues", ())] == 1
    assert after[("rabbitmq_queue_messages_unacked", ())] == 6
    assert after[("rabbitmq_queue_messages_ready", ())] == 0
    assert delta("rabbitmq_global_messages_received_total") == 11
    assert delta("rabbitmq_global_messages_received_confirm_total") == 11
    assert delta("rabbitmq_global_messages_confirmed_total") == 11
    assert delta("rabbitmq_global_messages_routed_total") == 10
    assert delta("rabbitmq_global_messages_unroutable_dropped_total") == 1
    assert delta("rabbitmq_global_messages_acknowledged_total") == 4
    assert delta("rabbitmq_global_messages_redelivered_total") == 1
    assert delta("rabbitmq_global_messages_delivered_get_manual_ack_total") == 5
    assert delta("rabbitmq_global_messages_delivered_consume_manual_ack_total") == 6
    assert after[("rabbitmq_process_resident_memory_bytes", ())] > 1_000_000
    assert after[("rabbitmq_process_open_fds", ())] > 0 and after[("rabbitmq_process_max_fds", ())] > 0
    assert after[("rabbitmq_alarms_memory_used_watermark", ())] == 0
    assert after[("rabbitmq_alarms_free_disk_space_watermark", ())] == 0
    conn.close()


def test_per_object_metrics_label_each_queue(node):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    ch = conn.channel()
    ch.queue_declare("per-a")
    ch.queue_declare("per-b")
    for _ in range(3):
        ch.basic_publish("", "per-a", b"x")
    ch.basic_publish("", "per-b", b"y")
    conn.close()
    s = scrape(node, "/metrics/per-object")
    a = (("queue", "per-a"), ("vhost", "/"))
    assert s[("rabbitmq_queue_messages_ready", a)] == 3
    assert s[("rabbitmq_queue_messages_published_total", a)] == 3
    assert s[("rabbitmq_queue_messages_ready", (("queue", "per-b"), ("vhost", "/")))] == 1
    assert ("rabbitmq_queue_messages_ready", ()) not in s  # no unlabelled series mixed in
    # A deleted queue's series go away.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    conn.channel().queue_delete("per-b")
    conn.close()
    s = scrape(node, "/metrics/per-object")
    assert not any(labels and dict(labels).get("queue") == "per-b" for _, labels in s)
    assert scrape(node)[("rabbitmq_queue_messages_ready", ())] >= 3


def test_unknown_path_is_404(node):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{node.prometheus_port}/nope", timeout=10)
    assert e.value.code == 404
