"""The release: the static binaries (Swift runtime linked in) and their tarball, a 3-node cluster
started from the unpacked tarball with the systemd unit's command lines and config, and the
container image built from Deploy/container/Containerfile with buildah and run.

Slow (a static release build: about 10 minutes the first time on a 2-core machine), so it runs
only when asked:

    WARREN_RELEASE_TEST=1 .venv/bin/python -m pytest Tests/python/test_release.py

(WARREN_RELEASE_DIST=dist reuses what Scripts/release-tarball made.) Results: docs/deploy.md.
"""
import glob
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile

import pika
import pytest

from cluster import eventually
from conftest import ROOT
from test_deploy import UnitCluster, free_port, health

pytestmark = pytest.mark.skipif(not os.environ.get("WARREN_RELEASE_TEST"), reason="slow: WARREN_RELEASE_TEST=1 runs it")


@pytest.fixture(scope="module")
def dist():
    if not os.environ.get("WARREN_RELEASE_DIST"):
        subprocess.run([os.path.join(ROOT, "Scripts", "release-tarball")], cwd=ROOT, check=True, timeout=3600)
    d = os.path.join(ROOT, os.environ.get("WARREN_RELEASE_DIST", "dist"))
    tarballs = sorted(glob.glob(os.path.join(d, "warren-*-linux-*.tar.gz")), key=os.path.getmtime)
    assert tarballs, f"no tarball in {d}"
    unpacked = tempfile.mkdtemp(prefix="warren-release-")
    os.chmod(unpacked, 0o755)  # the nodes run as an unprivileged user (test_deploy.UnitCluster)
    with tarfile.open(tarballs[-1]) as t:
        t.extractall(unpacked, filter="tar")
    top = os.path.join(unpacked, os.listdir(unpacked)[0])
    yield {"dir": d, "top": top, "rootfs": os.path.join(d, "rootfs")}
    shutil.rmtree(unpacked, ignore_errors=True)


def test_the_binaries_carry_the_swift_runtime_and_the_tarball_what_a_host_needs(dist):
    top = dist["top"]
    for p in ("warren", "warrenctl", "warren-cluster"):
        linked = subprocess.run(["ldd", os.path.join(top, "bin", p)], capture_output=True, text=True).stdout
        assert "libswift" not in linked and "libFoundation" not in linked and "libdispatch" not in linked, linked
    for f in ("bin/warren_WarrenManagement.resources", "etc/warren.conf.example", "etc/warren-cluster-node.conf.example",
              "systemd/warren.service", "kubernetes/statefulset.yaml", "container/Containerfile", "deploy.md"):
        assert os.path.exists(os.path.join(top, f)), f


def test_a_cluster_from_the_unpacked_tarball_with_the_units_command_lines(dist):
    binary = os.path.join(dist["top"], "bin", "warren")
    c = UnitCluster(binary=binary)
    try:
        for node in c.nodes:
            c.wait_ready(node)
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", c.nodes[0]["amqp"]))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("release.q", durable=True, arguments={"x-queue-type": "quorum"})
        ch.basic_publish("", "release.q", b"from the static build", pika.BasicProperties(delivery_mode=2))
        conn.close()
        far = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", c.nodes[2]["amqp"]))
        got = eventually(lambda: far.channel().basic_get("release.q", auto_ack=True)[2], timeout=30, what="the message on node 3")
        far.close()
        assert got == b"from the static build"
        assert "3 node(s) running" in health("ready", c.nodes[1], binary=binary).stdout
        # The web UI's files, beside the binary, are served.
        import urllib.request
        page = urllib.request.urlopen(f"http://127.0.0.1:{c.nodes[0]['management']}/", timeout=10).read()
        assert b"<html" in page.lower()
        for node in c.nodes:
            assert c.stop(node) == 0
    finally:
        c.down()


def ensure_buildah():
    if shutil.which("buildah") is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "buildah"], check=True, env=env)


def test_the_image_builds_from_the_containerfile_and_serves(dist):
    ensure_buildah()
    store = ["--storage-driver", "vfs"]
    tag = "localhost/warren:release-test"
    subprocess.run(["buildah", *store, "build", "--format", "docker", "-f", os.path.join(ROOT, "Deploy", "container", "Containerfile"),
                    "-t", tag, dist["rootfs"]], check=True, capture_output=True, timeout=600)
    inspect = subprocess.run(["buildah", *store, "inspect", "--type", "image", "--format",
                              "{{.Docker.Config.User}} {{.Docker.Config.Healthcheck.Test}} {{.Docker.Config.ExposedPorts}}", tag],
                             capture_output=True, text=True, check=True).stdout
    assert inspect.startswith("999:999") and "health alive" in inspect and "5672/tcp" in inspect, inspect
    container = subprocess.run(["buildah", *store, "from", tag], capture_output=True, text=True, check=True).stdout.strip()
    amqp, mgmt = free_port(), free_port()
    env = ["--env", f"WARREN_AMQP_PORT={amqp}", "--env", f"WARREN_MANAGEMENT_PORT={mgmt}", "--env", f"WARREN_PROMETHEUS_PORT={free_port()}",
           "--env", f"WARREN_CLUSTER_PORT={free_port()}", "--env", "WARREN_BIND=127.0.0.1"]
    # chroot isolation: the host's network (the machine has no other runtime); the image's
    # user, entrypoint and command.
    proc = subprocess.Popen(["buildah", *store, "run", "--isolation", "chroot", *env, container, "--", "/usr/local/bin/warren", "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def alive():
            p = subprocess.run(["buildah", *store, "run", "--isolation", "chroot", *env, container, "--",
                                "/usr/local/bin/warren", "health", "alive"], capture_output=True, text=True, timeout=30)
            return p.returncode == 0
        eventually(alive, timeout=60, interval=0.5, what="the node in the image to answer AMQP")
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp))
        ch = conn.channel()
        ch.queue_declare("image.q")
        ch.basic_publish("", "image.q", b"hello from the image")
        assert eventually(lambda: ch.basic_get("image.q", auto_ack=True)[2], timeout=10) == b"hello from the image"
        conn.close()
    finally:
        # The node is the image's process, a child of buildah: stopped by its own pid.
        for pid in subprocess.run(["pgrep", "-x", "-f", "/usr/local/bin/warren serve"], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["buildah", *store, "rm", container], capture_output=True)
        subprocess.run(["buildah", *store, "rmi", tag], capture_output=True)
