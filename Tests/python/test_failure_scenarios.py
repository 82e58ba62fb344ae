"""The failure scenarios users run (`warren-cluster run`), short: each scenario for a few
seconds at a fast pace on a cluster the driver started, checked by `warren-cluster check`'s
rules: nothing confirmed lost, nothing unexpected. The long mode (every scenario x 10 seeds x 3
minutes at the issue's pace) is documented in docs/failure-testing.md with its results.

    WARREN_SCENARIO_SECONDS=12 WARREN_SCENARIO_PACE=0.2 WARREN_SCENARIO_SEEDS=1  (the defaults here)
"""
import json
import os
import subprocess

import pytest

from cluster import Cluster, driver_binary

SECONDS = os.environ.get("WARREN_SCENARIO_SECONDS", "12")
PACE = os.environ.get("WARREN_SCENARIO_PACE", "0.2")
SEEDS = [int(s) for s in os.environ.get("WARREN_SCENARIO_SEEDS", "1").split(",")]


def run(cluster, scenario, seed, *extra):
    out = os.path.join(cluster.dir, f"run-{scenario}-{seed}{''.join(extra)}")
    p = subprocess.run([driver_binary(), "run", scenario, "--dir", cluster.dir, "--duration", SECONDS, "--pace", PACE, "--seed", str(seed),
                        "--out", out, *extra], capture_output=True, text=True, timeout=float(SECONDS) + 400)
    print(p.stdout)
    assert p.returncode == 0, f"{scenario} seed {seed}:\n{p.stdout}\n{p.stderr}"
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["lost"] == [] and report["unexpected"] == []
    assert report["confirmed"] > 0 and report["delivered"] > 0
    # `check` on the recorded history gives the same answer.
    again = subprocess.run([driver_binary(), "check", os.path.join(out, "history.jsonl"), "--json"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and json.loads(again.stdout) == report
    return report


@pytest.fixture(scope="module")
def three():
    c = Cluster(3, name="test_failure_scenarios_3")
    yield c
    c.down()


@pytest.fixture(scope="module")
def five():
    c = Cluster(5, name="test_failure_scenarios_5")
    yield c
    c.down()


def ensure_faketime():
    """clock-jump runs a node under Debian's libfaketime: installed here if missing."""
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "faketime"], check=True, env=env, capture_output=True)


@pytest.mark.parametrize("scenario", ["kill-leader", "kill-random", "pause-leader", "partition-halves", "partition-single", "link-delay", "link-drop",
                                      "rolling-restart", "packet-loss", "damaged-tail", "disk-full", "clock-jump"])
@pytest.mark.parametrize("seed", SEEDS)
def test_scenario_on_three_nodes(three, scenario, seed):
    if scenario == "clock-jump":
        ensure_faketime()
    if scenario == "disk-full" and os.geteuid() != 0:
        pytest.skip("disk-full mounts a tmpfs: root only")
    report = run(three, scenario, seed)
    assert report["faults"], "the schedule broke something"


@pytest.mark.parametrize("seed", SEEDS)
def test_dead_lettering_at_least_once_under_partitions(three, seed):
    """Publishers confirm into a source queue whose consumers reject everything; the source
    dead-letters at-least-once into the checked queue: every confirmed message comes out there."""
    report = run(three, "partition-halves", seed, "--workload", "dead-letter", "--queue", "jepsen-dlx")
    assert report["faults"]


@pytest.mark.parametrize("seed", SEEDS)
def test_federation_link_cuts_with_the_upstream_leader_killed(three, seed):
    """Publishers confirm into a quorum queue in "/"; consumers read a queue in another vhost
    federated from it (on-confirm); the upstream queue's leader is killed and the link's
    connection closed: every confirmed message comes out downstream."""
    report = run(three, "federation-cut", seed, "--workload", "federation", "--queue", "jepsen-fed")
    assert report["faults"]


@pytest.mark.parametrize("scenario", ["partition-majorities-ring", "partition-bridge"])
@pytest.mark.parametrize("seed", SEEDS)
def test_scenario_on_five_nodes(five, scenario, seed):
    report = run(five, scenario, seed)
    assert report["faults"]


def test_the_checker_names_a_lost_an_unexpected_and_a_duplicated_message(tmp_path):
    events = [
        {"t": 0.0, "op": "send", "id": 1}, {"t": 0.1, "op": "ok", "id": 1},
        {"t": 0.2, "op": "send", "id": 2}, {"t": 0.3, "op": "ok", "id": 2}, {"t": 0.4, "op": "recv", "id": 2},
        {"t": 0.5, "op": "recv", "id": 2, "redelivered": True}, {"t": 0.6, "op": "recv", "id": 77},
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    p = subprocess.run([driver_binary(), "check", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout
    assert "lost (confirmed, never delivered): 1 1" in p.stdout
    assert "unexpected (delivered, never sent): 1 77" in p.stdout
    assert "duplicated: 1 messages (1 extra deliveries)" in p.stdout
    path.write_text("not json\n")
    p = subprocess.run([driver_binary(), "check", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "not a history event" in p.stderr


def test_a_publish_in_flight_to_a_paused_leader_is_answered_once_another_leads(three):
    """Found by pause-leader: a publish passed on to the queue's leader when that node froze
    (SIGSTOP keeps its sockets open) waited for the queue link's 10 s timeout, though another
    member led within about a second. Now it is nacked as soon as the new leader is recorded,
    and the next publish is confirmed."""
    import time
    import pika
    from cluster import eventually
    c = three
    subprocess.run([driver_binary(), "wait-healthy", "--dir", c.dir, "--timeout", "60"], check=True, capture_output=True)
    conn = c.connect(1)
    conn.channel().queue_declare("paused.q", durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()

    def leader():
        for i in (1, 2, 3):
            s, b, _ = c.api(i).call("GET", "/api/queues/%2F/paused.q")
            if s == 200 and b.get("leader"):
                return b["leader"]
        return None
    name = eventually(leader, timeout=30, what="paused.q's leader")
    target = next(i for i in (1, 2, 3) if c.node_name(i) == name)
    via = next(i for i in (1, 2, 3) if i != target)
    pub = c.connect(via, heartbeat=0)
    ch = pub.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "paused.q", b"warm-up", pika.BasicProperties(delivery_mode=2))
    c.run("pause", str(target))
    try:
        t0 = time.time()
        try:
            ch.basic_publish("", "paused.q", b"in flight", pika.BasicProperties(delivery_mode=2))
            answered = "confirmed"
        except pika.exceptions.NackError:
            answered = "nacked"
        waited = time.time() - t0
        # What it takes now: 1 s of silence before the others act, the election, the new
        # leader recorded in the metadata (another election first if the paused node led the
        # metadata too), then 2 s of grace for the old leader's answer, checked every second:
        # 4-7 s (5.4 s seen in CI). Before the fix it was the queue link's 10 s timeout and more.
        assert waited < 8.5, f"the publish in flight was {answered} after {waited:.1f} s"
        ch.basic_publish("", "paused.q", b"after", pika.BasicProperties(delivery_mode=2))
    finally:
        c.run("resume", str(target))
    pub.close()


def test_the_workload_runs_against_any_cluster_by_uri_rabbitmq_too(tmp_path):
    """`run none --uris ...`: the same workload and checker against a cluster the driver did
    not start (here a scratch RabbitMQ 3.10); the scenario must be `none` there."""
    from brokers import RabbitMQ
    rabbit = RabbitMQ(plugins=())
    try:
        uri = f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2f"
        out = str(tmp_path / "run")
        p = subprocess.run([driver_binary(), "run", "none", "--uris", uri, "--duration", "4", "--out", out],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        assert report["confirmed"] > 50 and report["lost"] == [] and report["unexpected"] == []
        refused = subprocess.run([driver_binary(), "run", "kill-leader", "--uris", uri], capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and "scenario is `none`" in refused.stderr
    finally:
        rabbit.stop()
