"""Message lifecycle and RabbitMQ's routing and consuming extensions, through pika: TTL, expiry,
dead-lettering with the exact x-death RabbitMQ writes, length limits, priorities, single active
consumer, consumer priorities, direct reply-to, alternate exchanges, CC/BCC. Every expectation
holds against RabbitMQ 3.10.8 too (WARREN_TEST_BROKER=host:port)."""
import datetime
import time

import pika
import pytest

from brokers import get


def connect(node):
    return pika.BlockingConnection(pika.ConnectionParameters(node.host, node.port, heartbeat=0))


@pytest.fixture
def ch(warren):
    c = connect(warren)
    channel = c.channel()
    yield channel
    if c.is_open:
        c.close()


def fresh_queue(ch, name, **arguments):
    ch.queue_delete(name)
    ch.queue_declare(name, arguments=arguments or None)
    return name


def dead_letter_target(ch, exchange="lc.dlx", queue="lc.dead"):
    """A fanout DLX with one queue behind it, both emptied."""
    ch.exchange_declare(exchange, "fanout")
    fresh_queue(ch, queue)
    ch.queue_bind(queue, exchange)
    return exchange, queue



def pump(*connections, seconds=0.3):
    """Dispatches deliveries on each connection for `seconds` (pika's process_data_events
    returns at the first batch)."""
    for c in connections:
        deadline = time.time() + seconds
        while time.time() < deadline:
            c.process_data_events(time_limit=max(0.01, deadline - time.time()))


def count(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def plain(value):
    """Header values as comparable Python values (pika gives bytes for some strings)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode()
    return value


def x_death(props):
    """The x-death entries with their time checked and taken out."""
    entries = plain(props.headers["x-death"])
    for e in entries:
        t = e.pop("time")
        assert isinstance(t, datetime.datetime)
        assert abs(t.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()) < 120
    return entries


# --- TTL -------------------------------------------------------------------------------------

def test_queue_ttl_expired_messages_are_never_delivered(ch):
    q = fresh_queue(ch, "lc.ttl", **{"x-message-ttl": 100})
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    time.sleep(0.3)
    assert ch.basic_get(q, auto_ack=True)[0] is None
    assert count(ch, q) == 0


def test_ttl_zero_delivers_only_to_a_waiting_consumer(warren, ch):
    q = fresh_queue(ch, "lc.ttl0", **{"x-message-ttl": 0})
    ch.basic_publish("", q, b"nobody waiting")
    time.sleep(0.1)
    assert ch.basic_get(q, auto_ack=True)[0] is None
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", q, b"consumer waiting")
    pump(ch.connection)
    assert got == [b"consumer waiting"]


def test_per_message_expiration_and_the_lower_of_two_ttls(ch):
    q = fresh_queue(ch, "lc.exp", **{"x-message-ttl": 60000})
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="50"))
    ch.basic_publish("", q, b"zero", pika.BasicProperties(expiration="0"))
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", q, b"queue ttl only")
    time.sleep(0.2)
    m = ch.basic_get(q, auto_ack=True)
    assert m[2] == b"long" and m[1].expiration == "60000", "the property travels with the message"
    assert ch.basic_get(q, auto_ack=True)[2] == b"queue ttl only"
    assert ch.basic_get(q, auto_ack=True)[0] is None


def test_expiration_must_be_a_non_negative_integer(warren):
    c = connect(warren)
    ch = c.channel()
    ch.basic_publish("", "nowhere", b"x", pika.BasicProperties(expiration="abc"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("", exclusive=True)
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - invalid expiration 'abc': no_integer")
    c.close()


def test_a_requeued_message_keeps_its_original_expiry(ch):
    dlx, dead = dead_letter_target(ch)
    q = fresh_queue(ch, "lc.ttlrq", **{"x-message-ttl": 150, "x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"requeued late")
    m = ch.basic_get(q)
    assert m[2] == b"requeued late"
    time.sleep(0.3)
    ch.basic_nack(m[0].delivery_tag, requeue=True)
    late = get(ch, dead)
    assert late[2] == b"requeued late"
    assert [e["reason"] for e in x_death(late[1])] == ["expired"]
    assert ch.basic_get(q, auto_ack=True)[0] is None


def test_queue_expires_when_unused(ch):
    ch.queue_delete("lc.xexp")
    ch.queue_declare("lc.xexp", arguments={"x-expires": 200})
    time.sleep(0.6)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("lc.xexp", passive=True)
    assert info.value.reply_code == 404


def test_a_consumer_keeps_a_queue_from_expiring(warren, ch):
    ch.queue_delete("lc.xexp2")
    ch.queue_declare("lc.xexp2", arguments={"x-expires": 200})
    ch.basic_consume("lc.xexp2", lambda *a: None)
    pump(ch.connection, seconds=0.5)
    other = connect(warren)
    assert other.channel().queue_declare("lc.xexp2", passive=True).method.consumer_count == 1
    other.close()


# --- Dead-lettering --------------------------------------------------------------------------

def test_dead_letter_on_reject_with_the_exact_x_death(ch):
    dlx, dead = dead_letter_target(ch)
    q = fresh_queue(ch, "lc.src1", **{"x-dead-letter-exchange": dlx})
    ch.queue_bind(q, "amq.direct", "k1")
    props = pika.BasicProperties(headers={"h": 1}, expiration="60000", delivery_mode=2, correlation_id="c1")
    ch.basic_publish("amq.direct", "k1", b"rejected", props)
    m = ch.basic_get(q)
    ch.basic_reject(m[0].delivery_tag, requeue=False)
    m, p, body = get(ch, dead)
    assert body == b"rejected"
    assert (m.exchange, m.routing_key) == (dlx, "k1")
    assert p.expiration is None, "the per-message TTL is removed (kept as original-expiration)"
    assert (p.delivery_mode, p.correlation_id) == (2, "c1")
    assert x_death(p) == [{"count": 1, "reason": "rejected", "queue": q, "exchange": "amq.direct",
                           "routing-keys": ["k1"], "original-expiration": "60000"}]
    assert plain({k: v for k, v in p.headers.items() if k != "x-death"}) == {
        "h": 1, "x-first-death-exchange": "amq.direct", "x-first-death-queue": q, "x-first-death-reason": "rejected"}


def test_dead_letter_on_expiry_with_a_dead_letter_routing_key(ch):
    ch.exchange_declare("lc.dlx.direct", "direct")
    fresh_queue(ch, "lc.dead.newkey")
    ch.queue_bind("lc.dead.newkey", "lc.dlx.direct", "newkey")
    q = fresh_queue(ch, "lc.src2", **{"x-dead-letter-exchange": "lc.dlx.direct", "x-dead-letter-routing-key": "newkey", "x-message-ttl": 50})
    ch.basic_publish("", q, b"expired")
    m, p, body = get(ch, "lc.dead.newkey")
    assert (body, m.exchange, m.routing_key) == (b"expired", "lc.dlx.direct", "newkey")
    assert x_death(p) == [{"count": 1, "reason": "expired", "queue": q, "exchange": "", "routing-keys": [q]}]
    assert plain(p.headers)["x-first-death-reason"] == "expired"


def test_dead_letter_keeps_cc_in_routing_keys(ch):
    dlx, dead = dead_letter_target(ch)
    q = fresh_queue(ch, "lc.src.cc", **{"x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"cc", pika.BasicProperties(headers={"CC": ["lc.elsewhere"]}))
    m = ch.basic_get(q)
    ch.basic_reject(m[0].delivery_tag, requeue=False)
    _, p, _ = get(ch, dead)
    assert x_death(p)[0]["routing-keys"] == [q, "lc.elsewhere"]


def test_max_length_drop_head_dead_letters_the_oldest(ch):
    dlx, dead = dead_letter_target(ch)
    q = fresh_queue(ch, "lc.src4", **{"x-dead-letter-exchange": dlx, "x-max-length": 1})
    ch.basic_publish("", q, b"first")
    ch.basic_publish("", q, b"second")
    m, p, body = get(ch, dead)
    assert body == b"first"
    assert x_death(p) == [{"count": 1, "reason": "maxlen", "queue": q, "exchange": "", "routing-keys": [q]}]
    assert ch.basic_get(q, auto_ack=True)[2] == b"second"


def test_max_length_bytes_counts_bodies(ch):
    q = fresh_queue(ch, "lc.bytes", **{"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc"):
        ch.basic_publish("", q, body)
    time.sleep(0.05)
    assert [ch.basic_get(q, auto_ack=True)[2] for _ in range(2)] == [b"bbbb", b"cccc"]


def test_x_death_count_grows_for_the_same_queue_and_reason(ch):
    dlx, dead = dead_letter_target(ch)
    q = fresh_queue(ch, "lc.src5", **{"x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"twice")
    m = ch.basic_get(q)
    ch.basic_reject(m[0].delivery_tag, requeue=False)
    m = get(ch, dead)
    ch.basic_publish("", q, m[2], m[1])  # republished with its x-death
    m = ch.basic_get(q)
    ch.basic_reject(m[0].delivery_tag, requeue=False)
    _, p, _ = get(ch, dead)
    assert x_death(p) == [{"count": 2, "reason": "rejected", "queue": q, "exchange": "", "routing-keys": [q]}]


def test_a_dead_letter_cycle_without_rejection_is_dropped(ch):
    q = fresh_queue(ch, "lc.cycle", **{"x-dead-letter-exchange": "", "x-message-ttl": 30})
    ch.basic_publish("", q, b"cycle")
    time.sleep(0.4)
    assert count(ch, q) == 0


def test_a_cycle_through_a_rejection_goes_on(ch):
    q = fresh_queue(ch, "lc.cycle2", **{"x-dead-letter-exchange": ""})
    ch.basic_publish("", q, b"again")
    m = ch.basic_get(q)
    ch.basic_reject(m[0].delivery_tag, requeue=False)
    m, p, body = get(ch, q)
    assert body == b"again"
    assert x_death(p)[0]["reason"] == "rejected"


def test_reject_publish_nacks_under_confirms(warren, ch):
    q = fresh_queue(ch, "lc.rp", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    confirm = ch.connection.channel()
    confirm.confirm_delivery()
    confirm.basic_publish("", q, b"1")
    with pytest.raises(pika.exceptions.NackError):
        confirm.basic_publish("", q, b"2")
    assert count(ch, q) == 1
    assert ch.basic_get(q, auto_ack=True)[2] == b"1"
    confirm.basic_publish("", q, b"3")  # room again: acked


def test_reject_publish_dlx_nacks_and_dead_letters(ch):
    dlx, dead = dead_letter_target(ch)
    q = fresh_queue(ch, "lc.rpd", **{"x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx})
    confirm = ch.connection.channel()
    confirm.confirm_delivery()
    confirm.basic_publish("", q, b"1")
    with pytest.raises(pika.exceptions.NackError):
        confirm.basic_publish("", q, b"2-rejected")
    m, p, body = get(ch, dead)
    assert body == b"2-rejected"
    assert x_death(p)[0]["reason"] == "maxlen"


# --- Priorities ------------------------------------------------------------------------------

def test_priority_order_for_basic_get(ch):
    q = fresh_queue(ch, "lc.prio", **{"x-max-priority": 5})
    for p in [1, 5, 3, 9, 0, None]:
        ch.basic_publish("", q, b"p%s" % str(p).encode(), pika.BasicProperties(priority=p))
    # 9 is above the maximum and counts as 5; equal priorities keep publish order; none is 0.
    assert [ch.basic_get(q, auto_ack=True)[2] for _ in range(6)] == [b"p5", b"p9", b"p3", b"p1", b"p0", b"pNone"]


def test_priority_order_under_prefetch_greater_than_one(warren, ch):
    q = fresh_queue(ch, "lc.prio2", **{"x-max-priority": 10})
    for i, p in enumerate([0, 2, 8, 1, 9, 5, 5, 3]):
        ch.basic_publish("", q, b"%d-%d" % (p, i), pika.BasicProperties(priority=p))
    c = connect(warren)
    consumer = c.channel()
    consumer.basic_qos(prefetch_count=3)
    got = []

    def on_message(channel, method, props, body):
        got.append(props.priority)
        channel.basic_ack(method.delivery_tag)
    consumer.basic_consume(q, on_message)
    deadline = time.time() + 3
    while len(got) < 8 and time.time() < deadline:
        c.process_data_events(time_limit=0.1)
    assert got == [9, 8, 5, 5, 3, 2, 1, 0]
    c.close()


def test_higher_priority_published_later_overtakes_under_prefetch(warren, ch):
    q = fresh_queue(ch, "lc.prio3", **{"x-max-priority": 10})
    c = connect(warren)
    consumer = c.channel()
    consumer.basic_qos(prefetch_count=2)
    got = []
    pending = []
    consumer.basic_consume(q, lambda channel, m, p, b: (got.append(b), pending.append(m.delivery_tag)))
    for i in range(4):
        ch.basic_publish("", q, b"low%d" % i, pika.BasicProperties(priority=1))
    pump(c, seconds=0.2)
    ch.basic_publish("", q, b"high", pika.BasicProperties(priority=9))
    time.sleep(0.05)
    while len(got) < 5:
        consumer.basic_ack(pending.pop(0))
        pump(c, seconds=0.1)
    assert got[:2] == [b"low0", b"low1"] and got[2] == b"high"
    c.close()


# --- Consumers -------------------------------------------------------------------------------

def consume(node, queue, arguments=None, prefetch=0, auto_ack=True):
    c = connect(node)
    channel = c.channel()
    if prefetch:
        channel.basic_qos(prefetch_count=prefetch)
    got = []
    tag = channel.basic_consume(queue, lambda ch_, m, p, b: got.append(b), auto_ack=auto_ack, arguments=arguments)
    return c, channel, tag, got


def test_single_active_consumer_fails_over_on_cancel_and_on_connection_death(warren, ch):
    q = fresh_queue(ch, "lc.sac", **{"x-single-active-consumer": True})
    a, ach, atag, agot = consume(warren, q)
    b, bch, btag, bgot = consume(warren, q)
    c, cch, ctag, cgot = consume(warren, q)
    for i in range(4):
        ch.basic_publish("", q, b"%d" % i)
    pump(a, b, c)
    assert (agot, bgot, cgot) == ([b"0", b"1", b"2", b"3"], [], [])
    assert count(ch, q) == 0 and ch.queue_declare(q, passive=True).method.consumer_count == 3
    ach.basic_cancel(atag)  # the active one cancels: the next in line takes over
    ch.basic_publish("", q, b"4")
    pump(a, b, c)
    assert (bgot, cgot) == ([b"4"], [])
    b._impl._transport._sock.close()  # the active one's connection dies
    time.sleep(0.2)
    ch.basic_publish("", q, b"5")
    pump(c)
    assert cgot == [b"5"]
    a.close()
    c.close()


def test_single_active_consumer_hands_unacked_messages_back(warren, ch):
    q = fresh_queue(ch, "lc.sac2", **{"x-single-active-consumer": True})
    a, ach, atag, agot = consume(warren, q, prefetch=10, auto_ack=False)
    b, bch, btag, bgot = consume(warren, q, prefetch=10, auto_ack=False)
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    pump(a, b)
    assert (agot, bgot) == ([b"0", b"1", b"2"], [])
    a.close()
    pump(b)
    assert bgot == [b"0", b"1", b"2"]
    b.close()


def test_consumer_priorities(warren, ch):
    q = fresh_queue(ch, "lc.cprio")
    hi, hich, _, higot = consume(warren, q, arguments={"x-priority": 10}, prefetch=2, auto_ack=False)
    lo, loch, _, logot = consume(warren, q)
    for i in range(6):
        ch.basic_publish("", q, b"%d" % i)
    pump(hi, lo)
    # The high-priority consumer takes what its prefetch allows; the rest overflows to the low one.
    assert higot == [b"0", b"1"] and logot == [b"2", b"3", b"4", b"5"]
    hi.close()
    lo.close()


def test_cancel_notification_when_the_queue_is_deleted(warren, ch):
    q = fresh_queue(ch, "lc.cancelled")
    c = connect(warren)
    consumer = c.channel()
    cancelled = []
    consumer.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = consumer.basic_consume(q, lambda *a: None)
    ch.queue_delete(q)
    pump(c)
    assert cancelled == [tag]
    c.close()


# --- Direct reply-to -------------------------------------------------------------------------

def test_direct_reply_to_round_trip(warren, ch):
    server_conn = connect(warren)
    server = server_conn.channel()
    fresh_queue(server, "lc.rpc")
    replies = []
    ch.basic_consume("amq.rabbitmq.reply-to",
                     lambda c, m, p, b: replies.append((b, m.exchange, m.routing_key, p.correlation_id)), auto_ack=True)
    ch.basic_publish("", "lc.rpc", b"request", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c1"))
    m, p, body = get(server, "lc.rpc")
    assert body == b"request" and p.reply_to.startswith("amq.rabbitmq.reply-to.") and len(p.reply_to) > 30
    server.basic_publish("", p.reply_to, b"response", pika.BasicProperties(correlation_id=p.correlation_id))
    deadline = time.time() + 2
    while not replies and time.time() < deadline:
        ch.connection.process_data_events(time_limit=0.05)
    assert replies == [(b"response", "", p.reply_to, "c1")]
    server_conn.close()


def test_direct_reply_to_rules(warren):
    c = connect(warren)
    ch = c.channel()
    ch.basic_publish("", "lc.anything", b"x", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("", exclusive=True)
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - fast reply consumer does not exist")
    ch = c.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False)
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
    ch = c.channel()
    ch.basic_publish("", "amq.rabbitmq.reply-to.bogus", b"x")  # a reply nobody waits for is dropped
    ch.queue_declare("", exclusive=True)
    c.close()


# --- Routing ---------------------------------------------------------------------------------

def test_alternate_exchange_takes_the_unroutable(ch):
    ch.exchange_delete("lc.withae")
    ch.exchange_declare("lc.ae", "fanout")
    q = fresh_queue(ch, "lc.aeq")
    ch.queue_bind(q, "lc.ae")
    ch.exchange_declare("lc.withae", "direct", arguments={"alternate-exchange": "lc.ae"})
    ch.confirm_delivery()
    ch.basic_publish("lc.withae", "nomatch", b"to-ae", mandatory=True)  # routed via the AE: no return
    m = get(ch, q)
    assert (m[2], m[0].exchange, m[0].routing_key) == (b"to-ae", "lc.withae", "nomatch")


def test_exchange_to_exchange_bindings(ch):
    ch.exchange_declare("lc.e2e.src", "topic")
    ch.exchange_declare("lc.e2e.dst", "fanout")
    ch.exchange_bind("lc.e2e.dst", "lc.e2e.src", "audit.#")
    q = fresh_queue(ch, "lc.e2e.q")
    ch.queue_bind(q, "lc.e2e.dst")
    ch.basic_publish("lc.e2e.src", "audit.login", b"yes")
    ch.basic_publish("lc.e2e.src", "other", b"no")
    assert get(ch, q)[2] == b"yes"
    assert ch.basic_get(q, auto_ack=True)[0] is None
    ch.exchange_unbind("lc.e2e.dst", "lc.e2e.src", "audit.#")
    ch.basic_publish("lc.e2e.src", "audit.login", b"after unbind")
    time.sleep(0.05)
    assert ch.basic_get(q, auto_ack=True)[0] is None


def test_cc_and_bcc_sender_selected_distribution(ch):
    for q in ("lc.ccA", "lc.ccB", "lc.ccC"):
        fresh_queue(ch, q)
    ch.basic_publish("", "lc.ccA", b"cc", pika.BasicProperties(headers={"CC": ["lc.ccB"], "BCC": ["lc.ccC"], "keep": 1}))
    seen = {}
    for q in ("lc.ccA", "lc.ccB", "lc.ccC"):
        m, p, body = get(ch, q)
        seen[q] = (body, m.routing_key, plain(p.headers))
    assert seen["lc.ccA"] == (b"cc", "lc.ccA", {"CC": ["lc.ccB"], "keep": 1})
    assert seen["lc.ccB"] == (b"cc", "lc.ccA", {"CC": ["lc.ccB"], "keep": 1})
    assert seen["lc.ccC"] == (b"cc", "lc.ccA", {"CC": ["lc.ccB"], "keep": 1}), "BCC is stripped"


def test_lazy_mode_is_accepted(ch):
    q = fresh_queue(ch, "lc.lazy", **{"x-queue-mode": "lazy"})
    ch.basic_publish("", q, b"lazy")
    assert get(ch, q)[2] == b"lazy"
