"""Definitions round trip with a real RabbitMQ (Debian's rabbitmq-server, installed by
Scripts/lib/scratch_rabbitmq.py when missing): RabbitMQ accepts Warren's export, and Warren boots
from RabbitMQ's export, passwords included.

Fixtures (Tests/fixtures): rabbitmq-3.10.8-export.json was exported from RabbitMQ 3.10.8;
warren-export.json is Warren's export after importing it (kept current by the Swift test
DefinitionsTests.golden)."""
import json
import os
import types

import pika
import pytest

import brokers
from conftest import ROOT, Node

FIXTURES = os.path.join(ROOT, "Tests", "fixtures")
PASSWORDS = {"ops": "opspw", "app": "apppw", "monitor": "monitorpw", "guest": "guest"}


@pytest.fixture(scope="module")
def rabbit():
    r = brokers.RabbitMQ(plugins=("rabbitmq_federation",))
    yield r
    r.stop()


def connect(node, user, vhost):
    return pika.BlockingConnection(pika.ConnectionParameters(
        node.host, node.port, virtual_host=vhost, credentials=pika.PlainCredentials(user, PASSWORDS[user]), heartbeat=0))


def check_prod(node):
    """What the fixture's definitions promise, seen by a client."""
    c = connect(node, "app", "prod")
    ch = c.channel()
    assert ch.queue_declare("app.orders", passive=True).method.message_count == 0
    # app.in has the app-ae policy: unroutable messages go to app.unrouted (no queue behind it).
    ch.confirm_delivery()
    ch.basic_publish("app.in", "order.created", b"order", pika.BasicProperties(priority=7))
    ch.basic_publish("app.events", "app.x", b"event")
    assert ch.queue_declare("app.orders", passive=True).method.message_count == 1
    assert ch.queue_declare("app.lazy", passive=True).method.message_count == 1
    # app's permissions: configure only ^app\.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("other")
    assert info.value.reply_code == 403
    c.close()
    c = connect(node, "ops", "prod")
    ch = c.channel()
    ch.queue_purge("app.orders")
    ch.queue_purge("app.lazy")
    c.close()
    for user in ("monitor", "guest"):
        connect(node, user, "/").close()


def test_rabbitmq_accepts_warrens_export(rabbit):
    rabbit.rabbitmqctl("import_definitions", os.path.join(FIXTURES, "warren-export.json"))
    for user, password in PASSWORDS.items():
        rabbit.rabbitmqctl("authenticate_user", user, password)  # raises when refused
    with pytest.raises(RuntimeError):
        rabbit.rabbitmqctl("authenticate_user", "app", "wrong")
    queues = rabbit.rabbitmqctl("list_queues", "-p", "prod", "name", "policy", "durable", "--formatter", "json")
    by_name = {q["name"]: q for q in json.loads(queues)}
    assert set(by_name) == {"app.orders", "app.pdfs", "app.lazy", "app.dead"}
    assert by_name["app.orders"]["policy"] == "app-limits" and by_name["app.orders"]["durable"]
    limits = json.loads(rabbit.rabbitmqctl("list_vhost_limits", "-p", "prod", "--formatter", "json"))
    assert json.loads(limits["value"]) == {"max-connections": 100, "max-queues": 50}
    tags = json.loads(rabbit.rabbitmqctl("list_users", "--formatter", "json"))
    assert {u["user"]: sorted(u["tags"]) for u in tags}["ops"] == ["administrator", "policymaker"]
    check_prod(types.SimpleNamespace(host="127.0.0.1", port=rabbit.port))


def test_warren_boots_from_rabbitmqs_fixture():
    node = Node("definitions_rabbitmq_fixture", ["--load-definitions", os.path.join(FIXTURES, "rabbitmq-3.10.8-export.json")])
    try:
        check_prod(node)
    finally:
        assert node.stop() == 0


def test_warren_boots_from_a_live_rabbitmq_export(rabbit, tmp_path):
    """RabbitMQ exports what it imported from Warren; Warren boots from that."""
    rabbit.rabbitmqctl("import_definitions", os.path.join(FIXTURES, "warren-export.json"))
    exported = json.loads(rabbit.rabbitmqctl("export_definitions", "-"))
    path = str(tmp_path / "live-export.json")
    with open(path, "w") as f:
        json.dump(exported, f)
    assert {u["name"] for u in exported["users"]} >= set(PASSWORDS)
    node = Node("definitions_rabbitmq_live", ["--load-definitions", path])
    try:
        check_prod(node)
    finally:
        assert node.stop() == 0
