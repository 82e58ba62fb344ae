"""Clusters of real Warren nodes, started, broken and healed by `warren-cluster`, driven with
pika and the management API: definitions replicate, a killed leader loses no acknowledged
change and keeps none that failed, a minority refuses changes and the majority goes on, a
healed node catches up, a forgotten node is gone, a wrong secret is refused."""
import json
import os
import random
import subprocess
import sys
import threading
import time

import pika
import pytest

from cluster import Cluster, eventually
from conftest import ROOT, warren_binary

Q = "%2F"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3, name="test_cluster")
    yield c
    c.down()


def test_every_kind_of_definition_made_on_one_node_is_on_every_node(cluster):
    conn = cluster.connect(2)
    ch = conn.channel()
    ch.exchange_declare("c.x", "topic", durable=True)
    ch.exchange_declare("c.x2", "fanout", durable=True)
    ch.queue_declare("c.q", durable=True, arguments={"x-max-length": 50})
    ch.queue_bind("c.q", "c.x", "a.#")
    ch.exchange_bind("c.x2", "c.x", "b.#")
    conn.close()
    api = cluster.api(3)
    for method, path, body in [
        ("PUT", "/api/vhosts/cv", {}),
        ("PUT", "/api/users/cu", {"password": "pw", "tags": "monitoring"}),
        ("PUT", "/api/permissions/cv/cu", {"configure": ".*", "write": ".*", "read": ".*"}),
        ("PUT", "/api/topic-permissions/cv/cu", {"exchange": "amq.topic", "write": "^a", "read": ".*"}),
        ("PUT", f"/api/policies/{Q}/cp", {"pattern": "^c\\.", "definition": {"message-ttl": 60000}, "apply-to": "queues"}),
        ("PUT", f"/api/operator-policies/{Q}/cop", {"pattern": "^c\\.", "definition": {"max-length": 100}, "apply-to": "queues"}),
        ("PUT", "/api/parameters/federation-upstream/cv/up1", {"value": {"uri": "amqp://elsewhere"}}),
        ("PUT", "/api/global-parameters/gp", {"value": {"k": 1}}),
        ("PUT", "/api/cluster-name", {"name": "warren-test-cluster"}),
    ]:
        s, b, _ = api.call(method, path, body)
        assert s in (201, 204), (path, s, b)

    def everywhere(i):
        a = cluster.api(i)
        checks = {
            f"/api/exchanges/{Q}/c.x": lambda b: b["type"] == "topic",
            f"/api/queues/{Q}/c.q": lambda b: b["arguments"] == {"x-max-length": 50} and b["node"] == cluster.node_name(2)
            and b.get("effective_policy_definition", {}).get("message-ttl") == 60000,
            f"/api/bindings/{Q}/e/c.x/q/c.q": lambda b: [x["routing_key"] for x in b] == ["a.#"],
            f"/api/bindings/{Q}/e/c.x/e/c.x2": lambda b: [x["routing_key"] for x in b] == ["b.#"],
            "/api/vhosts/cv": lambda b: b["name"] == "cv",
            "/api/users/cu": lambda b: b["tags"] in (["monitoring"], "monitoring"),
            "/api/permissions/cv/cu": lambda b: b["write"] == ".*",
            "/api/topic-permissions/cv/cu": lambda b: b[0]["write"] == "^a",
            f"/api/policies/{Q}/cp": lambda b: b["definition"] == {"message-ttl": 60000},
            f"/api/operator-policies/{Q}/cop": lambda b: b["definition"] == {"max-length": 100},
            "/api/parameters/federation-upstream/cv/up1": lambda b: b["value"] == {"uri": "amqp://elsewhere"},
            "/api/global-parameters/gp": lambda b: b["value"] == {"k": 1},
            "/api/overview": lambda b: b["cluster_name"] == "warren-test-cluster",
        }
        for path, ok in checks.items():
            s, b, _ = a.call("GET", path)
            assert s == 200 and ok(b), f"node {i}: {path}: {s} {b}"
        return True

    for i in (1, 2, 3):
        eventually(lambda: everywhere(i), timeout=10, what=f"node {i} to show every definition")
    # A login on node 1 with the user made through node 3, in the vhost made there.
    c = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", cluster.amqp(1), "cv", pika.PlainCredentials("cu", "pw")))
    c.close()


def test_nodes_and_cluster_status_list_every_member(cluster):
    names = sorted(n["name"] for n in cluster.nodes)
    for i in (1, 2, 3):
        # (Each member's status comes when its link is up: polled, bounded.)
        # (Other members' figures come with their gossip, a little later than "running".)
        def measured(n):
            return n["running"] and n.get("mem_used", 0) > 0 and n.get("fd_total", 0) > 0 and n.get("uptime", 0) > 0
        nodes = eventually(lambda: (lambda r: r[1] if r[0] == 200 and all(measured(n) for n in r[1]) else None)(
            cluster.api(i).call("GET", "/api/nodes")), timeout=20, what=f"every member running and measured as node {i} sees it")
        assert sorted(n["name"] for n in nodes) == names
        st = cluster.status(i)
        assert sorted(st["running_nodes"]) == names and sorted(st["disk_nodes"]) == names
        assert st["metadata_leader"] in names
    # Each node's Prometheus carries its own name.
    import urllib.request
    for i, n in enumerate(cluster.nodes, 1):
        text = urllib.request.urlopen(f"http://127.0.0.1:{n['prometheus']}/metrics", timeout=10).read().decode()
        assert f'rabbitmq_node="{n["name"]}"' in text, f"node {i}'s metrics lack its node label"


def test_a_node_with_the_wrong_secret_is_refused_and_both_sides_say_so(cluster, tmp_path):
    seed = f"127.0.0.1:{cluster.nodes[0]['cluster']}"
    log = open(tmp_path / "intruder.log", "w")
    p = subprocess.Popen([warren_binary(), "--node-name", "intruder@localhost", "--data-dir", str(tmp_path / "d"),
                          "--bind", "127.0.0.1", "--amqp-port", "0", "--management", "off", "--prometheus", "off",
                          "--cluster-port", "0", "--cluster-seeds", seed, "--cluster-secret", "not-the-secret"],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: "intruder@localhost" in cluster.log_text(1) and "refused" in cluster.log_text(1),
                   timeout=30, what="node 1 to log the refusal")
        line = next(l for l in cluster.log_text(1).splitlines() if "intruder@localhost" in l and "refused" in l)
        assert "secret" in line, line
        eventually(lambda: "refused" in open(tmp_path / "intruder.log").read(), timeout=30, what="the intruder to log it")
        theirs = next(l for l in open(tmp_path / "intruder.log").read().splitlines() if "refused" in l)
        assert "secret" in theirs, theirs
        for i in (1, 2, 3):
            st = cluster.status(i)
            assert "intruder@localhost" not in st["disk_nodes"] + st["running_nodes"] + st["voters"]
        assert "secret" in cluster.status(1)["refusals"]["intruder@localhost"]
    finally:
        p.kill()
        p.wait()
        log.close()


def test_pika_behaviour_error_and_extension_suites_pass_against_node_2_with_queues_on_node_1(cluster):
    """The single-node suites, unchanged, run against node 2, with every declaration going
    through the metadata group and every named shared queue they use living on node 1 (a
    plugin declares it there first, `predeclare_elsewhere.py`): publishes, consumes, gets,
    acks, TTL, dead-lettering, priorities, single active consumer, ... all cross nodes."""
    here = os.path.join(ROOT, "Tests", "python")
    env = dict(os.environ, WARREN_TEST_BROKER=f"127.0.0.1:{cluster.amqp(2)}", WARREN_PREDECLARE_ON=f"127.0.0.1:{cluster.amqp(1)}",
               PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "predeclare_elsewhere",
                        *(os.path.join(here, f) for f in ("test_behaviour_pika.py", "test_errors_pika.py", "test_lifecycle_pika.py"))],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert " passed" in p.stdout
    import re
    placed = re.search(r"predeclared (\d+) queues", p.stdout)
    assert placed and int(placed.group(1)) >= 20, p.stdout[-1000:]


def exists(conn, name, timeout=15):
    """Whether the queue is defined, by a passive declare through `conn`. A 404 that says its
    home node is down or inaccessible says nothing about that (the queue link to it may still
    be coming up after a restart or a heal): asked again, for a bounded time."""
    deadline = time.time() + timeout
    while True:
        ch = conn.channel()
        try:
            ch.queue_declare(name, passive=True)
            ch.close()
            return True
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404, e
            if "is down or inaccessible" not in e.reply_text:
                return False
            assert time.time() < deadline, f"{name}: its home node stayed unreachable: {e.reply_text}"
            time.sleep(0.2)


def declare_stream(c, node, prefix, stop, results, made_at):
    """Declares prefix-0, prefix-1, ... on `node` until `stop`; records every outcome."""
    n = 0
    conn = ch = None
    while not stop.is_set():
        name = f"{prefix}-{n}"
        n += 1
        began = time.time()
        try:
            if conn is None or not conn.is_open:
                conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", c.amqp(node), socket_timeout=10, blocked_connection_timeout=30))
                ch = conn.channel()
            ch.queue_declare(name, durable=True)
            results[name] = "ok"
            made_at.append((began, time.time()))
        except pika.exceptions.AMQPConnectionError as e:
            text = str(e)
            results[name] = "uncertain" if ("may still take effect" in text or "541" not in text) else "failed"
            conn = None
            time.sleep(0.05)
        except Exception as e:  # noqa: BLE001 - the connection may die in any state mid-call
            results[name] = "uncertain"
            conn = None
            time.sleep(0.05)
    if conn is not None and conn.is_open:
        conn.close()


def test_killing_the_metadata_leader_during_declares_keeps_every_acknowledged_one():
    c = Cluster(3, name="test_cluster_leader_kill")
    try:
        leader = c.leader()
        others = [i for i in (1, 2, 3) if i != leader]
        stop = threading.Event()
        results = {o: {} for o in others}
        made = {o: [] for o in others}
        threads = [threading.Thread(target=declare_stream, args=(c, o, f"k{o}", stop, results[o], made[o])) for o in others]
        for t in threads:
            t.start()
        eventually(lambda: all(len(made[o]) >= 20 for o in others), timeout=30, what="declares to flow")
        c.run("kill", str(leader))
        killed_at = time.time()  # the verb returns once the process is gone
        # A declare begun after the kill has to be committed by a new leader.
        eventually(lambda: all(any(b > killed_at for b, _ in made[o]) for o in others), timeout=15,
                   what="declares to succeed again after the leader died")
        recovery = min(min(e for b, e in made[o] if b > killed_at) for o in others) - killed_at
        stop.set()
        for t in threads:
            t.join(30)
        c.run("start", str(leader))
        c.run("wait-healthy", "--timeout", "60")
        print(f"first declare after the leader's kill -9: {recovery:.3f} s")
        for i in (1, 2, 3):
            conn = c.connect(i)
            for o in others:
                for name, outcome in results[o].items():
                    present = exists(conn, name)
                    if outcome == "ok":
                        assert present, f"node {i}: acknowledged {name} is gone"
                    elif outcome == "failed":
                        assert not present, f"node {i}: {name} was refused as not made, but it is there"
            conn.close()
        oks = sum(1 for r in results.values() for v in r.values() if v == "ok")
        assert oks >= 40
    finally:
        c.down()


def test_a_minority_refuses_changes_the_majority_goes_on_and_the_healed_node_catches_up():
    c = Cluster(3, name="test_cluster_partition", extra=("--metadata-timeout", "2"))
    try:
        leader = c.leader()
        m = next(i for i in (1, 2, 3) if i != leader)  # the minority: a follower cut off alone
        rest = [i for i in (1, 2, 3) if i != m]
        setup = c.connect(m)
        ch = setup.channel()
        ch.queue_declare("before", durable=True)
        setup.close()
        c.run("partition", str(m), ",".join(map(str, rest)))
        conn = c.connect(m)
        ch = conn.channel()
        # Everything that needs no change still works on the minority node.
        ch.queue_declare("before", passive=True)
        ch.basic_publish("", "before", b"still here")
        assert eventually(lambda: ch.basic_get("before", auto_ack=True)[2], timeout=5) == b"still here"
        started = time.time()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            ch.queue_declare("minority", durable=True)
        assert time.time() - started < 2 + 3, "the refusal came within the metadata timeout"
        assert e.value.reply_code == 541
        # It never reached a leader: the node knows it was not made, and says what is needed.
        assert "majority" in e.value.reply_text and "not made" in e.value.reply_text, e.value.reply_text
        assert "metadata change not committed" in c.log_text(m)
        # The majority goes on.
        maj = c.connect(rest[1])
        mch = maj.channel()
        eventually(lambda: mch.queue_declare("majority", durable=True), timeout=10, what="the majority to accept changes")
        maj.close()
        c.run("heal")
        c.run("wait-healthy", "--timeout", "30")
        back = c.connect(m)
        # (A fresh channel each time: a queue of another node answers 404 "down or inaccessible"
        # until the healed node's queue link to it is up again.)
        eventually(lambda: back.channel().queue_declare("majority", passive=True), timeout=10, what="the healed node to catch up")
        assert not exists(back, "minority"), "a change refused as not made stays not made after the heal"
        back.close()

        # A forgotten node is gone from every view.
        c.run("stop", str(m))
        s, b, _ = c.api(rest[0]).call("POST", "/api/warren/cluster/forget", {"node": c.node_name(m)})
        assert s in (200, 204), b
        for i in rest:
            eventually(lambda: c.node_name(m) not in json.dumps(c.api(i).call("GET", "/api/nodes")[1]), timeout=10,
                       what=f"node {i} to forget node {m}")
            st = c.status(i)
            assert c.node_name(m) not in st["disk_nodes"] + st["running_nodes"] + st["voters"]
        # And the two left still make changes (a majority of two).
        conn = c.connect(rest[1])
        conn.channel().queue_declare("after-forget", durable=True)
        conn.close()
    finally:
        c.down()


def test_kill_9_cycles_keep_the_metadata_intact():
    """Each cycle kills a random node with SIGKILL while changes go on, restarts it, and checks
    that every node holds every definition made so far. WARREN_CLUSTER_CYCLES sets the count
    (CI runs 20, short ones)."""
    cycles = int(os.environ.get("WARREN_CLUSTER_CYCLES", "20"))
    seed = int(os.environ.get("WARREN_CLUSTER_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    print(f"seed {seed}")
    c = Cluster(3, name="test_cluster_kill_cycles")
    made = []
    try:
        for cycle in range(cycles):
            victim = rng.randint(1, 3)
            c.run("kill", str(victim))
            via = rng.choice([i for i in (1, 2, 3) if i != victim])
            conn = eventually(lambda: c.connect(via), timeout=10)
            ch = conn.channel()
            for k in range(3):
                name = f"cycle{cycle}-{k}"
                eventually(lambda: ch.queue_declare(name, durable=True) or True, timeout=15, what=f"{name} (seed {seed})")
                made.append(name)
            ch.exchange_declare(f"cx{cycle}", "direct", durable=True)
            ch.queue_bind(f"cycle{cycle}-0", f"cx{cycle}", "k")
            conn.close()
            c.run("start", str(victim))
            c.run("wait-healthy", "--timeout", "60")
            for i in (1, 2, 3):
                def holds():
                    s, qs, _ = c.api(i).call("GET", "/api/queues?columns=name")
                    have = {q["name"] for q in qs}
                    return all(n in have for n in made)
                eventually(holds, timeout=10, what=f"node {i} to hold every queue after cycle {cycle} (seed {seed})")
                s, b, _ = c.api(i).call("GET", f"/api/bindings/{Q}/e/cx{cycle}/q/cycle{cycle}-0")
                assert s == 200 and len(b) == 1, (i, cycle, seed, b)
    finally:
        c.down()


def ctl(c, i, *args, check=True):
    return c.ctl(i, *args, check=check)


def test_warrenctl_cluster_verbs_stop_app_reset_and_join_cluster():
    c = Cluster(3, name="test_cluster_ctl")
    try:
        names = sorted(n["name"] for n in c.nodes)
        text = ctl(c, 1, "cluster_status").stdout
        assert text.splitlines()[0] == f"Cluster status of node {c.node_name(1)} ..."
        for section in ("Disk Nodes", "Running Nodes", "Alarms", "Network Partitions", "Listeners"):
            assert f"\n{section}\n" in text, text
        assert all(n in text for n in names)
        js = json.loads(ctl(c, 2, "cluster_status", "--formatter", "json").stdout)
        assert sorted(js["disk_nodes"]) == names and sorted(js["running_nodes"]) == names
        ctl(c, 2, "set_cluster_name", "renamed")
        eventually(lambda: c.api(3).call("GET", "/api/overview")[1]["cluster_name"] == "renamed", timeout=10)
        # List verbs answer on any node with the whole cluster's objects.
        conn = c.connect(1)
        conn.channel().queue_declare("on-1", durable=True)
        conn.close()
        eventually(lambda: "on-1" in ctl(c, 3, "list_queues", "name").stdout, timeout=10)

        # stop_app closes the AMQP listener; the process and its cluster links stay.
        ctl(c, 3, "stop_app")
        eventually(lambda: not port_open(c.amqp(3)), timeout=10, what="node 3's AMQP listener to close")
        assert c.node_name(3) in c.status(1)["running_nodes"]
        # reset: node 3 leaves (the others forget it) and comes back as a new cluster of one.
        # Regression: management requests while the node restarts itself; it once closed its
        # file descriptors before the exec, and a request waking an event loop through a
        # closed eventfd crashed the process; and a connection accepted just before the exec
        # was left to the new process, which never read it (the client hung for its timeout).
        # Four threads ask all the time.
        stop = threading.Event()
        slowest = [0.0]

        def ask():
            while not stop.is_set():
                started = time.time()
                try:
                    c.status(3)
                except Exception:  # noqa: BLE001 - refused while it restarts
                    pass
                slowest[0] = max(slowest[0], time.time() - started)
        askers = [threading.Thread(target=ask) for _ in range(4)]
        for t in askers:
            t.start()
        try:
            ctl(c, 3, "reset")
            eventually(lambda: c.node_name(3) not in c.status(1)["disk_nodes"], timeout=20, what="the others to forget node 3")
            eventually(lambda: c.status(3)["disk_nodes"] == [c.node_name(3)], timeout=30, what="node 3 alone after its reset")
        finally:
            stop.set()
            for t in askers:
                t.join()
        assert "Program crashed" not in c.log_text(3)
        assert slowest[0] < 10, f"a management request hung for {slowest[0]:.1f} s across the reset"
        ctl(c, 3, "stop_app")
        ctl(c, 3, "join_cluster", f"127.0.0.1:{c.nodes[0]['cluster']}")
        c.run("wait-healthy", "--timeout", "60")
        eventually(lambda: "on-1" in ctl(c, 3, "list_queues", "name").stdout, timeout=10, what="node 3 to have the cluster's queues")
        ctl(c, 3, "start_app")
        eventually(lambda: port_open(c.amqp(3)), timeout=10)
    finally:
        c.down()


def port_open(port):
    import socket
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_five_nodes_two_cut_off_the_three_go_on_and_all_five_agree_after_the_heal():
    c = Cluster(5, name="test_cluster_five", extra=("--metadata-timeout", "2"))
    try:
        c.run("partition", "4,5", "1,2,3")
        three = c.connect(2)
        ch = three.channel()
        eventually(lambda: ch.queue_declare("made-by-three", durable=True), timeout=15, what="the three to accept changes")
        three.close()
        two = c.connect(5)
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            two.channel().queue_declare("made-by-two", durable=True)
        assert e.value.reply_code == 541
        c.run("heal")
        c.run("wait-healthy", "--timeout", "60")
        for i in range(1, 6):
            conn = c.connect(i)
            eventually(lambda: conn.channel().queue_declare("made-by-three", passive=True), timeout=10,
                       what=f"node {i} to have the majority's queue")
            with pytest.raises(pika.exceptions.ChannelClosedByBroker):
                conn.channel().queue_declare("made-by-two", passive=True)
            conn.close()
    finally:
        c.down()


def test_a_paused_leader_is_replaced_and_acknowledges_nothing_once_resumed():
    c = Cluster(3, name="test_cluster_pause", extra=("--metadata-timeout", "3"))
    try:
        leader = c.leader()
        others = [i for i in (1, 2, 3) if i != leader]
        # A client on the leader asks for a change while the leader is frozen.
        on_leader = c.connect(leader)
        lch = on_leader.channel()
        c.run("pause", str(leader))
        conn = c.connect(others[0])
        ch = conn.channel()
        eventually(lambda: ch.queue_declare("while-paused", durable=True), timeout=15, what="a new leader")
        new = c.leader(among=others)
        assert new in others
        c.run("resume", str(leader))
        c.run("wait-healthy", "--timeout", "30")
        # The old leader follows the new one and serves the change made meanwhile.
        eventually(lambda: on_leader.channel().queue_declare("while-paused", passive=True), timeout=15)
        if not lch.is_open:
            lch = on_leader.channel()
        lch.queue_declare("after-resume", durable=True)
        on_leader.close()
        for i in (1, 2, 3):
            cc = c.connect(i)
            eventually(lambda: cc.channel().queue_declare("after-resume", passive=True), timeout=10)
            cc.close()
    finally:
        c.down()


def test_cluster_links_over_mutual_tls():
    c = Cluster(3, name="test_cluster_tls", tls=True)
    try:
        for i in (1, 2, 3):
            assert "cluster listener started" in c.log_text(i) and "tls=on" in c.log_text(i)
        conn = c.connect(2)
        conn.channel().queue_declare("over-tls", durable=True)
        conn.close()
        for i in (1, 3):
            cc = c.connect(i)
            eventually(lambda: cc.channel().queue_declare("over-tls", passive=True), timeout=10)
            cc.close()
    finally:
        c.down()


def test_an_alarm_on_one_node_blocks_publishers_on_every_node():
    c = Cluster(3, name="test_cluster_alarm")
    try:
        conn = c.connect(1)
        blocked = []
        conn.add_on_connection_blocked_callback(lambda *a: blocked.append("blocked"))
        conn.add_on_connection_unblocked_callback(lambda *a: blocked.append("unblocked"))
        ch = conn.channel()
        ch.basic_publish("", "nowhere", b"x")  # a publisher: RabbitMQ blocks only those
        # Node 3 comes back with a memory limit it is already over.
        c.run("stop", "3")
        c.run("start", "3", "--", "--memory-high-watermark", "1MB")
        c.run("wait-healthy", "--timeout", "30")

        def seen(what):
            conn.process_data_events(time_limit=0.1)
            return what in blocked
        eventually(lambda: seen("blocked"), timeout=15, what="connection.blocked on node 1 for node 3's alarm")
        s, alarms, _ = c.api(1).call("GET", "/api/health/checks/alarms")
        assert s == 503 and c.node_name(3) in json.dumps(alarms), alarms
        c.run("stop", "3")
        c.run("start", "3")
        eventually(lambda: seen("unblocked"), timeout=20, what="connection.unblocked once the alarm is gone")
        conn.close()
    finally:
        c.down()


def test_a_node_restarted_into_a_minority_refuses_changes_within_the_timeout():
    c = Cluster(3, name="test_cluster_restart_minority", extra=("--metadata-timeout", "2"))
    try:
        c.run("kill", "3")
        c.run("partition", "3")
        c.run("start", "3")
        conn = c.connect(3)
        ch = conn.channel()
        started = time.time()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            ch.queue_declare("restarted-alone", durable=True)
        assert time.time() - started < 5
        assert e.value.reply_code == 541 and "not made" in e.value.reply_text, e.value.reply_text
        c.run("heal")
        c.run("wait-healthy", "--timeout", "30")
        conn = c.connect(1)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            conn.channel().queue_declare("restarted-alone", passive=True)
        conn.close()
    finally:
        c.down()


def test_a_node_that_goes_down_takes_its_exclusive_and_transient_queues_with_it():
    c = Cluster(3, name="test_cluster_node_down")
    try:
        leader = c.leader()
        victim = next(i for i in (1, 2, 3) if i != leader)
        conn = c.connect(victim)
        ch = conn.channel()
        ch.queue_declare("excl", exclusive=True)
        ch.queue_declare("transient", durable=False)
        ch.queue_declare("durable-stays", durable=True)
        other = next(i for i in (1, 2, 3) if i not in (leader, victim))
        check = c.connect(other)
        eventually(lambda: check.channel().queue_declare("transient", passive=True), timeout=10)
        c.run("kill", str(victim))
        killed = time.time()

        # Its queues are unusable at once (404, home node down), and the definitions of its
        # exclusive and transient ones go once it has been unreachable for 10 s.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            check.channel().queue_declare("durable-stays", passive=True)
        assert e.value.reply_code == 404 and "is down or inaccessible" in e.value.reply_text

        def gone(name):
            return c.api(other).call("GET", f"/api/queues/{Q}/{name}")[0] == 404
        eventually(lambda: gone("excl") and gone("transient"), timeout=30, what="the down node's exclusive and transient queues to go")
        assert time.time() - killed >= 9, "not before the node had been unreachable for a while"
        assert not gone("durable-stays"), "its durable queue stays"
        check.close()
        assert "unreachable for 10 s" in c.log_text(leader)
    finally:
        c.down()


def test_a_node_whose_certificate_the_cluster_does_not_trust_is_refused_and_both_sides_say_so(tmp_path):
    c = Cluster(3, name="test_cluster_tls_refusal", tls=True)
    log = None
    p = None
    try:
        # A certificate from another CA.
        def ssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=other CA")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "n.key", "-out", "n.csr", "-subj", "/CN=stranger@localhost")
        ssl("x509", "-req", "-in", "n.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "n.pem", "-days", "2")
        seed = f"127.0.0.1:{c.nodes[0]['cluster']}"
        secret = json.load(open(os.path.join(c.dir, "cluster.json")))["secret"]
        log = open(tmp_path / "stranger.log", "w")
        p = subprocess.Popen([warren_binary(), "--node-name", "stranger@localhost", "--data-dir", str(tmp_path / "d"),
                              "--bind", "127.0.0.1", "--amqp-port", "0", "--management", "off", "--prometheus", "off",
                              "--cluster-port", "0", "--cluster-seeds", seed, "--cluster-secret", secret,
                              "--cluster-tls-cert", str(tmp_path / "n.pem"), "--cluster-tls-key", str(tmp_path / "n.key"),
                              "--cluster-tls-ca-cert", str(tmp_path / "ca.pem")],
                             stdout=log, stderr=subprocess.STDOUT)
        eventually(lambda: "TLS handshake failed" in c.log_text(1), timeout=30, what="node 1 to log the TLS refusal")
        line = next(l for l in c.log_text(1).splitlines() if "TLS handshake failed" in l)
        assert "127.0.0.1" in line and "certificate" in line.lower(), line
        eventually(lambda: "TLS handshake failed" in open(tmp_path / "stranger.log").read(), timeout=30, what="the stranger to log it")
        for i in (1, 2, 3):
            st = c.status(i)
            assert "stranger@localhost" not in st["disk_nodes"] + st["running_nodes"]
    finally:
        if p:
            p.kill()
            p.wait()
        if log:
            log.close()
        c.down()


def test_snapshots_compact_the_log_and_a_node_that_missed_them_catches_up():
    """With a snapshot every few entries: the log is compacted, a node that was down while the
    leader compacted past it is sent a snapshot, and every node (and the whole cluster after a
    kill -9 of all three) comes back with every queue."""
    c = Cluster(3, name="test_cluster_snapshots", extra=("--metadata-snapshot-every", "20"))
    try:
        def declare(node, names):
            conn = eventually(lambda: c.connect(node), timeout=20)
            ch = conn.channel()
            for n in names:
                eventually(lambda: ch.queue_declare(n, durable=True) or True, timeout=20, what=n)
            conn.close()

        def snapshots(i):
            d = os.path.join(c.dir, f"warren-{i}", "data", "raft", "snapshots")
            return sorted(os.listdir(d))

        declare(1, [f"a{i}" for i in range(150)])
        eventually(lambda: all(len(snapshots(i)) >= 1 and snapshots(i) != ["0-1.snap"] for i in (1, 2, 3)),
                   timeout=20, what="every node to snapshot")
        c.run("kill", "3")
        declare(2, [f"b{i}" for i in range(600)])  # the others compact past node 3
        c.run("start", "3")
        c.run("wait-healthy", "--timeout", "60")
        want = {f"a{i}" for i in range(150)} | {f"b{i}" for i in range(600)}

        def holds(i):
            s, qs, _ = c.api(i).call("GET", "/api/queues?columns=name")
            return want <= {q["name"] for q in qs}
        for i in (1, 2, 3):
            eventually(lambda: holds(i), timeout=20, what=f"node {i} to hold every queue")
        assert "metadata snapshot installed" in c.log_text(3), "node 3 was behind the leader's compaction"
        for i in (1, 2, 3):
            c.run("kill", str(i))
        for i in (1, 2, 3):
            c.run("start", str(i))
        c.run("wait-healthy", "--timeout", "60")
        for i in (1, 2, 3):
            eventually(lambda: holds(i), timeout=20, what=f"node {i} to hold every queue after a full restart")
    finally:
        c.down()


def test_random_faults_lose_no_acknowledged_definition():
    """A seeded sequence of faults (kill -9, SIGSTOP, partitions, dropped links, restarts)
    while a client declares on a random node; after each step and at the end, with the
    cluster healed: every declare that got its -ok is on every node, and every one refused as
    "not made" is on none. WARREN_FAULT_STEPS sets the length (CI: 12), WARREN_FAULT_SEED
    repeats a run."""
    steps = int(os.environ.get("WARREN_FAULT_STEPS", "12"))
    seed = int(os.environ.get("WARREN_FAULT_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    print(f"seed {seed}")
    c = Cluster(3, name="test_cluster_faults", extra=("--metadata-timeout", "2"))
    acked, refused = set(), set()
    down, paused = set(), set()
    try:
        for step in range(steps):
            fault = rng.choice(["kill", "pause", "partition", "drop", "none"])
            up = [i for i in (1, 2, 3) if i not in down and i not in paused]
            if fault == "kill" and len(up) > 1:
                v = rng.choice(up)
                c.run("kill", str(v))
                down.add(v)
            elif fault == "pause" and len(up) > 1:
                v = rng.choice(up)
                c.run("pause", str(v))
                paused.add(v)
            elif fault == "partition":
                c.run("partition", str(rng.randint(1, 3)))
            elif fault == "drop":
                c.run("drop", str(rng.randint(1, 3)))
            # Declares on a random live node, whatever state the cluster is in.
            live = [i for i in (1, 2, 3) if i not in down and i not in paused]
            node = rng.choice(live)
            try:
                conn = pika.BlockingConnection(pika.ConnectionParameters(
                    "127.0.0.1", c.amqp(node), socket_timeout=5, blocked_connection_timeout=10))
                ch = conn.channel()
                for k in range(5):
                    name = f"f{step}-{k}"
                    try:
                        ch.queue_declare(name, durable=True)
                        acked.add(name)
                    except pika.exceptions.ConnectionClosedByBroker as e:
                        if "not made" in e.reply_text:
                            refused.add(name)
                        break
                if conn.is_open:
                    conn.close()
            except pika.exceptions.AMQPError:
                pass
            # Mend it all and check.
            c.run("heal")
            for v in sorted(paused):
                c.run("resume", str(v))
            for v in sorted(down):
                c.run("start", str(v))
            down.clear()
            paused.clear()
            c.run("wait-healthy", "--timeout", "60")
            for i in (1, 2, 3):
                def holds():
                    s, qs, _ = c.api(i).call("GET", "/api/queues?columns=name")
                    have = {q["name"] for q in qs}
                    assert not (refused & have), f"node {i}: refused as not made, yet there: {refused & have} (seed {seed})"
                    return acked <= have
                eventually(holds, timeout=20, what=f"node {i} to hold every acknowledged queue after step {step} (seed {seed})")
        print(f"{len(acked)} acknowledged, {len(refused)} refused as not made")
    finally:
        c.down()


def test_a_taken_cluster_port_stops_the_start_with_a_clear_message(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        p = subprocess.run([warren_binary(), "--amqp-port", "0", "--bind", "127.0.0.1", "--data-dir", str(tmp_path / "d"),
                            "--management", "off", "--prometheus", "off", "--cluster-port", str(port)],
                           capture_output=True, text=True, timeout=60)
    finally:
        s.close()
    assert p.returncode == 1
    assert f"cannot start the cluster listener on 127.0.0.1:{port}" in p.stderr and "--cluster-port" in p.stderr, p.stderr[-500:]
