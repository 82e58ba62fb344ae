"""One management-API scenario, run the same way against RabbitMQ (to capture fixtures, see
Scripts/capture-management-fixtures) and against Warren (test_management_api.py): the state it
builds, the requests it makes and what it records of each answer (status and JSON body)."""
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pika


def q(s):
    """A path segment as RabbitMQ's API wants it (the vhost / is %2F)."""
    return urllib.parse.quote(s, safe="")


class API:
    def __init__(self, port, user="guest", password="guest"):
        self.base = f"http://127.0.0.1:{port}"
        self.user, self.password = user, password

    def call(self, method, path, body=None, user=None, password=None, auth=True, raw=False):
        """(status, parsed JSON body or None, headers)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            u, p = user or self.user, password if password is not None else self.password
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, text, headers = r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            status, text, headers = e.code, e.read(), dict(e.headers)
        if raw:
            return status, text, headers
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        return status, parsed, headers

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def ok(self, method, path, body=None):
        status, parsed, _ = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {parsed}"
        return parsed


def build_state(api, amqp_port):
    """The state every recorded request looks at. Returns the AMQP connection it keeps open (a
    consumer with one unacknowledged message) so connections/channels/consumers are not empty."""
    api.ok("PUT", "/api/vhosts/shop", {"description": "the shop", "tags": "web"})
    api.ok("PUT", "/api/users/alice", {"password": "alicepw", "tags": "monitoring"})
    api.ok("PUT", "/api/users/bob", {"password": "bobpw", "tags": ""})
    api.ok("PUT", "/api/users/carol", {"password": "carolpw", "tags": "management"})
    api.ok("PUT", "/api/permissions/shop/alice", {"configure": ".*", "write": ".*", "read": ".*"})
    api.ok("PUT", "/api/permissions/shop/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    api.ok("PUT", "/api/topic-permissions/shop/alice", {"exchange": "orders", "write": "^eu\\.", "read": ".*"})
    api.ok("PUT", "/api/policies/shop/ttl", {"pattern": "^ttl\\.", "definition": {"message-ttl": 60000}, "apply-to": "queues", "priority": 1})
    api.ok("PUT", "/api/operator-policies/shop/cap", {"pattern": ".*", "definition": {"max-length": 100000}, "apply-to": "queues", "priority": 0})
    api.ok("PUT", "/api/exchanges/shop/orders", {"type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}})
    api.ok("PUT", "/api/queues/shop/orders.eu", {"durable": True, "auto_delete": False, "arguments": {"x-max-priority": 5}})
    api.ok("PUT", "/api/queues/shop/work", {"durable": True, "arguments": {}})
    api.ok("POST", "/api/bindings/shop/e/orders/q/orders.eu", {"routing_key": "eu.#", "arguments": {}})
    api.ok("PUT", "/api/global-parameters/warren-test", {"value": {"colour": "blue"}})
    for i in range(3):
        api.ok("POST", "/api/exchanges/shop/orders/publish",
               {"properties": {"delivery_mode": 2, "headers": {"n": i}}, "routing_key": "eu.de", "payload": f"order {i}", "payload_encoding": "string"})
    # A consumer holding one unacknowledged message, on its own connection.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port, "shop",
                                                             client_properties={"connection_name": "scenario-consumer"}))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    ch.basic_publish("", "work", b"job 1")
    ch.basic_publish("", "work", b"job 2")
    ch.basic_consume("work", lambda *a: None, consumer_tag="scenario-tag")
    deadline = time.time() + 10
    while time.time() < deadline:
        conn.process_data_events(time_limit=0.2)
        s, body, _ = api.get("/api/queues/shop/work")
        if s == 200 and body.get("messages_unacknowledged") == 2 and body.get("consumers") == 1:
            break
    return conn


def wait_for_stats(api, conn, seconds):
    """RabbitMQ shows connections and rates after its 5 s statistics interval."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        conn.process_data_events(time_limit=0.5)


# What is recorded: name -> (method, path, body, credentials). Credentials None is guest.
def requests(node_name, connection_name):
    n = q(connection_name)
    return [
        ("overview", "GET", "/api/overview", None, None),
        ("whoami", "GET", "/api/whoami", None, None),
        ("nodes", "GET", "/api/nodes", None, None),
        ("node", "GET", f"/api/nodes/{q(node_name)}", None, None),
        ("connections", "GET", "/api/connections", None, None),
        ("connection", "GET", f"/api/connections/{n}", None, None),
        ("vhost_connections", "GET", "/api/vhosts/shop/connections", None, None),
        ("channels", "GET", "/api/channels", None, None),
        ("connection_channels", "GET", f"/api/connections/{n}/channels", None, None),
        ("consumers", "GET", "/api/consumers", None, None),
        ("consumers_vhost", "GET", "/api/consumers/shop", None, None),
        ("exchanges", "GET", "/api/exchanges", None, None),
        ("exchanges_vhost", "GET", "/api/exchanges/shop", None, None),
        ("exchange", "GET", "/api/exchanges/shop/orders", None, None),
        ("exchange_source_bindings", "GET", "/api/exchanges/shop/orders/bindings/source", None, None),
        ("exchange_destination_bindings", "GET", "/api/exchanges/shop/orders/bindings/destination", None, None),
        ("queues", "GET", "/api/queues", None, None),
        ("queues_vhost", "GET", "/api/queues/shop", None, None),
        ("queue", "GET", "/api/queues/shop/orders.eu", None, None),
        ("queue_consumed", "GET", "/api/queues/shop/work", None, None),
        ("queue_bindings", "GET", "/api/queues/shop/orders.eu/bindings", None, None),
        ("queues_columns", "GET", "/api/queues?columns=name,messages,vhost", None, None),
        ("queues_page", "GET", "/api/queues?page=1&page_size=1&name=&use_regex=false&pagination=true", None, None),
        ("bindings", "GET", "/api/bindings", None, None),
        ("bindings_vhost", "GET", "/api/bindings/shop", None, None),
        ("bindings_e_q", "GET", "/api/bindings/shop/e/orders/q/orders.eu", None, None),
        ("binding", "GET", f"/api/bindings/shop/e/orders/q/orders.eu/{q('eu.#')}", None, None),
        ("vhosts", "GET", "/api/vhosts", None, None),
        ("vhost", "GET", "/api/vhosts/shop", None, None),
        ("vhost_permissions", "GET", "/api/vhosts/shop/permissions", None, None),
        ("vhost_topic_permissions", "GET", "/api/vhosts/shop/topic-permissions", None, None),
        ("users", "GET", "/api/users", None, None),
        ("user", "GET", "/api/users/alice", None, None),
        ("user_permissions", "GET", "/api/users/alice/permissions", None, None),
        ("user_topic_permissions", "GET", "/api/users/alice/topic-permissions", None, None),
        ("users_without_permissions", "GET", "/api/users/without-permissions", None, None),
        ("permissions", "GET", "/api/permissions", None, None),
        ("permission", "GET", "/api/permissions/shop/alice", None, None),
        ("topic_permissions", "GET", "/api/topic-permissions", None, None),
        ("topic_permission", "GET", "/api/topic-permissions/shop/alice", None, None),
        ("policies", "GET", "/api/policies", None, None),
        ("policies_vhost", "GET", "/api/policies/shop", None, None),
        ("policy", "GET", "/api/policies/shop/ttl", None, None),
        ("operator_policies", "GET", "/api/operator-policies", None, None),
        ("operator_policy", "GET", "/api/operator-policies/shop/cap", None, None),
        ("parameters", "GET", "/api/parameters", None, None),
        ("global_parameters", "GET", "/api/global-parameters", None, None),
        ("global_parameter", "GET", "/api/global-parameters/warren-test", None, None),
        ("definitions", "GET", "/api/definitions", None, None),
        ("definitions_vhost", "GET", "/api/definitions/shop", None, None),
        ("alarms", "GET", "/api/health/checks/alarms", None, None),
        ("local_alarms", "GET", "/api/health/checks/local-alarms", None, None),
        ("aliveness", "GET", "/api/aliveness-test/shop", None, None),
        ("extensions", "GET", "/api/extensions", None, None),
        # Reads of messages and publishes.
        ("get_requeue", "POST", "/api/queues/shop/orders.eu/get",
         {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000}, None),
        ("publish_routed", "POST", "/api/exchanges/shop/orders/publish",
         {"properties": {}, "routing_key": "eu.fr", "payload": "aGk=", "payload_encoding": "base64"}, None),
        ("publish_unrouted", "POST", "/api/exchanges/shop/orders/publish",
         {"properties": {}, "routing_key": "us.ny", "payload": "x", "payload_encoding": "string"}, None),
        # Errors.
        ("no_credentials", "GET", "/api/overview", None, "none"),
        ("wrong_password", "GET", "/api/overview", None, ("guest", "wrong")),
        ("unknown_user", "GET", "/api/overview", None, ("mallory", "x")),
        ("not_management_user", "GET", "/api/overview", None, ("bob", "bobpw")),
        ("not_administrator", "GET", "/api/users", None, ("alice", "alicepw")),
        ("not_monitor", "GET", "/api/nodes", None, ("carol", "carolpw")),
        ("vhost_not_permitted", "GET", "/api/queues/%2F", None, ("carol", "carolpw")),
        ("monitor_overview", "GET", "/api/overview", None, ("alice", "alicepw")),
        ("management_queues", "GET", "/api/queues", None, ("carol", "carolpw")),
        ("missing_queue", "GET", "/api/queues/shop/nope", None, None),
        ("missing_vhost", "GET", "/api/queues/nosuchvhost", None, None),
        ("missing_exchange", "GET", "/api/exchanges/shop/nope", None, None),
        ("unknown_path", "GET", "/api/nosuch", None, None),
        ("bad_json", "PUT", "/api/queues/shop/bad", b"{bad", None),
        ("inequivalent", "PUT", "/api/queues/shop/orders.eu", {"durable": False}, None),
        ("put_existing_queue", "PUT", "/api/queues/shop/orders.eu", {"durable": True, "arguments": {"x-max-priority": 5}}, None),
        ("put_new_exchange", "PUT", "/api/exchanges/shop/fresh", {"type": "fanout"}, None),
        ("bad_exchange_type", "PUT", "/api/exchanges/shop/weird", {"type": "nosuchtype"}, None),
        ("delete_exchange", "DELETE", "/api/exchanges/shop/fresh", None, None),
        ("delete_missing_queue", "DELETE", "/api/queues/shop/nope", None, None),
        ("purge", "DELETE", "/api/queues/shop/orders.eu/contents", None, None),
        ("get_empty", "POST", "/api/queues/shop/orders.eu/get", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}, None),
        ("put_vhost_existing", "PUT", "/api/vhosts/shop", {}, None),
        ("delete_user_missing", "DELETE", "/api/users/nobody", None, None),
        ("bad_policy", "PUT", "/api/policies/shop/bad", {"pattern": ".*", "definition": {"no-such-key": 1}}, None),
        ("post_definitions", "POST", "/api/definitions", {"queues": [{"name": "imported", "vhost": "shop", "durable": True, "auto_delete": False, "arguments": {}}]}, None),
        ("delete_queue", "DELETE", "/api/queues/shop/imported", None, None),
    ]


def record(api, node_name, connection_name):
    out = {}
    for name, method, path, body, cred in requests(node_name, connection_name):
        if cred == "none":
            status, parsed, headers = api.call(method, path, body, auth=False)
        elif cred:
            status, parsed, headers = api.call(method, path, body, user=cred[0], password=cred[1])
        else:
            status, parsed, headers = api.call(method, path, body)
        out[name] = {"method": method, "path": path, "status": status, "body": parsed,
                     "www_authenticate": headers.get("www-authenticate") or headers.get("WWW-Authenticate")}
    return out
