"""The management HTTP API against RabbitMQ 3.10's answers for the same scenario
(Tests/fixtures/management/rabbitmq-3.10.json, captured by Scripts/capture-management-fixtures):
status codes per endpoint, and for every field Warren fills, the same name and JSON type."""
import json
import os
import time

import pika
import pytest

import management_scenario as sc
from conftest import ROOT, Node

FIXTURE = os.path.join(ROOT, "Tests", "fixtures", "management", "rabbitmq-3.10.json")

# Deliberate differences, each explained in docs/management.md.
STATUS_DEVIATIONS = {
    # Authenticated but missing a tag or vhost permission: 403 (RabbitMQ 3.10 says 401).
    "not_management_user": 403, "not_administrator": 403, "not_monitor": 403, "vhost_not_permitted": 403,
}


@pytest.fixture(scope="module")
def rabbit():
    with open(FIXTURE) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def warren():
    node = Node("test_management_api")
    api = sc.API(node.management_port)
    conn = sc.build_state(api, node.port)
    name = next(c["name"] for c in api.get("/api/connections")[1]
                if c.get("client_properties", {}).get("connection_name") == "scenario-consumer")
    node_name = api.get("/api/overview")[1]["node"]
    answers = sc.record(api, node_name, name)
    yield {"node": node, "api": api, "answers": answers, "conn": conn}
    try:
        conn.close()
    except Exception:
        pass
    node.stop()


def kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "object"


def merged(items):
    """The union of a list of objects' fields (the first non-null value of each)."""
    out = {}
    for it in items:
        if isinstance(it, dict):
            for k, v in it.items():
                if out.get(k) is None:
                    out[k] = v
    return out


# Free-form maps: their keys are data, not fields.
FREE_FORM = ("arguments", "client_properties", "definition", "value", "headers", "cluster_state", "capabilities")

# Fields RabbitMQ 3.11+ writes in definitions that 3.10 does not (Warren's export keeps a
# vhost's description, tags and limits, and a queue's type, and RabbitMQ 3.10 imports them).
NEWER_RABBITMQ_FIELDS = {"$.vhosts[].metadata", "$.vhosts[].limits", "$.queues[].type"}


def message_stats_fields(fixture):
    """RabbitMQ shows a message_stats field once its event has happened; the fields seen
    anywhere in the fixture are the vocabulary."""
    out = {}

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "message_stats" and isinstance(x, dict):
                    out.update(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk([a["body"] for a in fixture["answers"].values()])
    return out


def shape_problems(w, r, path="$", stats=None):
    """Fields Warren fills whose name RabbitMQ does not use, or whose JSON type differs."""
    if path.endswith(FREE_FORM):
        return []
    if path.endswith("message_stats") and stats:
        r = stats
    if r is None or w is None:
        return []  # RabbitMQ's null says nothing about the type; Warren's null is "not known"
    if kind(w) != kind(r):
        return [f"{path}: Warren {kind(w)} vs RabbitMQ {kind(r)}"]
    if isinstance(w, dict):
        out = []
        generic = path.split("[")[0] + ("[]" if "[" in path else "")
        for k, v in w.items():
            if f"{generic}.{k}" in NEWER_RABBITMQ_FIELDS and path.count("[") == 1:
                continue
            if k not in r:
                out.append(f"{path}.{k}: not a RabbitMQ field")
            else:
                out += shape_problems(v, r[k], f"{path}.{k}", stats)
        return out
    if isinstance(w, list) and w and r:
        if all(isinstance(x, dict) for x in r):
            m = merged(r)
            return [p for i, x in enumerate(w) for p in shape_problems(x, m, f"{path}[{i}]", stats)]
        return [p for i, x in enumerate(w) for p in shape_problems(x, r[0], f"{path}[{i}]", stats)]
    return []


def test_every_endpoint_answers_with_rabbitmqs_status(warren, rabbit):
    wrong = []
    for name, r in rabbit["answers"].items():
        w = warren["answers"][name]
        want = STATUS_DEVIATIONS.get(name, r["status"])
        if w["status"] != want:
            wrong.append(f"{name} {r['method']} {r['path']}: Warren {w['status']} {w['body']}, want {want}")
    assert not wrong, "\n".join(wrong)


def test_every_field_warren_fills_has_rabbitmqs_name_and_type(warren, rabbit):
    problems = []
    stats = message_stats_fields(rabbit)
    for name, r in rabbit["answers"].items():
        w = warren["answers"][name]
        problems += [f"{name}: {p}" for p in shape_problems(w["body"], r["body"], stats=stats)]
    assert not problems, "\n".join(problems)


def test_error_bodies_are_rabbitmqs(warren, rabbit):
    for name in ["wrong_password", "unknown_user", "not_management_user", "not_administrator", "not_monitor",
                 "vhost_not_permitted", "missing_queue", "unknown_path", "bad_json", "inequivalent", "bad_exchange_type"]:
        assert warren["answers"][name]["body"] == rabbit["answers"][name]["body"], name


def test_auth_statuses(warren):
    a = warren["answers"]
    assert a["no_credentials"]["status"] == 401 and a["no_credentials"]["www_authenticate"].startswith("Basic")
    assert a["wrong_password"]["status"] == 401
    assert a["unknown_user"]["status"] == 401
    assert a["not_management_user"]["status"] == 403  # bob has no tags at all
    assert a["not_administrator"]["status"] == 403  # alice is a monitor, /api/users needs administrator
    assert a["not_monitor"]["status"] == 403  # carol is a management user, /api/nodes needs monitoring
    assert a["monitor_overview"]["status"] == 200
    assert a["management_queues"]["status"] == 200 and a["management_queues"]["body"] == []  # no permissions: sees nothing


def test_core_fields_are_filled(warren):
    a = warren["answers"]
    q = a["queue_consumed"]["body"]
    for k in ["messages", "messages_ready", "messages_unacknowledged", "consumers", "memory", "state", "message_stats",
              "durable", "auto_delete", "exclusive", "arguments", "node", "vhost", "consumer_details"]:
        assert k in q, k
    assert (q["messages"], q["messages_ready"], q["messages_unacknowledged"], q["consumers"]) == (2, 0, 2, 1)
    assert q["message_stats"]["publish"] == 2 and "rate" in q["message_stats"]["publish_details"]
    assert q["consumer_details"][0]["consumer_tag"] == "scenario-tag"
    assert q["operator_policy"] == "cap" and q["effective_policy_definition"] == {"max-length": 100000}
    c = a["connection"]["body"]
    for k in ["name", "user", "vhost", "peer_host", "peer_port", "channels", "state", "client_properties", "protocol"]:
        assert k in c, k
    assert c["user_provided_name"] == "scenario-consumer" and c["vhost"] == "shop" and c["channels"] == 1
    ch = a["channels"]["body"][0]
    assert ch["prefetch_count"] == 10 and ch["messages_unacknowledged"] == 2 and ch["consumer_count"] == 1
    o = a["overview"]["body"]
    assert o["object_totals"]["queues"] >= 2 and o["object_totals"]["connections"] == 1
    assert a["queues_columns"]["body"] == [{"messages": 3, "name": "orders.eu", "vhost": "shop"}, {"messages": 2, "name": "work", "vhost": "shop"}]
    page = a["queues_page"]["body"]
    assert (page["filtered_count"], page["item_count"], page["page_count"], len(page["items"])) == (2, 1, 2, 1)
    got = a["get_requeue"]["body"]
    assert [m["payload"] for m in got] == ["order 0", "order 1"] and got[0]["properties"]["headers"] == {"n": 0}
    assert a["publish_routed"]["body"] == {"routed": True} and a["publish_unrouted"]["body"] == {"routed": False}
    assert a["whoami"]["body"] == {"name": "guest", "tags": ["administrator"]}


def test_management_api_changes_what_amqp_clients_see(warren):
    api, node = warren["api"], warren["node"]
    api.ok("PUT", "/api/queues/%2F/mgmt-made", {"durable": False})
    api.ok("POST", "/api/exchanges/%2F/amq.default/publish",
           {"properties": {"content_type": "text/plain"}, "routing_key": "mgmt-made", "payload": "hello", "payload_encoding": "string"})
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port))
    ch = conn.channel()
    method, props, body = ch.basic_get("mgmt-made", auto_ack=True)
    assert body == b"hello" and props.content_type == "text/plain"
    conn.close()
    status, _, _ = api.call("DELETE", "/api/queues/%2F/mgmt-made")
    assert status == 204
    assert api.get("/api/queues/%2F/mgmt-made")[0] == 404


def test_closing_a_connection_through_the_api(warren):
    api, node = warren["api"], warren["node"]
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, client_properties={"connection_name": "to-close"}))
    name = next(c["name"] for c in api.get("/api/connections")[1] if c.get("user_provided_name") == "to-close")
    status, _, _ = api.call("DELETE", "/api/connections/" + sc.q(name))
    assert status == 204
    with pytest.raises(pika.exceptions.ConnectionClosed) as e:
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)
    assert e.value.reply_code == 320
    assert "Closed via management plugin" in e.value.reply_text
    assert "closing connection at an operator's request" in node.log_text()


def test_alarms_turn_the_health_check_red(warren):
    api, node = warren["api"], warren["node"]
    # A disk limit above the free space raises the disk alarm (the node re-checks every second).
    node2 = Node("test_management_alarm", ["--disk-free-limit", "1000000GB"])
    try:
        api2 = sc.API(node2.management_port)
        deadline = time.time() + 10
        while time.time() < deadline:
            status, body, _ = api2.get("/api/health/checks/alarms")
            if status == 503:
                break
            time.sleep(0.2)
        assert status == 503 and body["status"] == "failed" and body["alarms"][0]["resource"] == "disk"
        assert api2.get("/api/nodes")[1][0]["disk_free_alarm"] is True
    finally:
        node2.stop()


def test_definitions_round_trip(warren):
    api = warren["api"]
    defs = api.ok("GET", "/api/definitions")
    assert any(q["name"] == "orders.eu" for q in defs["queues"])
    defs["queues"].append({"name": "from-import", "vhost": "shop", "durable": True, "auto_delete": False, "arguments": {}})
    status, _, _ = api.call("POST", "/api/definitions", defs)
    assert status == 204
    assert api.get("/api/queues/shop/from-import")[0] == 200
    api.ok("DELETE", "/api/queues/shop/from-import")


def test_a_body_over_the_limit_is_refused_with_413_and_the_node_serves_on(warren):
    """RabbitMQ limits management request bodies to 20 MB (management.http.max_body_size)."""
    api = warren["api"]
    status, body, _ = api.call("POST", "/api/definitions", b'{"users":["' + b"a" * 20_000_001 + b'"]}')
    assert status == 413
    assert body["reason"] == ("Exceeded HTTP request body size limit of 20000000 bytes "
                              "(raise it with --management-max-body-size)")
    assert api.get("/api/overview")[0] == 200
    assert "request body over 20000000 bytes refused" in warren["node"].log_text()


def test_node_health_check_and_bulk_user_deletion(warren):
    """What amqpstorm's management suite calls; answers as RabbitMQ 3.10.8 gives them."""
    api = warren["api"]
    node_name = api.get("/api/overview")[1]["node"]
    assert api.get("/api/healthchecks/node") == (200, {"status": "ok"}, api.get("/api/healthchecks/node")[2])
    assert api.get(f"/api/healthchecks/node/{node_name}")[1] == {"status": "ok"}
    for u in ("bulk1", "bulk2", "bulk3"):
        api.ok("PUT", f"/api/users/{u}", {"password": "x", "tags": ""})
    assert api.call("POST", "/api/users/bulk-delete", {"users": ["bulk1", "bulk2"]})[0] == 204
    assert api.get("/api/users/bulk1")[0] == 404
    status, body, _ = api.call("POST", "/api/users/bulk-delete", {"users": ["nosuchuser", "bulk3"]})
    assert (status, body) == (400, {"error": "bad_request", "reason": ["no_such_user", "nosuchuser"]})
    assert api.get("/api/users/bulk3")[0] == 200
    api.ok("DELETE", "/api/users/bulk3")


def test_web_ui_is_served(warren):
    api = warren["api"]
    status, text, headers = api.call("GET", "/", auth=False, raw=True)
    assert status == 200 and b"<html" in text.lower()


def test_malformed_requests_keep_the_node_serving(warren):
    api = warren["api"]
    for body in [b"[1,2", b"\xff\xfe", b'"just a string"', b"9" * 100000]:
        status, _, _ = api.call("PUT", "/api/queues/shop/x", body)
        assert status == 400
    assert api.call("PUT", "/api/exchanges/shop/x", {"durable": True})[0] == 400  # no type
    assert api.call("POST", "/api/queues/shop/work/get", {"count": 1, "ackmode": "nonsense"})[0] == 400
    assert api.call("GET", "/api/queues/%ZZ")[0] in (400, 404)
    assert api.get("/api/overview")[0] == 200


def test_a_taken_management_port_stops_the_start_with_a_clear_message():
    import socket
    import subprocess
    import tempfile
    from conftest import warren_binary
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        p = subprocess.run([warren_binary(), "--amqp-port", "0", "--bind", "127.0.0.1", "--data-dir", tempfile.mkdtemp(),
                            "--management-port", str(port), "--prometheus-port", "0", "--cluster-port", "0"], capture_output=True, text=True, timeout=30)
    finally:
        s.close()
    assert p.returncode != 0
    assert f"cannot start the management listener on 127.0.0.1:{port}" in p.stderr and "--management-port" in p.stderr
