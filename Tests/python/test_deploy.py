"""Deployment: a 3-node cluster started with the systemd unit's own command lines and the
cluster config example (Deploy/systemd/), its readiness wait, and the `warren health` verbs
probes and operators call (alive, ready, quorum-critical)."""
import configparser
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time

import pika
import pytest

from cluster import eventually
from conftest import ARTIFACTS, ROOT, warren_binary

UNIT = os.path.join(ROOT, "Deploy", "systemd", "warren.service")
NODE_CONFIG = os.path.join(ROOT, "Deploy", "systemd", "warren-cluster-node.conf.example")


def free_port():
    """A port nobody listens on, below the kernel's range for outgoing connections (the nodes
    bind it a moment later)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(200):
        port = random.randint(10000, low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def unit():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    with open(UNIT) as f:
        parser.read_string(f.read())
    return parser["Service"]


def health(verb, node, check=True, binary=None):
    p = subprocess.run([binary or warren_binary(), "health", verb, "--config", node["config"]], capture_output=True, text=True, timeout=30)
    if check:
        assert p.returncode == 0, (verb, p.stdout, p.stderr)
    return p


class UnitCluster:
    """Three nodes, each run by the unit's ExecStart with its own copy of the example config
    (hosts become 127.0.0.1 with ports of their own)."""

    def __init__(self, n=3, binary=None):
        self.binary = binary or warren_binary()
        self.dir = tempfile.mkdtemp(prefix="warren-unit-")
        self.service = unit()
        secret = os.path.join(self.dir, "cluster-secret")
        with open(secret, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(secret, 0o600)
        cluster_ports = [free_port() for _ in range(n)]
        with open(NODE_CONFIG) as f:
            template = f.read()
        self.nodes = []
        for i in range(1, n + 1):
            node = {"name": f"warren@host{i}", "amqp": free_port(), "management": free_port(), "data": os.path.join(self.dir, f"data{i}")}
            text = template
            for j in range(1, n + 1):
                text = text.replace(f"host{j}:25672", f"127.0.0.1:{cluster_ports[j - 1]}")
            text = text.replace("warren@host1", node["name"])
            # This node's own address and ports, as the other hosts' files would differ.
            text = re.sub(r"^cluster_address = .*$", f"cluster_address = 127.0.0.1:{cluster_ports[i - 1]}", text, flags=re.M)
            text = re.sub(r"^cluster_port = .*$", f"cluster_port = {cluster_ports[i - 1]}", text, flags=re.M)
            text = re.sub(r"^data_dir = .*$", f"data_dir = {node['data']}", text, flags=re.M)
            text = re.sub(r"^bind = .*$", "bind = 127.0.0.1", text, flags=re.M)
            text = re.sub(r"^amqp_port = .*$", f"amqp_port = {node['amqp']}", text, flags=re.M)
            text = re.sub(r"^management_port = .*$", f"management_port = {node['management']}", text, flags=re.M)
            text = re.sub(r"^prometheus_port = .*$", f"prometheus_port = {free_port()}", text, flags=re.M)
            text = text.replace("/etc/warren/cluster-secret", secret)
            node["config"] = os.path.join(self.dir, f"warren{i}.conf")
            with open(node["config"], "w") as f:
                f.write(text)
            self.nodes.append(node)
        if os.geteuid() == 0:
            # What the unit's install steps give the warren user: its data, its secret (0600).
            os.chmod(self.dir, 0o755)
            os.chown(secret, self.NOBODY, self.NOBODY)
            for node in self.nodes:
                os.makedirs(node["data"])
                os.chown(node["data"], self.NOBODY, self.NOBODY)
                os.chmod(node["config"], 0o644)
        for node in self.nodes:
            self.start(node)

    # The unit runs the node as an unprivileged user (User=warren): so do the tests, as nobody,
    # when they can switch users. (Regression: every socket asked for SO_DEBUG instead of
    # TCP_NODELAY, which only root may set: a node not run as root reset every connection.)
    NOBODY = 65534

    def command(self, line, node):
        """A unit's command line, with the installed paths replaced by the ones under test."""
        line = line.replace("/usr/local/bin/warren", self.binary).replace("/etc/warren/warren.conf", node["config"])
        argv = shlex.split(line)
        if os.geteuid() == 0:
            argv = ["setpriv", f"--reuid={self.NOBODY}", f"--regid={self.NOBODY}", "--clear-groups", *argv]
        return argv

    def start(self, node):
        os.makedirs(ARTIFACTS, exist_ok=True)
        node["log"] = os.path.join(ARTIFACTS, f"unit-{node['name'].replace('@', '-')}.log")
        node["proc"] = subprocess.Popen(self.command(self.service["ExecStart"], node), stdout=open(node["log"], "a"), stderr=subprocess.STDOUT)

    def wait_ready(self, node, timeout=120):
        """The unit's ExecStartPost: polls `warren health ready` (bounded) until it passes."""
        p = subprocess.run(self.command(self.service["ExecStartPost"], node), capture_output=True, text=True, timeout=timeout)
        assert p.returncode == 0, (p.stdout, p.stderr, open(node["log"]).read()[-3000:])

    def stop(self, node):
        """KillSignal (SIGTERM); the node must be gone well within TimeoutStopSec."""
        node["proc"].send_signal(getattr(signal, self.service["KillSignal"]))
        return node["proc"].wait(timeout=int(self.service["TimeoutStopSec"]))

    def down(self):
        for node in self.nodes:
            if node["proc"].poll() is None:
                node["proc"].kill()
                node["proc"].wait()
        subprocess.run(["rm", "-rf", self.dir])


@pytest.fixture(scope="module")
def unit_cluster():
    c = UnitCluster()
    yield c
    c.down()


def test_the_unit_and_config_start_a_cluster_that_serves_and_stops_cleanly(unit_cluster):
    c = unit_cluster
    for node in c.nodes:
        c.wait_ready(node)
    out = health("ready", c.nodes[2]).stdout
    assert "3 node(s) running" in out, out
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", c.nodes[0]["amqp"]))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("unit.q", durable=True, arguments={"x-queue-type": "quorum"})
    for k in range(20):
        ch.basic_publish("", "unit.q", str(k).encode(), pika.BasicProperties(delivery_mode=2))
    conn.close()
    far = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", c.nodes[2]["amqp"]))
    fch = far.channel()
    got = []

    def all_there():
        m, _, body = fch.basic_get("unit.q", auto_ack=True)
        if m:
            got.append(body)
        return len(got) == 20
    eventually(all_there, timeout=30, interval=0.01, what="the 20 messages on node 3")
    far.close()
    assert sorted(int(b) for b in got) == list(range(20))


def test_health_verbs_alive_ready_and_quorum_critical(unit_cluster):
    c = unit_cluster
    n1, n2, n3 = c.nodes
    for node in c.nodes:
        c.wait_ready(node)
        assert "answers AMQP" in health("alive", node).stdout
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", n1["amqp"]))
    conn.channel().queue_declare("critical.q", durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()
    assert health("quorum-critical", n1).stdout.startswith("ok")
    # A node stopped as systemd stops it: exit 0 within TimeoutStopSec. Then each of the other
    # two is critical: stopping it too leaves the queue and the metadata one member of three.
    assert c.stop(n3) == 0
    p = eventually(lambda: (lambda r: r if r.returncode == 1 else None)(health("quorum-critical", n1, check=False)),
                   timeout=20, what="node 1 to be quorum critical")
    assert "queue 'critical.q' in vhost '/'" in p.stdout and "metadata" in p.stdout, p.stdout
    dead = health("alive", n3, check=False)
    assert dead.returncode == 1 and dead.stdout.startswith("not alive"), dead.stdout
    # Started again by its unit's command line: ready again, nobody critical.
    c.start(n3)
    c.wait_ready(n3)
    eventually(lambda: health("quorum-critical", n1, check=False).returncode == 0, timeout=30, what="node 1 no longer critical")


K8S = os.path.join(ROOT, "Deploy", "kubernetes")


@pytest.mark.parametrize("version", ["1.28.0", "1.33.0"])
def test_the_kubernetes_manifests_validate_against_the_schemas(version):
    files = sorted(os.path.join(K8S, f) for f in os.listdir(K8S) if f.endswith(".yaml") and f != "kustomization.yaml")
    tool = os.path.join(ROOT, ".venv", "bin", "kubernetes-validate")
    p = subprocess.run([tool, "--strict", "-k", version, *files], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("passed") == 6, p.stdout  # secret, config, two services, PDB, StatefulSet


def test_the_kubernetes_manifests_say_what_the_deployment_needs():
    import yaml  # kubernetes-validate's dependency
    docs = {}
    for f in os.listdir(K8S):
        if f == "kustomization.yaml":
            continue
        with open(os.path.join(K8S, f)) as fh:
            for d in yaml.safe_load_all(fh):
                docs[(d["kind"], d["metadata"]["name"])] = d
    sts = docs[("StatefulSet", "warren")]["spec"]
    assert sts["podManagementPolicy"] == "Parallel" and sts["serviceName"] == "warren-headless"
    headless = docs[("Service", "warren-headless")]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert docs[("PodDisruptionBudget", "warren")]["spec"]["maxUnavailable"] == 1
    c = sts["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["exec"]["command"] == ["warren", "health", "ready"]
    assert c["livenessProbe"]["exec"]["command"] == ["warren", "health", "alive"]
    assert sts["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    # The ConfigMap's warren.conf is a config the node accepts, with the pod's environment:
    # pod 0 alone (no other pod's name resolves here) founds, and it serves. (Discovery among
    # several pods is tested in process with a fake resolver: DiscoveryInProcessTests.)
    conf = docs[("ConfigMap", "warren-config")]["data"]["warren.conf"]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert env["WARREN_CLUSTER_ADDRESS"] == "$(POD_NAME).warren-headless:25672"
    assert re.search(r"^cluster_discovery = dns:warren-headless$", conf, re.M)
    assert env["WARREN_NODE_NAME"] == "warren@$(POD_NAME).warren-headless"
    d = tempfile.mkdtemp(prefix="warren-k8s-")
    try:
        secret = os.path.join(d, "cluster-secret")
        with open(secret, "w") as f:
            f.write("s3cret\n")
        amqp, mgmt = free_port(), free_port()
        conf = (conf.replace("/var/lib/warren", os.path.join(d, "data")).replace("/etc/warren-secret/cluster-secret", secret)
                .replace("bind = 0.0.0.0", "bind = 127.0.0.1").replace("amqp_port = 5672", f"amqp_port = {amqp}")
                .replace("management_port = 15672", f"management_port = {mgmt}").replace("prometheus_port = 15692", f"prometheus_port = {free_port()}")
                .replace("cluster_port = 25672", f"cluster_port = {free_port()}"))
        path = os.path.join(d, "warren.conf")
        with open(path, "w") as f:
            f.write(conf)
        node_env = dict(os.environ, WARREN_CONFIG=path, WARREN_NODE_NAME=env["WARREN_NODE_NAME"].replace("$(POD_NAME)", "warren-0"),
                        WARREN_CLUSTER_ADDRESS="warren-0.warren-headless:25672")
        log = open(os.path.join(d, "log"), "w")
        proc = subprocess.Popen([warren_binary(), *c["args"][:1], "--config", path], env=node_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            probe = ["--config", path]
            eventually(lambda: subprocess.run([warren_binary(), "health", "ready", *probe], capture_output=True).returncode == 0,
                       timeout=60, what="pod 0 ready")
            text = open(os.path.join(d, "log")).read()
            assert "founded a new cluster" in text, text[-2000:]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=sts["template"]["spec"]["terminationGracePeriodSeconds"]) == 0
    finally:
        subprocess.run(["rm", "-rf", d])
