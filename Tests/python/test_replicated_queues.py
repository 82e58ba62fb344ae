"""Replicated queues (quorum queues in a cluster): each a Raft group over three members. A
confirm means a majority has the message on disk; when the leader's node dies a member takes
over, consumers carry on without being cancelled, and nothing confirmed is lost. Pika against
clusters started by `warren-cluster`."""
import threading
import time

import pika
import pytest

from cluster import Cluster, eventually

Q = "%2F"
QUORUM = {"x-queue-type": "quorum"}


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3, name="test_replicated_queues", extra=("--queue-link-timeout", "3"))
    yield c
    c.down()


def queue_info(cluster, i, name):
    s, b, _ = cluster.api(i).call("GET", f"/api/queues/{Q}/{name}")
    return b if s == 200 else None


def declare_everywhere(cluster, i, name, arguments=None):
    conn = cluster.connect(i)
    conn.channel().queue_declare(name, durable=True, arguments=dict(QUORUM, **(arguments or {})))
    conn.close()
    for j in range(1, len(cluster.nodes) + 1):
        eventually(lambda: queue_info(cluster, j, name) is not None, timeout=10, what=f"{name} on node {j}")


def drain(ch, queue, expect, timeout=30):
    got = []
    deadline = time.time() + timeout
    for method, props, body in ch.consume(queue, inactivity_timeout=0.5):
        if method is not None:
            got.append(body)
            ch.basic_ack(method.delivery_tag)
        if len(got) >= expect or time.time() > deadline:
            break
    ch.cancel()
    return got


def test_a_publish_right_after_the_declare_is_confirmed_whoever_wins_the_first_election(cluster):
    """Regression: the declaring node stands first, but another member may win the group's
    first election; publishes that waited on the declaring node for a leader were nacked when
    the winner was recorded. They are passed on to it now."""
    c1 = cluster.connect(1)
    c2 = cluster.connect(2)
    ch2 = c2.channel()
    ch2.confirm_delivery()
    for k in range(30):
        c1.channel().queue_declare(f"rq.race{k}", durable=True, arguments=QUORUM)
        ch2.basic_publish("", f"rq.race{k}", b"x", properties=pika.BasicProperties(delivery_mode=2))
    c1.close()
    c2.close()


def test_publish_on_2_consume_on_3_of_a_quorum_queue_led_by_1(cluster):
    declare_everywhere(cluster, 1, "rq.basic")
    pub = cluster.connect(2)
    pch = pub.channel()
    pch.confirm_delivery()
    n = 2000
    for i in range(n):
        pch.basic_publish("", "rq.basic", str(i).encode(), properties=pika.BasicProperties(delivery_mode=2))
    con = cluster.connect(3)
    cch = con.channel()
    assert cch.queue_declare("rq.basic", passive=True).method.message_count == n
    cch.basic_qos(prefetch_count=100)
    got = drain(cch, "rq.basic", n)
    assert got == [str(i).encode() for i in range(n)]
    pub.close()
    con.close()


def leader_of(cluster, name, among):
    """The queue's leader as the metadata records it (asked of a live node)."""
    for i in among:
        try:
            info = queue_info(cluster, i, name)
        except Exception:  # noqa: BLE001 - that node is down
            continue
        if info and info.get("node"):
            return cluster.index_of(info["node"])
    return None


def kill_leader_cycles(cluster, name, cycles, nodes):
    """Kills the queue's leader's node with kill -9 `cycles` times while the workload runs,
    restarting it each time; clients sit on the other nodes and follow the leader."""
    from replication_workload import Workload
    everyone = list(range(1, nodes + 1))
    first = leader_of(cluster, name, everyone)
    others = [i for i in everyone if i != first]
    w = Workload(cluster, name, publish_nodes=others, consume_nodes=list(reversed(others))).start()
    w.wait_confirmed(200)
    for _ in range(cycles):
        leader = leader_of(cluster, name, everyone)
        cluster.run("kill", str(leader))
        t0 = time.time()
        w.wait_confirmed(100, timeout=30)
        cluster.run("start", str(leader))
        cluster.run("wait-healthy", "--timeout", "60")
        eventually(lambda: leader_of(cluster, name, everyone) not in (None, leader), timeout=30, what="a new leader recorded")
        w.wait_confirmed(100)
    return w.drain_and_stop()


def test_leader_killed_twice_nothing_confirmed_is_lost(cluster):
    declare_everywhere(cluster, 1, "rq.kill")
    r = kill_leader_cycles(cluster, "rq.kill", 2, 3)
    print("kill -9 of the leader x2:", r)
    assert r["lost"] == [] and r["unexpected"] == [], r
    assert r["confirmed"] > 400, r


def test_the_api_shows_leader_members_and_online(cluster):
    declare_everywhere(cluster, 2, "rq.api")
    info = eventually(lambda: queue_info(cluster, 3, "rq.api"), what="rq.api on node 3")
    names = sorted(cluster.node_name(i) for i in (1, 2, 3))
    assert info["type"] == "quorum"
    assert info["leader"] == cluster.node_name(2) == info["node"]
    assert sorted(info["members"]) == names
    assert eventually(lambda: sorted(queue_info(cluster, 3, "rq.api")["online"]) == names, timeout=10, what="all online")


def test_leader_paused_then_resumed_confirms_nothing_it_lost(cluster):
    """SIGSTOP of the leader's node: the other two elect a leader and go on; the old leader,
    resumed, steps down (its pending publishes are nacked, never confirmed)."""
    declare_everywhere(cluster, 1, "rq.pause")
    from replication_workload import Workload
    leader = leader_of(cluster, "rq.pause", (1, 2, 3))
    others = [i for i in (1, 2, 3) if i != leader]
    w = Workload(cluster, "rq.pause", publish_nodes=others, consume_nodes=list(reversed(others))).start()
    w.wait_confirmed(200)
    cluster.run("pause", str(leader))
    try:
        eventually(lambda: leader_of(cluster, "rq.pause", others) not in (None, leader), timeout=30, what="a new leader")
        w.wait_confirmed(200, timeout=30)
    finally:
        cluster.run("resume", str(leader))
    cluster.run("wait-healthy", "--timeout", "30")
    w.wait_confirmed(200)
    r = w.drain_and_stop()
    print("leader paused:", r)
    assert r["lost"] == [] and r["unexpected"] == [], r
    assert r["cancels"] == 0, r


def test_leader_partitioned_away_minority_side_confirms_nothing(cluster):
    """The leader's node cut off from the other two: a publisher connected to it gets no
    confirm (nacked once the timeout passes), the majority elects a leader and goes on."""
    declare_everywhere(cluster, 3, "rq.part")
    from replication_workload import Workload
    leader = leader_of(cluster, "rq.part", (1, 2, 3))
    others = [i for i in (1, 2, 3) if i != leader]
    w = Workload(cluster, "rq.part", publish_nodes=others, consume_nodes=list(reversed(others))).start()
    lonely = Workload(cluster, "rq.part", publish_nodes=[leader], consume_nodes=others)
    lonely.threads = lonely.threads[:1]
    w.wait_confirmed(200)
    cluster.run("partition", str(leader), ",".join(map(str, others)))
    try:
        eventually(lambda: leader_of(cluster, "rq.part", others) not in (None, leader), timeout=30, what="a new leader on the majority side")
        w.wait_confirmed(200, timeout=30)
        # A publisher on the isolated old leader: nothing it sends there is confirmed.
        lonely.start()
        time.sleep(2)
        lonely.stop_publishing()
        lonely_confirmed = set(lonely.confirmed)
    finally:
        cluster.run("heal")
    cluster.run("wait-healthy", "--timeout", "60")
    w.wait_confirmed(200)
    r = w.drain_and_stop()
    print("leader partitioned:", r, "isolated publisher:", lonely.report())
    assert r["lost"] == [] and r["unexpected"] == [], r
    # (Messages numbered from 0 as the main workload's are: compare by what was confirmed.)
    assert not lonely_confirmed or lonely_confirmed <= set(w.received), lonely_confirmed


def test_without_a_majority_nothing_is_confirmed(cluster):
    """Two of the three members stopped: the leader cannot commit; a publish is nacked (when
    the leader steps down for want of a majority, or at the timeout), not confirmed. Back to a majority, publishes are confirmed again."""
    declare_everywhere(cluster, 1, "rq.minority")
    ch = cluster.connect(1).channel()
    ch.confirm_delivery()
    ch.basic_publish("", "rq.minority", b"before", properties=pika.BasicProperties(delivery_mode=2))
    cluster.run("stop", "2")
    cluster.run("stop", "3")
    try:
        with pytest.raises(pika.exceptions.NackError):
            ch.basic_publish("", "rq.minority", b"alone", properties=pika.BasicProperties(delivery_mode=2))
    finally:
        cluster.run("start", "2")
        cluster.run("start", "3")
    cluster.run("wait-healthy", "--timeout", "60")
    ch = cluster.connect(2).channel()
    ch.confirm_delivery()
    eventually(lambda: ch.basic_publish("", "rq.minority", b"after", properties=pika.BasicProperties(delivery_mode=2)) or True,
               timeout=20, what="a confirm with the majority back")
    got = []
    for _ in range(10):
        m, _, body = ch.basic_get("rq.minority", auto_ack=True)
        if m is None:
            break
        got.append(body)
    assert got[0] == b"before" and b"after" in got, got


def test_the_quorum_queue_suite_passes_against_node_2_of_a_cluster(cluster):
    """test_quorum_pika.py unchanged against node 2: every declaration, refusal and text of
    quorum queues, delivery counts, global QoS, and the tutorials' programs, with the queues
    now replicated over the three nodes."""
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, WARREN_TEST_BROKER=f"127.0.0.1:{cluster.amqp(2)}")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", os.path.join(here, "test_quorum_pika.py")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert " passed" in p.stdout


def test_five_nodes_leader_killed_twice(tmp_path):
    c = Cluster(5, name="test_replicated_queues_5", extra=("--queue-link-timeout", "3"))
    try:
        declare_everywhere(c, 1, "rq.five")
        info = queue_info(c, 2, "rq.five")
        assert len(info["members"]) == 3, info
        r = kill_leader_cycles(c, "rq.five", 2, 5)
        print("5 nodes, kill -9 of the leader x2:", r)
        assert r["lost"] == [] and r["unexpected"] == [], r
        assert r["cancels"] == 0, r
    finally:
        c.down()
