"""Federation with a real RabbitMQ (Debian's rabbitmq-server 3.10 with rabbitmq_federation,
installed by Scripts/lib/scratch_rabbitmq.py when missing), both ways: Warren federating an
exchange and a queue from a RabbitMQ upstream, and RabbitMQ federating them from a Warren
upstream (its plugin declares an `x-federation-upstream` exchange on Warren, which Warren
implements). Checked by consuming on the far side and comparing headers with what RabbitMQ's
own plugin writes."""
import time

import pika
import pytest

from cluster import eventually
from fedlib import Broker, drain
from management_scenario import API
from brokers import RabbitMQ

PLUGINS = ("rabbitmq_management", "rabbitmq_federation", "rabbitmq_federation_management")


@pytest.fixture(scope="module")
def peers():
    rabbit = RabbitMQ(plugins=PLUGINS)
    warren = Broker("fed-warren")
    rabbit.api = API(rabbit.management_port)
    rabbit.cluster_name = rabbit.api.call("GET", "/api/cluster-name")[1]["name"]
    yield rabbit, warren
    assert warren.stop() == 0
    rabbit.stop()


def rabbit_connect(rabbit):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbit.port))


def consume(conn, ch, queue, count, timeout=20):
    got = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: got.append((m, p, b)), auto_ack=True)
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        conn.process_data_events(0.1)
    ch.basic_cancel(tag)
    return got


def test_warren_federates_an_exchange_and_a_queue_from_rabbitmq(peers):
    rabbit, warren = peers
    rc = rabbit_connect(rabbit)
    rch = rc.channel()
    rch.exchange_declare("rw.x", "topic", durable=True)
    rch.queue_declare("rw.q", durable=True)
    warren.set_upstream("rabbit", f"amqp://guest:guest@127.0.0.1:{rabbit.port}", **{"reconnect-delay": 1})
    warren.set_policy("from-rabbit", "^rw\\.", {"federation-upstream": "rabbit"})
    wc = warren.connect()
    wch = wc.channel()
    wch.exchange_declare("rw.x", "topic", durable=True)
    wch.queue_declare("sink.rw", durable=True)
    wch.queue_bind("sink.rw", "rw.x", "order.*")
    wch.queue_declare("rw.q", durable=True)
    warren.wait_running(2)
    # What Warren's link declared on RabbitMQ is what RabbitMQ's own plugin declares.
    internal = f"federation: rw.x -> fed-warren@localhost B"
    s, xs, _ = rabbit.api.call("GET", "/api/exchanges/%2F")
    x = [e for e in xs if e["name"] == internal]
    assert x and x[0]["type"] == "x-federation-upstream" and x[0]["internal"] and x[0]["auto_delete"], [e["name"] for e in xs]
    s, bs, _ = rabbit.api.call("GET", "/api/bindings/%2F")
    eventually(lambda: [b for b in rabbit.api.call("GET", "/api/bindings/%2F")[1] if b["source"] == "rw.x" and b["routing_key"] == "order.*"],
               what="binding propagated to RabbitMQ")
    rch.confirm_delivery()
    rch.basic_publish("rw.x", "order.created", b"from rabbit", pika.BasicProperties(headers={"app": "x"}))
    props, body = drain(wch, "sink.rw", 1)[0]
    assert body == b"from rabbit"
    assert props.headers == {"app": "x", "x-received-from": [
        {"uri": f"amqp://127.0.0.1:{rabbit.port}", "exchange": "rw.x", "redelivered": False, "cluster-name": rabbit.cluster_name, "vhost": "/"}]}
    # Queue federation: messages move while Warren's queue has a consumer.
    for k in range(5):
        rch.basic_publish("", "rw.q", f"q{k}".encode(), pika.BasicProperties(headers={"n": k}))
    got = consume(wc, wch, "rw.q", 5)
    assert [b for _, _, b in got] == [f"q{k}".encode() for k in range(5)]
    h = got[0][1].headers
    assert h == {"n": 0, "x-original-exchange": "", "x-original-routing-key": "rw.q", "x-received-from": [
        {"uri": f"amqp://127.0.0.1:{rabbit.port}", "queue": "rw.q", "redelivered": False, "visit-count": 1}]}
    warren.api.call("DELETE", "/api/policies/%2F/from-rabbit")
    eventually(lambda: warren.links() == [], what="links stopped")
    rc.close()
    wc.close()


def test_rabbitmq_federates_an_exchange_and_a_queue_from_warren(peers):
    rabbit, warren = peers
    wc = warren.connect()
    wch = wc.channel()
    wch.exchange_declare("wr.x", "direct", durable=True)
    wch.queue_declare("wr.q", durable=True)
    s, b, _ = rabbit.api.call("PUT", "/api/parameters/federation-upstream/%2F/warren",
                              {"value": {"uri": f"amqp://guest:guest@127.0.0.1:{warren.port}", "reconnect-delay": 1}})
    assert s in (201, 204), b
    s, b, _ = rabbit.api.call("PUT", "/api/policies/%2F/from-warren", {"pattern": "^wr\\.", "definition": {"federation-upstream": "warren"}, "apply-to": "all"})
    assert s in (201, 204), b
    rc = rabbit_connect(rabbit)
    rch = rc.channel()
    rch.exchange_declare("wr.x", "direct", durable=True)
    rch.queue_declare("sink.wr", durable=True)
    rch.queue_bind("sink.wr", "wr.x", "blue")
    rch.queue_declare("wr.q", durable=True)

    def rabbit_links():
        s, b, _ = rabbit.api.call("GET", "/api/federation-links")
        return b if s == 200 and len(b) == 2 and all(l["status"] == "running" for l in b) else None
    eventually(rabbit_links, timeout=60, what="RabbitMQ's links to Warren running")
    # RabbitMQ's plugin declared its internal exchange on Warren, of Warren's x-federation-upstream type.
    s, xs, _ = warren.api.call("GET", "/api/exchanges/%2F")
    internal = [e for e in xs if e["name"].startswith("federation: wr.x -> ")]
    assert internal and internal[0]["type"] == "x-federation-upstream", [e["name"] for e in xs]
    eventually(lambda: warren.bindings("wr.x") and warren.bindings("wr.x")[0][0] == "blue", what="RabbitMQ's binding on Warren")
    wch.confirm_delivery()
    wch.basic_publish("wr.x", "blue", b"from warren", pika.BasicProperties(headers={"app": "y"}))
    wch.basic_publish("wr.x", "green", b"not bound")
    props, body = drain(rch, "sink.wr", 1)[0]
    assert body == b"from warren"
    assert props.headers == {"app": "y", "x-received-from": [
        {"uri": f"amqp://127.0.0.1:{warren.port}", "exchange": "wr.x", "redelivered": False, "cluster-name": "fed-warren@localhost", "vhost": "/"}]}
    time.sleep(0.5)
    assert rch.basic_get("sink.wr", auto_ack=True)[0] is None
    # Queue federation from Warren into RabbitMQ.
    for k in range(5):
        wch.basic_publish("", "wr.q", f"q{k}".encode())
    got = consume(rc, rch, "wr.q", 5)
    assert [b for _, _, b in got] == [f"q{k}".encode() for k in range(5)]
    assert got[0][1].headers["x-received-from"] == [
        {"uri": f"amqp://127.0.0.1:{warren.port}", "queue": "wr.q", "redelivered": False, "visit-count": 1}]
    rabbit.api.call("DELETE", "/api/policies/%2F/from-warren")
    rc.close()
    wc.close()
