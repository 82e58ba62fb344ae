"""Quorum queues on one node, as RabbitMQ 3.10 runs them (a group of one): which declarations it
accepts and refuses with which texts, delivery counting, global QoS, persistence, and programs
shaped like the current RabbitMQ tutorials, which declare their queues as quorum queues.

Every expected text was recorded from RabbitMQ 3.10.8; the module passes against it too
(WARREN_TEST_BROKER=host:port), except the restart test, which needs a Warren node."""
import base64
import json
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid

import pika
import pytest

from conftest import Node, against_warren

Q = {"x-queue-type": "quorum"}


def connect(node):
    return pika.BlockingConnection(pika.ConnectionParameters(node.host, node.port))


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def refusal(node, **declare):
    """The 406 text a declaration gets, or None when it is accepted."""
    c = connect(node)
    ch = c.channel()
    try:
        ch.queue_declare(**declare)
        return None
    except pika.exceptions.ChannelClosedByBroker as e:
        return (e.reply_code, e.reply_text)
    finally:
        if c.is_open:
            c.close()


@pytest.mark.parametrize("declare,expected", [
    (dict(durable=False), "invalid property 'non-durable' for queue '{q}' in vhost '/'"),
    (dict(durable=True, exclusive=True), "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
    (dict(durable=True, auto_delete=True), "invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
    # RabbitMQ's order: arguments first, then auto-delete, exclusive, durable.
    (dict(durable=False, exclusive=True), "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
    (dict(durable=True, exclusive=True, auto_delete=True), "invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
    (dict(durable=False, arguments={"x-max-priority": 3}),
     "invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
    (dict(durable=True, arguments={"x-queue-mode": "lazy"}),
     "invalid arg 'x-queue-mode' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
    (dict(durable=True, arguments={"x-queue-master-locator": "client-local"}),
     "invalid arg 'x-queue-master-locator' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
    (dict(durable=True, arguments={"x-max-priority": 3, "x-message-ttl": -1}),
     "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
    (dict(durable=True, arguments={"x-quorum-initial-group-size": 0}),
     "invalid arg 'x-quorum-initial-group-size' for queue '{q}' in vhost '/': {{value_zero,0}}"),
    (dict(durable=True, arguments={"x-quorum-initial-group-size": "x"}),
     "invalid arg 'x-quorum-initial-group-size' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
    (dict(durable=True, arguments={"x-dead-letter-strategy": "foo"}),
     "invalid arg 'x-dead-letter-strategy' for queue '{q}' in vhost '/': invalid_dlx_strategy"),
    (dict(durable=True, arguments={"x-queue-leader-locator": "foo"}),
     "invalid arg 'x-queue-leader-locator' for queue '{q}' in vhost '/': invalid_queue_locator_arg"),
    (dict(durable=True, arguments={"x-single-active-consumer": "yes"}),
     "invalid arg 'x-single-active-consumer' for queue '{q}' in vhost '/': {{unacceptable_type,longstr}}"),
])
def test_refused_declarations_have_rabbitmqs_texts(warren, declare, expected):
    q = name("qq-refused")
    args = dict(Q, **declare.pop("arguments", {}))
    assert refusal(warren, queue=q, arguments=args, **declare) == (406, "PRECONDITION_FAILED - " + expected.format(q=q))


def test_server_named_quorum_queue_is_refused(warren):
    assert refusal(warren, queue="", durable=True, arguments=Q) == (
        406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue")


@pytest.mark.parametrize("arguments", [
    {"x-delivery-limit": 3}, {"x-delivery-limit": -1}, {"x-message-ttl": 1000}, {"x-expires": 100000},
    {"x-max-length": 5, "x-overflow": "reject-publish"}, {"x-dead-letter-strategy": "at-least-once"},
    {"x-single-active-consumer": True}, {"x-quorum-initial-group-size": 3}, {"x-queue-leader-locator": "balanced"},
    {"x-queue-leader-locator": "client-local"}, {"x-max-in-memory-length": 5}, {"x-some-unknown-argument": 1},
])
def test_accepted_declarations(warren, arguments):
    q = name("qq-ok")
    c = connect(warren)
    ch = c.channel()
    ok = ch.queue_declare(q, durable=True, arguments=dict(Q, **arguments)).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    assert ch.queue_declare(q, durable=True, arguments=dict(Q, **arguments)).method.queue == q  # equivalent again
    ch.queue_delete(q)
    c.close()


def test_redeclaration_inequivalences(warren):
    q = name("qq-equiv")
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments=dict(Q, **{"x-delivery-limit": 3}))
    prefix = f"PRECONDITION_FAILED - inequivalent arg '%s' for queue '{q}' in vhost '/': "
    for args, text in [
        (dict(Q, **{"x-delivery-limit": 4}), prefix % "x-delivery-limit" + "received '4' but current is '3'"),
        (Q, prefix % "x-delivery-limit" + "received none but current is the value '3' of type 'signedint'"),
        ({"x-delivery-limit": 3}, prefix % "x-queue-type" + "received none but current is the value 'quorum' of type 'longstr'"),
        ({"x-delivery-limit": 3, "x-queue-type": "classic"}, prefix % "x-queue-type" + "received 'classic' but current is 'quorum'"),
    ]:
        ch = c.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_declare(q, durable=True, arguments=args)
        assert (e.value.reply_code, e.value.reply_text) == (406, text)
    ch = c.channel()
    assert ch.queue_declare(q, passive=True).method.queue == q
    ch.queue_delete(q)
    c.close()


def test_consuming_with_global_qos_is_a_connection_error(warren):
    q = name("qq-qos")
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments=Q)
    ch.basic_qos(prefetch_count=0, global_qos=True)
    ch.basic_consume(q, lambda *a: None)  # a global limit of 0 is no limit
    ch2 = c.channel()
    ch2.basic_qos(prefetch_count=10, global_qos=True)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        ch2.basic_consume(q, lambda *a: None)
    assert (e.value.reply_code, e.value.reply_text) == (
        540, f"NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos")
    c = connect(warren)
    c.channel().queue_delete(q)
    c.close()


def test_delivery_count_header_and_delivery_limit_dead_letters(warren):
    q, dead = name("qq-limit"), name("qq-dead")
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare(dead, durable=True)
    ch.queue_declare(q, durable=True, arguments=dict(Q, **{
        "x-delivery-limit": 1, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}))
    ch.confirm_delivery()
    ch.basic_publish("", q, b"m1", pika.BasicProperties(headers={"a": 1}))
    seen = []

    def on_message(chan, m, p, body):
        seen.append((m.redelivered, p.headers))
        chan.basic_nack(m.delivery_tag, requeue=True)
    ch.basic_consume(q, on_message)
    deadline = time.time() + 10
    got = (None, None, None)
    while time.time() < deadline and got[0] is None:
        c.process_data_events(0.05)
        if len(seen) >= 2:
            got = ch.basic_get(dead, auto_ack=True)
    # The first delivery has no count; the second carries 1; a third return is over the limit.
    assert seen[:2] == [(False, {"a": 1}), (True, {"a": 1, "x-delivery-count": 1})]
    assert got[0] is not None, "the message was not dead-lettered"
    headers = got[1].headers
    assert "x-delivery-count" not in headers and headers["a"] == 1
    assert headers["x-first-death-reason"] == "delivery_limit"
    assert headers["x-death"][0]["reason"] == "delivery_limit" and headers["x-death"][0]["queue"] == q
    ch.queue_delete(q)
    ch.queue_delete(dead)
    c.close()


def test_basic_get_always_carries_the_delivery_count_and_channel_closes_count(warren):
    q = name("qq-get")
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments=Q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"x")
    counts = []
    for _ in range(3):
        other = c.channel()
        m, p, _ = other.basic_get(q)
        counts.append((m.redelivered, p.headers["x-delivery-count"]))
        other.close()  # returns the unacked message: a delivery counted
    assert counts == [(False, 0), (True, 1), (True, 2)]
    deadline = time.time() + 5  # RabbitMQ returns the message after close-ok
    while ch.queue_declare(q, passive=True).method.message_count != 1 and time.time() < deadline:
        time.sleep(0.02)
    assert ch.queue_declare(q, passive=True).method.message_count == 1
    ch.queue_delete(q)
    c.close()


def management_queue(node, q):
    req = urllib.request.Request(
        f"http://{node.host}:{node.management_port}/api/queues/%2F/{q}",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    return json.load(urllib.request.urlopen(req, timeout=10))


@pytest.mark.skipif(not against_warren(), reason="the management port of an external broker is not known")
def test_management_api_shows_the_type_and_the_group_of_one(warren):
    q = name("qq-mgmt")
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments=dict(Q, **{"x-delivery-limit": 3}))
    d = management_queue(warren, q)
    assert d["type"] == "quorum" and d["durable"] is True
    assert d["arguments"] == {"x-delivery-limit": 3, "x-queue-type": "quorum"}
    assert d["members"] == [d["leader"]] and d["online"] == [d["leader"]] and d["leader"].startswith("warren@")
    ch.queue_delete(q)
    c.close()


@pytest.mark.skipif(not against_warren(), reason="restarts a Warren node")
def test_quorum_messages_survive_a_restart_whatever_their_delivery_mode():
    node = Node("quorum-restart")
    try:
        c = connect(node)
        ch = c.channel()
        ch.queue_declare("qq-restart", durable=True, arguments=Q)
        ch.confirm_delivery()
        ch.basic_publish("", "qq-restart", b"transient", pika.BasicProperties(delivery_mode=1))
        ch.basic_publish("", "qq-restart", b"persistent", pika.BasicProperties(delivery_mode=2))
        c.close()
        node.kill()
        node = Node("quorum-restart", data_dir=node.data_dir, append_log=True)
        c = connect(node)
        ch = c.channel()
        bodies = [ch.basic_get("qq-restart", auto_ack=True)[2] for _ in range(2)]
        assert bodies == [b"transient", b"persistent"]
        c.close()
    finally:
        assert node.stop() == 0


# Programs shaped like the current RabbitMQ Python tutorials (hello world and work queues now
# declare quorum queues): a producer and a consumer as separate processes, unchanged code paths
# of a user's first day.
SEND = """
import os, sys, pika
c = pika.BlockingConnection(pika.ConnectionParameters(os.environ['AMQP_HOST'], int(os.environ['AMQP_PORT'])))
ch = c.channel()
ch.queue_declare(queue=sys.argv[1], durable=True, arguments={'x-queue-type': 'quorum'})
for body in sys.argv[2:]:
    ch.basic_publish(exchange='', routing_key=sys.argv[1], body=body,
                     properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    print(' [x] Sent', body, flush=True)
c.close()
"""
WORK = """
import os, sys, pika
c = pika.BlockingConnection(pika.ConnectionParameters(os.environ['AMQP_HOST'], int(os.environ['AMQP_PORT'])))
ch = c.channel()
ch.queue_declare(queue=sys.argv[1], durable=True, arguments={'x-queue-type': 'quorum'})
ch.basic_qos(prefetch_count=1)
left = int(sys.argv[2])
def callback(ch, method, properties, body):
    global left
    print(' [x] Received', body.decode(), flush=True)
    ch.basic_ack(delivery_tag=method.delivery_tag)
    left -= 1
    if left == 0:
        ch.stop_consuming()
ch.basic_consume(queue=sys.argv[1], on_message_callback=callback)
ch.start_consuming()
c.close()
"""


def run(node, code, *args, timeout=30):
    env = dict(AMQP_HOST=node.host, AMQP_PORT=str(node.port), PATH="/usr/bin:/bin")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_tutorial_shaped_programs_with_quorum_queues(warren):
    q = name("task_queue")
    workers = [subprocess.Popen([sys.executable, "-c", WORK, q, "3"], stdout=subprocess.PIPE, text=True,
                                env=dict(AMQP_HOST=warren.host, AMQP_PORT=str(warren.port), PATH="/usr/bin:/bin"))
               for _ in range(2)]
    sent = run(warren, SEND, q, *[f"task {i}" for i in range(6)])
    assert sent.returncode == 0, sent.stderr
    received = []
    for w in workers:
        out, _ = w.communicate(timeout=30)
        assert w.returncode == 0
        received += [line.split(" [x] Received ")[1] for line in out.splitlines()]
    assert sorted(received) == [f"task {i}" for i in range(6)]
    c = connect(warren)
    c.channel().queue_delete(q)
    c.close()
