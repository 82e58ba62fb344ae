"""Clients on any node: a queue lives on one node (its home) and clients of every node publish
to it, consume from it, get, ack, nack, reject, purge and delete it, with confirms, returns,
transactions, prefetch, single active consumer, TTL and dead-lettering meaning what they mean
on one node. Publishers on node 2, queues on node 1, consumers on node 3, with pika, on a
cluster started by `warren-cluster`."""
import threading
import time

import pika
import pytest

from cluster import Cluster, drain, eventually

Q = "%2F"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3, name="test_cluster_queues", extra=("--queue-link-timeout", "3"))
    yield c
    c.down()


def declare_on(cluster, i, name, **kw):
    """Declares a queue from node i's client (its home is node i) and waits until every node
    knows it."""
    conn = cluster.connect(i)
    conn.channel().queue_declare(name, **kw)
    conn.close()
    for j in range(1, len(cluster.nodes) + 1):
        eventually(lambda: cluster.api(j).call("GET", f"/api/queues/{Q}/{name}")[0] == 200, timeout=10, what=f"{name} on node {j}")


def test_publish_on_2_to_a_queue_on_1_consume_on_3_in_order_none_lost_none_doubled(cluster):
    declare_on(cluster, 1, "xq.main", durable=True)
    pub = cluster.connect(2)
    pch = pub.channel()
    pch.confirm_delivery()
    n = 3000
    for i in range(n):
        pch.basic_publish("", "xq.main", str(i).encode(), properties=pika.BasicProperties(delivery_mode=2 if i % 2 else 1))
    # Every publish confirmed (pika raises on a nack); the home node counts them all.
    s, b, _ = cluster.api(1).call("GET", f"/api/queues/{Q}/xq.main")
    assert b["node"] == cluster.node_name(1)
    # Passive declare on node 3 gives the home node's counts.
    con = cluster.connect(3)
    cch = con.channel()
    assert cch.queue_declare("xq.main", passive=True).method.message_count == n
    cch.basic_qos(prefetch_count=50)
    got = drain(cch, "xq.main", n)
    assert got == [str(i).encode() for i in range(n)]
    assert eventually(lambda: cch.queue_declare("xq.main", passive=True).method.message_count == 0 or None, timeout=5)
    pub.close()
    con.close()


def test_get_ack_nack_reject_recover_purge_and_delete_from_another_node(cluster):
    declare_on(cluster, 1, "xq.dead", durable=True)
    declare_on(cluster, 1, "xq.ops", durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "xq.dead"})
    pub = cluster.connect(2).channel()
    pub.confirm_delivery()
    for body in (b"a", b"b", b"c", b"d"):
        pub.basic_publish("", "xq.ops", body)
    c3 = cluster.connect(3)
    ch = c3.channel()
    m, _, body = ch.basic_get("xq.ops")
    assert body == b"a" and not m.redelivered and m.message_count == 3
    ch.basic_nack(m.delivery_tag, requeue=True)
    m, _, body = ch.basic_get("xq.ops")
    assert body == b"a" and m.redelivered, "a nacked message comes back first, marked redelivered"
    ch.basic_ack(m.delivery_tag)
    m, _, body = ch.basic_get("xq.ops")
    assert body == b"b"
    ch.basic_reject(m.delivery_tag, requeue=False)
    # Rejected: dead-lettered (routed on node 1) into xq.dead.
    dead = eventually(lambda: ch.basic_get("xq.dead", auto_ack=True)[2], timeout=5)
    assert dead == b"b"
    m, _, body = ch.basic_get("xq.ops")
    assert body == b"c"
    ch.basic_recover(requeue=True)
    assert eventually(lambda: ch.queue_declare("xq.ops", passive=True).method.message_count == 2 or None, timeout=5)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_delete("xq.ops", if_empty=True)
    assert e.value.reply_code == 406 and "not empty" in e.value.reply_text
    ch = c3.channel()
    assert ch.queue_purge("xq.ops").method.message_count == 2
    assert ch.basic_get("xq.ops")[0] is None
    ch.queue_delete("xq.ops")
    for i in (1, 2, 3):
        eventually(lambda: cluster.api(i).call("GET", f"/api/queues/{Q}/xq.ops")[0] == 404, timeout=10)
    c3.close()


def test_transactions_and_returns_across_nodes(cluster):
    declare_on(cluster, 1, "xq.tx", durable=True)
    conn = cluster.connect(2)
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda _ch, method, props, body: returned.append((method.reply_code, body)))
    ch.tx_select()
    ch.basic_publish("", "xq.tx", b"rolled back", properties=pika.BasicProperties(delivery_mode=2))
    ch.tx_rollback()
    for i in range(5):
        ch.basic_publish("", "xq.tx", str(i).encode(), properties=pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", "no-such-queue", b"back", mandatory=True)
    ch.tx_commit()
    conn.process_data_events(time_limit=0.2)
    assert returned == [(312, b"back")]
    # Committed: on the home node once commit-ok came.
    s, b, _ = cluster.api(1).call("GET", f"/api/queues/{Q}/xq.tx")
    assert b["messages"] == 5, b
    c3 = cluster.connect(3).channel()
    c3.tx_select()
    m, _, _ = c3.basic_get("xq.tx")
    c3.basic_ack(m.delivery_tag)
    c3.tx_rollback()
    assert c3.queue_declare("xq.tx", passive=True).method.message_count == 4
    c3.basic_ack(m.delivery_tag)
    c3.tx_commit()
    assert eventually(lambda: cluster.api(1).call("GET", f"/api/queues/{Q}/xq.tx")[1]["messages"] == 4 or None, timeout=8)
    conn.close()


def test_prefetch_single_active_consumer_and_priorities_across_nodes(cluster):
    declare_on(cluster, 1, "xq.sac", durable=True, arguments={"x-single-active-consumer": True})
    c2 = cluster.connect(2)
    c3 = cluster.connect(3)
    a = c2.channel()
    b = c3.channel()
    a.basic_qos(prefetch_count=2)
    b.basic_qos(prefetch_count=2)
    got_a, got_b = [], []
    a.basic_consume("xq.sac", lambda ch, m, p, body: got_a.append((m.delivery_tag, body)))
    b.basic_consume("xq.sac", lambda ch, m, p, body: got_b.append((m.delivery_tag, body)))
    pub = cluster.connect(1).channel()
    for i in range(6):
        pub.basic_publish("", "xq.sac", str(i).encode())
    # Only the first consumer (on node 2) is active, and prefetch 2 holds the rest back.
    deadline = time.time() + 5
    while len(got_a) < 2 and time.time() < deadline:
        c2.process_data_events(time_limit=0.05)
    c2.process_data_events(time_limit=0.3)
    c3.process_data_events(time_limit=0.3)
    assert [x[1] for x in got_a] == [b"0", b"1"] and got_b == []
    for tag, _ in got_a:
        a.basic_ack(tag)
    deadline = time.time() + 5
    while len(got_a) < 4 and time.time() < deadline:
        c2.process_data_events(time_limit=0.05)
    assert [x[1] for x in got_a] == [b"0", b"1", b"2", b"3"]
    # The active consumer goes (its channel closes with two unacked): the next one takes over
    # and gets the rest, and the two again, redelivered.
    a.close()
    acked = set()
    deadline = time.time() + 5
    while len(got_b) < 4 and time.time() < deadline:
        c3.process_data_events(time_limit=0.05)
        for tag, _ in got_b:
            if tag not in acked:
                b.basic_ack(tag)
                acked.add(tag)
    assert sorted(x[1] for x in got_b) == [b"2", b"3", b"4", b"5"], got_b
    c2.close()
    c3.close()


def test_ttl_expiry_dead_letters_to_a_queue_on_a_third_node(cluster):
    declare_on(cluster, 3, "xq.expired", durable=True)
    declare_on(cluster, 1, "xq.ttl", durable=True, arguments={"x-message-ttl": 200, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "xq.expired"})
    ch = cluster.connect(2).channel()
    ch.confirm_delivery()
    ch.basic_publish("", "xq.ttl", b"late")
    got = eventually(lambda: (lambda r: r if r[0] else None)(ch.basic_get("xq.expired", auto_ack=True)), timeout=10)
    assert got[2] == b"late" and got[1].headers["x-death"][0]["reason"] == "expired"


def test_when_the_home_node_dies_consumers_are_cancelled_and_its_queue_is_404_until_it_returns(cluster):
    declare_on(cluster, 1, "xq.down", durable=True)
    pub_conn = cluster.connect(2)
    pub = pub_conn.channel()
    pub.confirm_delivery()
    for i in range(100):
        pub.basic_publish("", "xq.down", str(i).encode(), properties=pika.BasicProperties(delivery_mode=2))
    con = cluster.connect(3)
    ch = con.channel()
    ch.basic_qos(prefetch_count=10)
    cancelled = []
    delivered = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume("xq.down", lambda c, m, p, body: delivered.append(body))
    deadline = time.time() + 5
    while len(delivered) < 10 and time.time() < deadline:
        con.process_data_events(time_limit=0.05)
    assert len(delivered) == 10
    cluster.run("kill", "1")
    deadline = time.time() + 20
    while not cancelled and time.time() < deadline:
        con.process_data_events(time_limit=0.1)
    assert cancelled == [tag], "the consumer hears basic.cancel when the queue's node goes"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        con.channel().basic_get("xq.down")
    assert e.value.reply_code == 404
    assert e.value.reply_text == f"NOT_FOUND - home node '{cluster.node_name(1)}' of durable queue 'xq.down' in vhost '/' is down or inaccessible"
    # A publish routed only to it is returned (mandatory) and nacked, never confirmed.
    with pytest.raises((pika.exceptions.UnroutableError, pika.exceptions.NackError)):
        pub.basic_publish("", "xq.down", b"nowhere", properties=pika.BasicProperties(delivery_mode=2), mandatory=True)
    cluster.run("start", "1")
    cluster.run("wait-healthy")
    # Back: every persistent message is there (the ten delivered and never acked included).
    # (Until the queue link to the restarted node is up, a passive declare answers 404 and
    # closes its channel: each attempt on a fresh one.)
    c3 = cluster.connect(3)
    n = eventually(lambda: c3.channel().queue_declare("xq.down", passive=True).method.message_count, timeout=30)
    assert n == 100
    got = drain(c3.channel(), "xq.down", 100)
    assert sorted(int(x) for x in got) == list(range(100))


def test_home_node_killed_mid_stream_keeps_every_confirmed_persistent_message(cluster):
    """A publisher with confirms on node 2 streams into a queue on node 1 while node 1 is
    killed (kill -9) and restarted: what was confirmed is there afterwards, once; what was
    nacked or returned meanwhile was never confirmed."""
    declare_on(cluster, 1, "xq.kill", durable=True)
    confirmed, failed = [], []
    stop = threading.Event()

    def publish():
        conn = cluster.connect(2)
        ch = conn.channel()
        ch.confirm_delivery()
        i = 0
        while not stop.is_set():
            try:
                ch.basic_publish("", "xq.kill", str(i).encode(), properties=pika.BasicProperties(delivery_mode=2), mandatory=True)
                confirmed.append(i)
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                failed.append(i)
                time.sleep(0.01)
            i += 1
        conn.close()

    t = threading.Thread(target=publish)
    t.start()
    eventually(lambda: len(confirmed) > 200, timeout=20)
    cluster.run("kill", "1")
    eventually(lambda: len(failed) > 0, timeout=20, what="publishes to the dead node refused")
    cluster.run("start", "1")
    cluster.run("wait-healthy")
    n = len(confirmed)
    eventually(lambda: len(confirmed) > n + 200, timeout=30, what="confirms again after the restart")
    stop.set()
    t.join(30)
    # (Node 3's queue link to the restarted node may come up after the publisher's: until it
    # does, a passive declare there answers 404 and closes its channel. A fresh one each time.)
    c3 = cluster.connect(3)
    count = eventually(lambda: c3.channel().queue_declare("xq.kill", passive=True).method.message_count, timeout=30)
    ch = c3.channel()
    got = [int(x) for x in drain(ch, "xq.kill", count)]
    assert len(got) == len(set(got)), "no message twice"
    missing = set(confirmed) - set(got)
    assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:5]}"
    assert not set(failed) & set(got) or True  # a nacked message may still have arrived (RabbitMQ's meaning of nack)


def test_every_nodes_connections_and_channels_are_visible_and_closable_from_any_node(cluster):
    conns = {i: cluster.connect(i, client_properties={"connection_name": f"xq-conn-{i}"}) for i in (1, 2, 3)}
    for c in conns.values():
        c.channel()
    api = cluster.api(2)

    def names():
        s, b, _ = api.call("GET", "/api/connections")
        return {c.get("client_properties", {}).get("connection_name"): c for c in b}

    seen = eventually(lambda: (lambda n: n if all(f"xq-conn-{i}" in n for i in (1, 2, 3)) else None)(names()), timeout=10)
    for i in (1, 2, 3):
        assert seen[f"xq-conn-{i}"]["node"] == cluster.node_name(i)
    s, chans, _ = api.call("GET", "/api/channels")
    assert {c["node"] for c in chans if c["connection_details"]["name"] in {x["name"] for x in seen.values()}} >= {cluster.node_name(i) for i in (1, 2, 3)}
    # Paging spans the cluster too.
    s, page, _ = api.call("GET", "/api/connections?page=1&page_size=2")
    assert page["total_count"] >= 3 and len(page["items"]) == 2
    # Closed from node 2, the connection on node 3 goes, with the reason.
    name3 = seen["xq-conn-3"]["name"]
    from urllib.parse import quote
    s, b, _ = api.call("DELETE", f"/api/connections/{quote(name3, safe='')}")
    assert s == 204, (s, b)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        for _ in range(100):
            conns[3].process_data_events(time_limit=0.1)
    assert e.value.reply_code == 320
    # Consumers too: one on node 2 of a queue on node 1, listed once, with its node.
    declare_on(cluster, 1, "xq.consumed")
    cch = conns[2].channel()
    cch.basic_consume("xq.consumed", lambda *a: None, consumer_tag="xq-ctag")
    listed = eventually(lambda: [c for c in api.call("GET", "/api/consumers")[1] if c["consumer_tag"] == "xq-ctag"], timeout=10)
    assert len(listed) == 1 and listed[0]["queue"]["name"] == "xq.consumed"
    assert listed[0]["channel_details"]["node"] == cluster.node_name(2)
    # warrenctl on node 1 lists them all, with their nodes.
    out = cluster.ctl(1, "list_connections", "name", "node").stdout
    assert cluster.node_name(2) in out and cluster.node_name(1) in out
    conns[1].close()
    conns[2].close()


def test_queue_views_get_and_purge_through_any_nodes_api(cluster):
    declare_on(cluster, 1, "xq.api", durable=True)
    ch = cluster.connect(2).channel()
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "xq.api", f"m{i}".encode())
    api3 = cluster.api(3)
    s, b, _ = api3.call("GET", f"/api/queues/{Q}/xq.api")
    assert s == 200 and b["messages"] == 3 and b["node"] == cluster.node_name(1), b
    s, listed, _ = api3.call("GET", f"/api/queues/{Q}")
    assert [q["messages"] for q in listed if q["name"] == "xq.api"] == [3]
    s, got, _ = api3.call("POST", f"/api/queues/{Q}/xq.api/get", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    assert s == 200 and got[0]["payload"] == "m0", (s, got)
    s, b, _ = api3.call("DELETE", f"/api/queues/{Q}/xq.api/contents")
    assert s == 204
    assert cluster.api(1).call("GET", f"/api/queues/{Q}/xq.api")[1]["messages"] == 0


def test_queue_locators_client_local_and_balanced_as_argument_and_policy(cluster):
    conn = cluster.connect(3)
    ch = conn.channel()
    ch.queue_declare("xq.loc.local", arguments={"x-queue-master-locator": "client-local"})

    def homes():
        s, qs, _ = cluster.api(3).call("GET", f"/api/queues/{Q}")
        return {q["name"]: q["node"] for q in qs}

    assert eventually(lambda: homes().get("xq.loc.local")) == cluster.node_name(3)
    # Balanced: each new queue goes to the member with the fewest queues.
    for i in range(6):
        before = homes()
        counts = {cluster.node_name(n): sum(1 for h in before.values() if h == cluster.node_name(n)) for n in (1, 2, 3)}
        ch.queue_declare(f"xq.loc.bal{i}", arguments={"x-queue-leader-locator": "balanced"})
        placed = homes()[f"xq.loc.bal{i}"]
        assert counts[placed] == min(counts.values()), (placed, counts)
    # The same from a policy.
    s, b, _ = cluster.api(3).call("PUT", f"/api/policies/{Q}/xq-loc", {"pattern": "^xq\\.locp", "definition": {"queue-master-locator": "min-masters"}, "apply-to": "queues"})
    assert s in (201, 204), b
    for i in range(3):
        ch.queue_declare(f"xq.locp{i}")
    assert len({homes()[f"xq.locp{i}"] for i in range(3)}) >= 2
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("xq.loc.bad", arguments={"x-queue-master-locator": "nearest"})
    assert e.value.reply_code == 406
    # A queue placed elsewhere works from here like any other.
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "xq.loc.bal0", b"placed")
    assert eventually(lambda: ch.basic_get("xq.loc.bal0", auto_ack=True)[2]) == b"placed"
    cluster.api(3).call("DELETE", f"/api/policies/{Q}/xq-loc")
    conn.close()


def test_a_queue_deleted_from_one_node_cancels_its_consumers_on_every_node(cluster):
    """Regression (found by Scripts/bench-cross-node): a queue deleted through node 2 left the
    consumers of nodes 1 and 3 attached to it; closing their channels then crashed those nodes."""
    declare_on(cluster, 1, "xq.gone", durable=True)
    conns = {i: cluster.connect(i) for i in (1, 3)}
    cancelled = {1: [], 3: []}
    for i, c in conns.items():
        ch = c.channel()
        ch.add_on_cancel_callback(lambda frame, i=i: cancelled[i].append(frame.method.consumer_tag))
        ch.basic_consume("xq.gone", lambda *a: None)
    cluster.connect(2).channel().queue_delete("xq.gone")
    deadline = time.time() + 10
    while not (cancelled[1] and cancelled[3]) and time.time() < deadline:
        for c in conns.values():
            c.process_data_events(time_limit=0.05)
    assert cancelled[1] and cancelled[3], cancelled
    for c in conns.values():
        c.close()
    for i in (1, 3):
        cluster.connect(i).close()  # the node is still there
