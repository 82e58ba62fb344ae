"""Policies and operator policies loaded from a definitions file, seen through pika: which
policy applies, how it combines with queue arguments, and that it acts on messages. Holds
against RabbitMQ too (WARREN_TEST_REFERENCE=rabbitmq)."""
import time

import pika
import pytest

import brokers
from brokers import get

DEFINITIONS = {
    "users": [{"name": "guest", "password": "guest", "tags": ["administrator"]}],
    "vhosts": [{"name": "/"}],
    "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    "policies": [
        {"vhost": "/", "name": "ttl-dlx", "pattern": "^pol\\.ttl", "apply-to": "queues", "priority": 0,
         "definition": {"message-ttl": 100, "dead-letter-exchange": "pol.dlx"}},
        # Two policies match pol.both.*: only the one with the higher priority applies.
        {"vhost": "/", "name": "both-low", "pattern": "^pol\\.both", "apply-to": "queues", "priority": 1,
         "definition": {"max-length": 1}},
        {"vhost": "/", "name": "both-high", "pattern": "^pol\\.both", "apply-to": "queues", "priority": 2,
         "definition": {"max-length": 3}},
        {"vhost": "/", "name": "ae", "pattern": "^pol\\.in$", "apply-to": "exchanges", "priority": 0,
         "definition": {"alternate-exchange": "pol.unrouted"}},
        {"vhost": "/", "name": "len", "pattern": "^pol\\.len", "apply-to": "all", "priority": 0,
         "definition": {"max-length": 5, "overflow": "reject-publish"}},
    ],
    "parameters": [
        {"vhost": "/", "component": "operator_policy", "name": "cap", "value": {
            "pattern": "^pol\\.len\\.capped", "apply-to": "queues", "priority": 0, "definition": {"max-length": 2}}},
    ],
    "exchanges": [
        {"vhost": "/", "name": "pol.dlx", "type": "fanout", "durable": True, "auto_delete": False, "internal": False, "arguments": {}},
        {"vhost": "/", "name": "pol.unrouted", "type": "fanout", "durable": True, "auto_delete": False, "internal": False, "arguments": {}},
        {"vhost": "/", "name": "pol.in", "type": "direct", "durable": True, "auto_delete": False, "internal": False, "arguments": {}},
    ],
    "queues": [
        {"vhost": "/", "name": "pol.dead", "durable": True, "auto_delete": False, "arguments": {}},
        {"vhost": "/", "name": "pol.unrouted.q", "durable": True, "auto_delete": False, "arguments": {}},
    ],
    "bindings": [
        {"vhost": "/", "source": "pol.dlx", "destination": "pol.dead", "destination_type": "queue", "routing_key": "", "arguments": {}},
        {"vhost": "/", "source": "pol.unrouted", "destination": "pol.unrouted.q", "destination_type": "queue", "routing_key": "", "arguments": {}},
    ],
}


@pytest.fixture(scope="module")
def node():
    n = brokers.start("test_policies_pika", DEFINITIONS)
    yield n
    assert n.stop() == 0


@pytest.fixture
def ch(node):
    c = pika.BlockingConnection(pika.ConnectionParameters(node.host, node.port, heartbeat=0))
    channel = c.channel()
    yield channel
    if c.is_open:
        c.close()



def fill(ch, queue, n):
    for i in range(n):
        ch.basic_publish("", queue, b"%d" % i)
    time.sleep(0.05)
    return ch.queue_declare(queue, passive=True).method.message_count


def test_a_policy_gives_ttl_and_dead_lettering(ch):
    ch.queue_declare("pol.ttl.a")
    ch.basic_publish("", "pol.ttl.a", b"expires by policy")
    m, p, body = get(ch, "pol.dead")
    assert body == b"expires by policy"
    assert p.headers["x-first-death-reason"] in ("expired", b"expired")


def test_the_highest_priority_policy_alone_applies(ch):
    ch.queue_declare("pol.both.a")
    assert fill(ch, "pol.both.a", 5) == 3


def test_apply_to_exchanges_gives_an_alternate_exchange(ch):
    ch.basic_publish("pol.in", "nowhere", b"unroutable")
    assert get(ch, "pol.unrouted.q")[2] == b"unroutable"


def test_the_lower_of_queue_argument_and_policy_wins_for_limits(ch):
    ch.queue_declare("pol.len.arg", arguments={"x-max-length": 3})
    confirm = ch.connection.channel()
    confirm.confirm_delivery()
    confirm.basic_publish("", "pol.len.arg", b"1")
    confirm.basic_publish("", "pol.len.arg", b"2")
    confirm.basic_publish("", "pol.len.arg", b"3")
    with pytest.raises(pika.exceptions.NackError):
        confirm.basic_publish("", "pol.len.arg", b"4")  # overflow reject-publish from the policy


def test_a_policy_limit_below_the_argument_wins(ch):
    ch.queue_declare("pol.len.high", arguments={"x-max-length": 10})
    assert fill(ch, "pol.len.high", 7) == 5


def test_an_operator_policy_caps_what_a_policy_allows(ch):
    ch.queue_declare("pol.len.capped")
    assert fill(ch, "pol.len.capped", 4) == 2


def test_a_queue_argument_overrides_the_policy_for_dead_letter_exchange(ch):
    ch.exchange_declare("pol.dlx2", "fanout")
    ch.queue_declare("pol.dead2")
    ch.queue_bind("pol.dead2", "pol.dlx2")
    ch.queue_declare("pol.ttl.b", arguments={"x-dead-letter-exchange": "pol.dlx2"})
    ch.basic_publish("", "pol.ttl.b", b"to dlx2")
    assert get(ch, "pol.dead2")[2] == b"to dlx2"
