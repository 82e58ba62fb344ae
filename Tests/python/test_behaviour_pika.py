"""Foundation behaviours through pika that the tutorials do not exercise."""
import time

import pika
import pytest

from amqpraw import Raw, method, shortstr
from conftest import against_warren


def connect(node, **kw):
    return pika.BlockingConnection(pika.ConnectionParameters(node.host, node.port, **kw))


def test_publisher_confirms_and_mandatory_returns(warren):
    c = connect(warren)
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare('confirmed')
    for i in range(100):
        ch.basic_publish('', 'confirmed', b'%d' % i)  # raises unless acked
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        ch.basic_publish('', 'no-such-queue', b'bounce', mandatory=True)
    returned = info.value.messages[0]
    assert (returned.method.reply_code, returned.method.reply_text, returned.body) == (312, 'NO_ROUTE', b'bounce')
    assert ch.queue_declare('confirmed', passive=True).method.message_count == 100
    ch.queue_delete('confirmed')
    c.close()


def test_get_nack_requeue_keeps_order_and_marks_redelivered(warren):
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare('order')
    for i in range(4):
        ch.basic_publish('', 'order', b'%d' % i)
    tags = [ch.basic_get('order')[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[1], multiple=True, requeue=True)   # 0 and 1 back
    ch.basic_reject(tags[2], requeue=False)               # 2 gone
    got = []
    while True:
        m = ch.basic_get('order', auto_ack=True)
        if m[0] is None:
            break
        got.append((m[2], m[0].redelivered))
    assert got == [(b'0', True), (b'1', True), (b'3', False)]
    c.close()


def test_unacked_messages_requeued_when_the_connection_dies(warren):
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare('dies')
    for i in range(3):
        ch.basic_publish('', 'dies', b'%d' % i)
    dead = Raw(warren.port)
    dead.handshake()
    dead.open_channel(1)
    dead.send(method(1, 60, 70, b'\x00\x00' + shortstr('dies') + b'\x00'))  # basic.get, manual ack
    dead.read_method()
    dead.s.close()  # no AMQP close, as when a client dies
    time.sleep(0.3)
    got = [ch.basic_get('dies', auto_ack=True) for _ in range(3)]
    assert [(m[2], m[0].redelivered) for m in got] == [(b'0', True), (b'1', False), (b'2', False)]
    c.close()


def test_transactions(warren):
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare('txq')
    ch.tx_select()
    ch.basic_publish('', 'txq', b'a')
    assert ch.queue_declare('txq', passive=True).method.message_count == 0
    ch.tx_commit()
    assert ch.queue_declare('txq', passive=True).method.message_count == 1
    ch.basic_publish('', 'txq', b'b')
    ch.tx_rollback()
    assert ch.queue_declare('txq', passive=True).method.message_count == 1
    c.close()


def test_global_qos_is_shared_by_the_channel(warren):
    c = connect(warren)
    ch = c.channel()
    for q in ('g1', 'g2'):
        ch.queue_declare(q)
        for i in range(5):
            ch.basic_publish('', q, b'x')
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = []
    ch.basic_consume('g1', lambda ch_, m, p, b: got.append(m.delivery_tag))
    ch.basic_consume('g2', lambda ch_, m, p, b: got.append(m.delivery_tag))
    c.process_data_events(time_limit=0.5)
    assert len(got) == 3
    c.close()


def test_consumer_told_when_its_queue_is_deleted(warren):
    c = connect(warren)
    ch = c.channel()
    ch.queue_declare('doomed')
    cancelled = []
    ch.basic_consume('doomed', lambda *a: None)
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    other = connect(warren)
    other.channel().queue_delete('doomed')
    other.close()
    c.process_data_events(time_limit=0.5)
    assert len(cancelled) == 1
    c.close()


def test_exclusive_queue_goes_with_its_connection(warren):
    c = connect(warren)
    q = c.channel().queue_declare('', exclusive=True).method.queue
    assert q.startswith('amq.gen-')
    c.close()
    other = connect(warren)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        other.channel().queue_declare(q, passive=True)
    assert info.value.reply_code == 404
    other.close()


def test_heartbeats_keep_a_quiet_connection_alive(warren):
    """A client that negotiates 1 s heartbeats and answers them stays connected."""
    if not against_warren():
        pytest.skip("timing only checked against Warren")
    c = connect(warren, heartbeat=1)
    ch = c.channel()
    ch.queue_declare('hb')
    c.sleep(3.5)  # pika answers heartbeats while sleeping
    ch.basic_publish('', 'hb', b'alive')
    assert ch.basic_get('hb', auto_ack=True)[2] == b'alive'
    c.close()


def test_a_peer_that_misses_heartbeats_is_disconnected(warren):
    """Negotiate 1 s heartbeats, then send nothing: dropped after two missed intervals."""
    r = Raw(warren.port, timeout=10)
    r.handshake(heartbeat=1)
    start = time.time()
    saw_heartbeat = False
    try:
        while True:
            t, _, _ = r.read_frame()
            saw_heartbeat = saw_heartbeat or t == 8
    except (EOFError, ConnectionResetError):
        pass
    elapsed = time.time() - start
    assert saw_heartbeat, "the server sends heartbeats"
    assert 2.0 <= elapsed <= 4.5, f"disconnected after {elapsed:.1f}s"


def test_a_large_message_is_split_and_reassembled(warren):
    c = connect(warren, frame_max=4096)
    ch = c.channel()
    ch.queue_declare('large')
    body = bytes(range(256)) * 4000  # ~1 MB, some 250 frames
    ch.basic_publish('', 'large', body)
    assert ch.basic_get('large', auto_ack=True)[2] == body
    c.close()


def test_many_channels_on_one_connection(warren):
    c = connect(warren)
    chans = [c.channel() for _ in range(100)]
    for i, ch in enumerate(chans):
        ch.queue_declare(f'mc{i}', auto_delete=True)
        ch.basic_publish('', f'mc{i}', b'%d' % i)
    for i, ch in enumerate(chans):
        assert ch.basic_get(f'mc{i}', auto_ack=True)[2] == b'%d' % i
    c.close()
