"""Users, vhosts, permissions, topic permissions, limits and logins, through pika, against a
broker loaded from a definitions file. Every reply code and text is RabbitMQ 3.10.8's; run with
WARREN_TEST_REFERENCE=rabbitmq to check them against a scratch RabbitMQ."""
import socket
import struct
import time

import pika
import pytest

import brokers

DEFINITIONS = {
    "users": [
        {"name": "guest", "password": "guest", "tags": ["administrator"]},
        {"name": "alice", "password": "alicepw", "tags": []},
        {"name": "bob", "password": "bobpw", "tags": ["monitoring"], "limits": {"max-connections": 2, "max-channels": 2}},
        {"name": "carol", "password": "carolpw", "tags": ["management"]},
    ],
    "vhosts": [{"name": "/"}, {"name": "v1"}, {"name": "vlim"}],
    "permissions": [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "guest", "vhost": "v1", "configure": "^iso\\.", "write": "^iso\\.|amq\\.default|amq\\.direct", "read": "^iso\\.|amq\\.direct"},
        {"user": "alice", "vhost": "v1", "configure": "^alice-.*", "write": "^alice-.*|amq\\.default", "read": "^alice-.*|amq\\.direct"},
        {"user": "bob", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "carol", "vhost": "vlim", "configure": ".*", "write": ".*", "read": ".*"},
    ],
    "topic_permissions": [
        {"user": "bob", "vhost": "/", "exchange": "amq.topic", "write": "^allowed\\..*", "read": "^readable\\..*"},
    ],
    "parameters": [
        {"vhost": "vlim", "component": "vhost-limits", "name": "limits", "value": {"max-connections": 2, "max-queues": 3}},
    ],
}

LOGIN_REFUSED = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."


@pytest.fixture(scope="module")
def secured():
    node = brokers.start("test_access_pika", DEFINITIONS)
    yield node
    assert node.stop() == 0


def connect(node, user, password, vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        node.host, node.port, virtual_host=vhost, credentials=pika.PlainCredentials(user, password), heartbeat=0))


def outcome(node, creds, vhost, action):
    """Runs action(connection, channel); returns 'ok' or (scope, code, text) of the broker's close."""
    c = connect(node, *creds, vhost=vhost)
    ch = c.channel()
    try:
        action(c, ch)
        return "ok"
    except pika.exceptions.ChannelClosedByBroker as e:
        return ("channel", e.reply_code, e.reply_text)
    except pika.exceptions.ConnectionClosedByBroker as e:
        return ("connection", e.reply_code, e.reply_text)
    finally:
        if c.is_open:
            c.close()


def refused(kind, name, vhost="v1", user="alice"):
    return ("channel", 403, f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'")


def sync(ch):
    """A round trip after an asynchronous method, so a channel error surfaces."""
    ch.queue_declare("alice-sync", passive=False)


ALICE = ("alice", "alicepw")

# Where RabbitMQ checks configure, write and read permission, method by method.
PER_METHOD = {
    "queue.declare needs configure on the queue": (lambda c, ch: ch.queue_declare("other"), refused("queue", "other")),
    "server-named queue.declare needs configure on the generated name": (
        lambda c, ch: ch.queue_declare("", exclusive=True), None),  # text names the amq.gen name
    "queue.declare passive needs nothing": (lambda c, ch: (ch.queue_declare("alice-q"), ch.queue_declare("alice-q", passive=True)), "ok"),
    "exchange.declare needs configure": (lambda c, ch: ch.exchange_declare("other-x", "direct"), refused("exchange", "other-x")),
    "x-dead-letter-exchange needs write on the DLX": (
        lambda c, ch: ch.queue_declare("alice-dl", arguments={"x-dead-letter-exchange": "amq.fanout"}), refused("exchange", "amq.fanout")),
    "alternate-exchange needs write on the AE": (
        lambda c, ch: ch.exchange_declare("alice-ae", "direct", arguments={"alternate-exchange": "amq.fanout"}), refused("exchange", "amq.fanout")),
    "exchange.delete of a system exchange": (
        lambda c, ch: ch.exchange_delete("amq.fanout"), ("channel", 403, "ACCESS_REFUSED - deletion of system exchange 'amq.fanout' in vhost 'v1' not allowed")),
    "queue.bind needs read on the exchange": (
        lambda c, ch: (ch.queue_declare("alice-q"), ch.queue_bind("alice-q", "amq.fanout")), refused("exchange", "amq.fanout")),
    "queue.bind with read on the exchange and write on the queue": (
        lambda c, ch: (ch.queue_declare("alice-q"), ch.queue_bind("alice-q", "amq.direct", "k")), "ok"),
    "exchange.bind needs read on the source": (
        lambda c, ch: (ch.exchange_declare("alice-x", "direct"), ch.exchange_bind("alice-x", "amq.fanout")), refused("exchange", "amq.fanout")),
    "exchange.bind allowed source": (
        lambda c, ch: (ch.exchange_declare("alice-x", "direct"), ch.exchange_bind("alice-x", "amq.direct", "r")), "ok"),
    "basic.publish needs write on the exchange": (
        lambda c, ch: (ch.basic_publish("amq.fanout", "", b"x"), sync(ch)), refused("exchange", "amq.fanout")),
    "basic.publish to a missing exchange is refused before the lookup": (
        lambda c, ch: (ch.basic_publish("nope-x", "k", b"x"), sync(ch)), refused("exchange", "nope-x")),
    "basic.publish to the default exchange (amq.default)": (
        lambda c, ch: (ch.queue_declare("alice-q"), ch.basic_publish("", "alice-q", b"x"), sync(ch)), "ok"),
    "basic.consume needs read on the queue": (lambda c, ch: ch.basic_consume("amq.gen-other", lambda *a: None), refused("queue", "amq.gen-other")),
    "basic.get needs read": (lambda c, ch: ch.basic_get("otherq"), refused("queue", "otherq")),
    "queue.purge needs read": (lambda c, ch: ch.queue_purge("otherq"), refused("queue", "otherq")),
    "queue.delete needs configure": (lambda c, ch: ch.queue_delete("otherq"), refused("queue", "otherq")),
    "own queue: consume, purge, delete": (
        lambda c, ch: (ch.queue_declare("alice-own"), ch.basic_consume("alice-own", lambda *a: None), ch.queue_purge("alice-own"),
                       ch.queue_delete("alice-own")), "ok"),
}


@pytest.mark.parametrize("case", list(PER_METHOD))
def test_permission_checked_per_method(secured, case):
    action, expected = PER_METHOD[case]
    got = outcome(secured, ALICE, "v1", action)
    if expected is None:  # server-named: the generated name is refused
        assert got[:2] == ("channel", 403) and got[2].startswith("ACCESS_REFUSED - access to queue 'amq.gen-"), got
        assert got[2].endswith("' in vhost 'v1' refused for user 'alice'")
    else:
        assert got == expected


def test_vhosts_isolate_names_and_traffic(secured):
    root, v1 = connect(secured, "guest", "guest", "/"), connect(secured, "guest", "guest", "v1")
    rch, vch = root.channel(), v1.channel()
    for ch in (rch, vch):
        ch.queue_declare("iso.q")
        ch.queue_purge("iso.q")
        ch.queue_bind("iso.q", "amq.direct", "iso")
    rch.basic_publish("", "iso.q", b"root")
    rch.basic_publish("amq.direct", "iso", b"root via amq.direct")
    vch.basic_publish("", "iso.q", b"v1")
    time.sleep(0.05)
    assert rch.queue_declare("iso.q", passive=True).method.message_count == 2
    assert vch.queue_declare("iso.q", passive=True).method.message_count == 1
    assert vch.basic_get("iso.q", auto_ack=True)[2] == b"v1"
    vch.queue_delete("iso.q")
    assert rch.queue_declare("iso.q", passive=True).method.message_count == 2
    rch.queue_delete("iso.q")
    root.close()
    v1.close()


def test_no_permissions_in_a_vhost_refuses_connection_open(secured):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(secured, "alice", "alicepw", "/")
    assert "(530)" in str(info.value) and "NOT_ALLOWED - access to vhost '/' refused for user 'alice'" in str(info.value)


def test_topic_permissions_on_publish_and_bind(secured):
    bob = ("bob", "bobpw")
    assert outcome(secured, bob, "/", lambda c, ch: (ch.basic_publish("amq.topic", "denied.key", b"x"), ch.queue_declare("", exclusive=True))) == (
        "channel", 403, "ACCESS_REFUSED - access to topic 'denied.key' in exchange 'amq.topic' in vhost '/' refused for user 'bob'")
    assert outcome(secured, bob, "/", lambda c, ch: (ch.basic_publish("amq.topic", "allowed.key", b"x"), ch.queue_declare("", exclusive=True))) == "ok"
    assert outcome(secured, bob, "/", lambda c, ch: (ch.queue_declare("bq", exclusive=True), ch.queue_bind("bq", "amq.topic", "denied.#"))) == (
        "channel", 403, "ACCESS_REFUSED - access to topic 'denied.#' in exchange 'amq.topic' in vhost '/' refused for user 'bob'")
    assert outcome(secured, bob, "/", lambda c, ch: (ch.queue_declare("bq", exclusive=True), ch.queue_bind("bq", "amq.topic", "readable.#"))) == "ok"
    # Other topic exchanges have no topic permissions for bob: everything goes.
    assert outcome(secured, bob, "/", lambda c, ch: (ch.exchange_declare("bob.t", "topic"), ch.basic_publish("bob.t", "denied.key", b"x"),
                                                     ch.exchange_delete("bob.t"))) == "ok"


def test_user_id_must_match_the_authenticated_user(secured):
    guest = ("guest", "guest")
    props = pika.BasicProperties(user_id="bob")
    assert outcome(secured, guest, "/", lambda c, ch: (ch.basic_publish("", "nowhere", b"x", props), ch.queue_declare("", exclusive=True))) == (
        "channel", 406, "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'")
    c = connect(secured, "guest", "guest")
    ch = c.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="guest"))
    m, props, _ = ch.basic_get(q, auto_ack=True)
    assert props.user_id == "guest"
    c.close()


def test_vhost_connection_limit(secured):
    carol = [connect(secured, "carol", "carolpw", "vlim") for _ in range(2)]
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(secured, "carol", "carolpw", "vlim")
    assert "NOT_ALLOWED - access to vhost 'vlim' refused for user 'carol': connection limit (2) is reached" in str(info.value)
    carol.pop().close()
    carol.append(connect(secured, "carol", "carolpw", "vlim"))  # a slot frees when one closes
    for c in carol:
        c.close()


def test_vhost_queue_limit(secured):
    c = connect(secured, "carol", "carolpw", "vlim")
    ch = c.channel()
    for i in range(3):
        ch.queue_declare(f"lim{i}")
    ch.queue_declare("lim1")  # redeclaring an existing queue is not a new one
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("lim3")
    assert (info.value.reply_code, info.value.reply_text) == (
        406, "PRECONDITION_FAILED - cannot declare queue 'lim3': queue limit in vhost 'vlim' (3) is reached")
    ch = c.channel()
    for i in range(3):
        ch.queue_delete(f"lim{i}")
    c.close()


def test_user_connection_and_channel_limits(secured):
    first = connect(secured, "bob", "bobpw")
    second = connect(secured, "bob", "bobpw")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(secured, "bob", "bobpw")
    assert "NOT_ALLOWED - connection refused for user 'bob': user connection limit (2) is reached" in str(info.value)
    second.close()
    first.channel()
    first.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        first.channel()
    assert (info.value.reply_code, info.value.reply_text) == (
        530, "NOT_ALLOWED - number of channels opened for user 'bob' has reached the maximum allowed user limit of (2)")


def assert_serving(node):
    c = connect(node, "guest", "guest")
    ch = c.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"still here")
    assert ch.basic_get(q, auto_ack=True)[2] == b"still here"
    c.close()


def wait_for_log(node, text, timeout=5):
    if node.log_path is None and not isinstance(node, brokers.ScratchRabbit):
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in node.log_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"no log line with {text!r}")


@pytest.mark.parametrize("user,password,vhost,error,code,text,log", [
    ("guest", "wrong", "/", pika.exceptions.ProbableAuthenticationError, 403, LOGIN_REFUSED, "user 'guest' - invalid credentials"),
    ("mallory", "x", "/", pika.exceptions.ProbableAuthenticationError, 403, LOGIN_REFUSED, "user 'mallory' - invalid credentials"),
    ("guest", "guest", "nope", pika.exceptions.ProbableAccessDeniedError, 530, "NOT_ALLOWED - vhost nope not found", "vhost nope not found"),
])
def test_failed_logins_get_the_reply_code_and_a_log_line(secured, user, password, vhost, error, code, text, log):
    with pytest.raises(error) as info:
        connect(secured, user, password, vhost)
    assert f"({code})" in str(info.value) and text in str(info.value), str(info.value)
    wait_for_log(secured, log)
    assert_serving(secured)


def test_authentication_failure_close_only_when_the_client_asks(secured):
    """A client without the capability just sees the socket close (AMQP 0-9-1 says so)."""
    def handshake(capabilities):
        s = socket.create_connection((secured.host, secured.port), timeout=5)
        s.sendall(b"AMQP\x00\x00\x09\x01")
        read_frame(s)  # connection.start
        table = b""
        if capabilities:
            inner = b"\x1cauthentication_failure_closet\x01"
            table = b"\x0ccapabilitiesF" + struct.pack(">I", len(inner)) + inner
        response = b"\x00guest\x00wrong"
        args = struct.pack(">I", len(table)) + table + b"\x05PLAIN" + struct.pack(">I", len(response)) + response + b"\x05en_US"
        payload = struct.pack(">HH", 10, 11) + args
        s.sendall(struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce")
        try:
            frame = read_frame(s)
        except ConnectionError:
            return None
        finally:
            s.close()
        return frame
    frame = handshake(capabilities=True)
    assert frame is not None and frame[7:11] == struct.pack(">HH", 10, 50)
    assert struct.unpack(">H", frame[11:13])[0] == 403
    assert handshake(capabilities=False) is None
    assert_serving(secured)


def read_frame(s):
    head = recv_exact(s, 7)
    size = struct.unpack(">I", head[3:7])[0]
    return head + recv_exact(s, size + 1)


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@pytest.mark.skipif(brokers.reference_mode(), reason="starts Warren itself")
def test_guest_refused_from_a_non_loopback_address_for_real():
    """In a private network namespace (root only), the client really connects from 10.200.0.1."""
    import json
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode().strip()}")
    out = subprocess.run(["unshare", "--net", sys.executable, os.path.join(here, "netns_guest.py")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "(403)" in result["guest"] and LOGIN_REFUSED in result["guest"]
    assert "PLAIN login refused: user 'guest' can only connect via localhost" in result["log"]
    assert result["remote"] == "ok", "other users log in from anywhere"
    assert result["exit"] == 0
    assert result["guest_when_allowed"] == "ok", "--loopback-users none lifts the rule"
