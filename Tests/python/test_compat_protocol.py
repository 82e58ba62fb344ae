"""What client libraries' own suites rely on, frame by frame, as RabbitMQ 3.10.8 answers (every
expectation was recorded from it; the module passes against it with WARREN_TEST_BROKER). Each
test names the client whose suite found the difference."""
import re
import struct
import time
import uuid

import pika
import pytest

from amqpraw import Raw, body, close_reason, frame, header, longstr, method, read_methods, shortstr


def ready(node, **handshake):
    r = Raw(node.port, host=node.host)
    r.handshake(**handshake)
    return r


def close_args(code=200, text='bye'):
    return struct.pack('>H', code) + shortstr(text) + struct.pack('>HH', 0, 0)


def publish(ch, routing_key, payload=b'abc', mandatory=False, exchange='', delivery_mode=None):
    props = dict(flags=0x1000, props=bytes([delivery_mode])) if delivery_mode else {}
    return (method(ch, 60, 40, struct.pack('>H', 0) + shortstr(exchange) + shortstr(routing_key) + (b'\x01' if mandatory else b'\x00'))
            + header(ch, 60, len(payload), **props) + (body(ch, payload) if payload else b''))


def declare(ch, queue, flags=0):
    """queue.declare: flags bit 0 passive, 1 durable, 2 exclusive, 3 auto-delete."""
    return method(ch, 50, 10, struct.pack('>H', 0) + shortstr(queue) + bytes([flags]) + longstr(b''))


def ack_args(args):
    tag, bits = struct.unpack('>QB', args[:9])
    return tag, bool(bits & 1)


# --- channel.flow: the Go clients' suites (amqp091-go, streadway/amqp) panic on a flow-ok(false).

def test_channel_flow_false_is_not_implemented(warren):
    r = ready(warren)
    r.open_channel(1)
    r.send(method(1, 20, 20, b'\x01'))
    assert [(ch, m, a[0]) for ch, m, a in read_methods(r, 0.5)] == [(1, '20.21', 1)]
    r.send(method(1, 20, 20, b'\x00'))
    got = read_methods(r, 0.5)
    assert [(ch, m) for ch, m, _ in got] == [(0, '10.50')]
    assert close_reason(got[0][2]) == (540, 'NOT_IMPLEMENTED - active=false', 20, 20)


# --- connection.update-secret: pika and aiormq refresh secrets; OAuth users rely on it.

def test_update_secret_is_accepted(warren):
    r = ready(warren)
    r.send(method(0, 10, 70, longstr('guest') + shortstr('token refresh')))
    assert [(ch, m) for ch, m, _ in read_methods(r, 0.5)] == [(0, '10.71')]
    r.open_channel(1)  # the connection carries on


# --- channel_max limits the count of open channels, not their numbers (aiormq).

def test_any_channel_number_opens_and_the_count_is_limited(warren):
    r = ready(warren)
    assert r.open_channel(65535)[1:3] == (20, 11)
    r = ready(warren, channel_max=2)
    assert r.open_channel(100)[1:3] == (20, 11)
    assert r.open_channel(7)[1:3] == (20, 11)
    r.send(method(9, 20, 10, shortstr('')))
    got = read_methods(r, 1.0)
    assert [(ch, m) for ch, m, _ in got] == [(0, '10.50')]
    assert close_reason(got[0][2]) == (
        530, 'NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)', 0, 0)


# --- frame_max: rabbitpy and amqpstorm send body frames of exactly frame_max bytes.

def test_a_body_frame_of_exactly_frame_max_bytes_is_accepted(warren):
    r = ready(warren, frame_max=4096)
    r.open_channel(1)
    r.send(method(1, 60, 40, struct.pack('>H', 0) + shortstr('') + shortstr('nowhere') + b'\x00')
           + header(1, 60, 4096) + frame(3, 1, b'x' * 4096) + method(1, 20, 40, close_args()))
    assert [(ch, m) for ch, m, _ in read_methods(r, 1.0)] == [(1, '20.41')]


def test_a_body_frame_past_frame_max_is_a_frame_error(warren):
    r = ready(warren, frame_max=4096)
    r.open_channel(1)
    r.send(method(1, 60, 40, struct.pack('>H', 0) + shortstr('') + shortstr('nowhere') + b'\x00')
           + header(1, 60, 5000) + frame(3, 1, b'x' * 4097))
    got = read_methods(r, 1.0)
    assert [(ch, m) for ch, m, _ in got] == [(0, '10.50')]
    assert close_reason(got[0][2])[0] == 501


@pytest.mark.parametrize("size", [20 * 1024 * 1024, 32 * 1000 * 1000])
def test_large_messages_round_trip(warren, size):
    """Clients' suites publish 20 MiB, 22 MB and 32 MB bodies: RabbitMQ 3.x takes up to 128 MiB."""
    c = pika.BlockingConnection(pika.ConnectionParameters(warren.host, warren.port))
    ch = c.channel()
    q = ch.queue_declare('', exclusive=True).method.queue
    payload = (b'0123456789abcdef' * (size // 16 + 1))[:size]
    ch.basic_publish('', q, payload)
    m = None
    deadline = time.time() + 30
    while m is None and time.time() < deadline:
        m = ch.basic_get(q, auto_ack=True)[2]
    assert m == payload
    c.close()


# --- close crossing close: the Go clients' Issue43 tests close a channel the server is closing.

def test_client_close_crossing_a_server_close_keeps_the_connection(warren):
    r = ready(warren)
    r.open_channel(1)
    r.send(declare(1, 'no-such-queue-%s' % uuid.uuid4().hex, flags=1) + method(1, 20, 40, close_args()))
    got = read_methods(r, 1.0)
    assert [(ch, m) for ch, m, _ in got] == [(1, '20.40'), (1, '20.41')]
    assert close_reason(got[0][2])[:2] == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % close_reason(got[0][2])[1].split("'")[1])
    r.send(method(1, 20, 41))  # our close-ok for the server's close
    assert read_methods(r, 0.5) == []
    assert r.open_channel(1)[1:3] == (20, 11)
    # A stray close-ok on a channel that is not open is a channel error, in RabbitMQ too.
    r.send(method(2, 20, 41))
    got = read_methods(r, 1.0)
    assert close_reason(got[0][2]) == (504, "CHANNEL_ERROR - expected 'channel.open'", 20, 41)


# --- queue.delete by the consuming channel: kombu's py-amqp transport expects delete-ok first.

@pytest.mark.parametrize("same_channel", [True, False])
def test_delete_ok_comes_before_the_consumer_cancel(warren, same_channel):
    q = 'deleted-under-consumer-%s' % uuid.uuid4().hex[:8]
    r = ready(warren, capabilities=('consumer_cancel_notify',))
    r.open_channel(1)
    r.open_channel(2)
    r.send(declare(1, q))
    r.send(method(1, 60, 20, struct.pack('>H', 0) + shortstr(q) + shortstr('ctag1') + b'\x00' + longstr(b'')))
    assert [m for _, m, _ in read_methods(r, 0.5)] == ['50.11', '60.21']
    deleter = 1 if same_channel else 2
    r.send(method(deleter, 50, 40, struct.pack('>H', 0) + shortstr(q) + b'\x00'))
    got = [(ch, m) for ch, m, _ in read_methods(r, 0.5)]
    if same_channel:
        assert got == [(1, '50.41'), (1, '60.30')]
    else:  # two channels: RabbitMQ's order between them varies
        assert sorted(got) == [(1, '60.30'), (2, '50.41')]


# --- direct reply-to: a responder checks the requester with a passive declare (php-amqp).

def test_direct_reply_to_names_and_passive_declare(warren):
    requester = pika.BlockingConnection(pika.ConnectionParameters(warren.host, warren.port))
    rch = requester.channel()
    rch.basic_consume('amq.rabbitmq.reply-to', lambda *a: None, auto_ack=True)
    responder = pika.BlockingConnection(pika.ConnectionParameters(warren.host, warren.port))
    ch = responder.channel()
    q = ch.queue_declare('', exclusive=True).method.queue
    rch.basic_publish('', q, b'request', pika.BasicProperties(reply_to='amq.rabbitmq.reply-to'))
    m = (None,)
    deadline = time.time() + 5
    while m[0] is None and time.time() < deadline:
        m = ch.basic_get(q, auto_ack=True)
    reply_to = m[1].reply_to
    # RabbitMQ's shape: the prefix, base64 naming the requester, '.', base64 of 16 random bytes.
    assert re.fullmatch(r'amq\.rabbitmq\.reply-to\.[A-Za-z0-9+/]+=*\.[A-Za-z0-9+/]{22}==', reply_to), reply_to
    ok = ch.queue_declare(reply_to, passive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (reply_to, 0, 1)
    assert ch.queue_declare('amq.rabbitmq.reply-to', passive=True).method.queue == 'amq.rabbitmq.reply-to'
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare('amq.rabbitmq.reply-to.bogus', passive=True)
    assert (e.value.reply_code, e.value.reply_text) == (404, "NOT_FOUND - no queue 'amq.rabbitmq.reply-to.bogus' in vhost '/'")
    requester.close()
    ch = responder.channel()
    deadline = time.time() + 5
    while True:  # RabbitMQ forgets the requester asynchronously
        try:
            ch.queue_declare(reply_to, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404
            break
        assert time.time() < deadline, 'the reply-to name outlived its requester'
        time.sleep(0.02)
    responder.close()


# --- publisher confirms: php-amqp waits for RabbitMQ's sequence of returns and acks.

def confirm_channel(node):
    r = ready(node)
    r.open_channel(1)
    r.send(declare(1, 'confirm-target') + method(1, 85, 10, b'\x00'))
    assert [m for _, m, _ in read_methods(r, 0.5)] == ['50.11', '85.11']
    return r


def test_unroutable_mandatory_publish_is_returned_then_acked_alone(warren):
    r = confirm_channel(warren)
    r.send(publish(1, 'nowhere-%s' % uuid.uuid4().hex, mandatory=True))
    got = read_methods(r, 0.5)
    assert [m for _, m, _ in got] == ['60.50', '60.80']
    assert ack_args(got[1][2]) == (1, False)


def test_routed_unroutable_routed_confirm_frames(warren):
    """RabbitMQ: return, ack(2, multiple=false) while 1 may still be pending, then the rest. The
    unroutable message is acked on its own right after its return; every tag is covered."""
    r = confirm_channel(warren)
    r.send(publish(1, 'confirm-target') + publish(1, 'nowhere', mandatory=True) + publish(1, 'confirm-target'))
    got = read_methods(r, 0.5)
    names = [m for _, m, _ in got]
    acks = [ack_args(a) for _, m, a in got if m == '60.80']
    ret = names.index('60.50')
    assert names[ret + 1] == '60.80' and ack_args(got[ret + 1][2]) == (2, False)
    covered = set()
    for tag, multiple in acks:
        covered |= set(range(1, tag + 1)) if multiple else {tag}
    assert covered >= {1, 2, 3}


def test_a_lone_nack_is_multiple_with_requeue_set(warren):
    r = ready(warren)
    r.open_channel(1)
    q = 'full-%s' % uuid.uuid4().hex[:8]
    args = shortstr('x-max-length') + b'I' + struct.pack('>i', 0) + shortstr('x-overflow') + b'S' + longstr('reject-publish')
    r.send(method(1, 50, 10, struct.pack('>H', 0) + shortstr(q) + b'\x08' + longstr(args)) + method(1, 85, 10, b'\x00'))
    assert [m for _, m, _ in read_methods(r, 0.5)] == ['50.11', '85.11']
    r.send(publish(1, q))
    got = read_methods(r, 0.5)
    assert [m for _, m, _ in got] == ['60.120']
    tag, bits = struct.unpack('>QB', got[0][2][:9])
    assert (tag, bool(bits & 1), bool(bits & 2)) == (1, True, True)


def test_a_confirm_is_not_held_on_an_idle_node(warren):
    """amqpstorm once waited 60 s for a confirm, streadway missed one within 200 ms: a transient
    message allocated where a consumed persistent one had been looked persisted to the store,
    and its confirm waited for a sync that nothing started. Each confirm must come at once."""
    r = ready(warren)
    r.open_channel(1)
    dq, tq = 'idle-durable-%s' % uuid.uuid4().hex[:8], 'idle-transient-%s' % uuid.uuid4().hex[:8]
    r.send(declare(1, dq, flags=2) + declare(1, tq) + method(1, 85, 10, b'\x00'))
    assert [m for _, m, _ in read_methods(r, 0.5)] == ['50.11', '50.11', '85.11']
    seq = 0
    for _ in range(5):
        r.send(publish(1, dq, b'p' * 100, delivery_mode=2))
        seq += 1
        assert [m for _, m, _ in read_methods(r, 2.0, limit=1)] == ['60.80']
        r.send(method(1, 60, 70, struct.pack('>H', 0) + shortstr(dq) + b'\x01'))  # basic.get, no-ack
        assert [m for _, m, _ in read_methods(r, 2.0, limit=1)] == ['60.71']
        time.sleep(0.3)  # idle: the store syncs the removal in the background meanwhile
        r.send(publish(1, tq, b'p' * 100, delivery_mode=1))
        seq += 1
        got = read_methods(r, 2.0, limit=1)
        assert [m for _, m, _ in got] == ['60.80'], 'no confirm within 2 s'
        assert ack_args(got[0][2])[0] == seq
        r.send(method(1, 60, 70, struct.pack('>H', 0) + shortstr(tq) + b'\x01'))
        assert [m for _, m, _ in read_methods(r, 2.0, limit=1)] == ['60.71']
