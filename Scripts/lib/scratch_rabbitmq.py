"""A scratch RabbitMQ node (Debian's rabbitmq-server) for side-by-side benchmarks and tests:
its own directory, loopback ports, stopped by PID. Used by Scripts/bench and Tests/python."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def log(*a):
    import sys
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def amqp_ready(port, timeout=60):
    """True once the port answers the AMQP protocol header with connection.start."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                if s.recv(7)[:1] == b"\x01":
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def install():
    """Debian's rabbitmq-server, without letting the package start its own system node on 5672
    (a policy-rc.d that refuses service starts, as container images have, for the install)."""
    log("installing rabbitmq-server with apt-get ...")
    policy = "/usr/sbin/policy-rc.d"
    added_policy = not os.path.exists(policy)
    if added_policy:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "rabbitmq-server"], check=True, env=env)
    finally:
        if added_policy:
            os.remove(policy)


class RabbitMQ:
    name = "rabbitmq"

    @staticmethod
    def available():
        return shutil.which("rabbitmq-server") is not None

    def rabbitmqctl(self, *args, check=True):
        """Runs rabbitmqctl against this node; returns its output."""
        out = subprocess.run(["rabbitmqctl", "-n", self.nodename, "-q", *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def __init__(self, plugins=("rabbitmq_management",), tls=None, extra_config="", cookie=None):
        """`tls`: (certfile, keyfile, cafile) adds an AMQPS listener on `self.tls_port` (client
        certificates verified when given, not required). `cookie`: the Erlang cookie, the same
        for nodes that are to form a cluster (`join`)."""
        if not shutil.which("rabbitmq-server"):
            install()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="rabbit-bench-")
        self.nodename = f"bench{self.port}@localhost"
        for d in ("mnesia", "log"):
            os.makedirs(os.path.join(self.dir, d))
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[" + ",".join(plugins) + "].\n")
        self.management_port = free_port()
        self.prometheus_port = free_port()
        self.tls_port = free_port() if tls else None
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write(f"management.tcp.port = {self.management_port}\nmanagement.tcp.ip = 127.0.0.1\n"
                    f"prometheus.tcp.port = {self.prometheus_port}\nprometheus.tcp.ip = 127.0.0.1\n")
            if tls:
                # RabbitMQ reads the files as its own user: copies it can read.
                names = []
                for path, name in zip(tls, ("cert.pem", "key.pem", "ca.pem")):
                    shutil.copy(path, os.path.join(self.dir, name))
                    names.append(os.path.join(self.dir, name))
                f.write(f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\nssl_options.certfile = {names[0]}\n"
                        f"ssl_options.keyfile = {names[1]}\nssl_options.cacertfile = {names[2]}\n"
                        "ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n")
            f.write(extra_config)
        if cookie:
            path = os.path.join(self.dir, ".erlang.cookie")
            with open(path, "w") as f:
                f.write(cookie)
            os.chmod(path, 0o400)
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", self.dir], check=False)
        self.env = dict(os.environ,
                        RABBITMQ_NODENAME=self.nodename, RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                        RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(free_port()),
                        RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"), RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
                        RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq"),
                        RABBITMQ_FEATURE_FLAGS_FILE=os.path.join(self.dir, "feature_flags"), HOME=self.dir)
        self.started_at = time.time()
        # Debian's wrapper starts the node with `su rabbitmq`, which resets the open-files soft
        # limit to 1024: too few for the 1000-connection scenario. Start it the same way, with the
        # soft limit raised to the hard one (the limit Warren runs with).
        self.proc = subprocess.Popen(
            ["su", "rabbitmq", "-s", "/bin/sh", "-c", "ulimit -n $(ulimit -Hn); cd /var/lib/rabbitmq; exec /usr/lib/rabbitmq/bin/rabbitmq-server"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not amqp_ready(self.port, 120):
            raise RuntimeError(f"rabbitmq did not start; logs in {self.dir}/log")
        self.start_seconds = time.time() - self.started_at
        self.pid = self._beam_pid()

    def _beam_pid(self):
        """The Erlang VM of this node: the beam.smp whose environment names our node (the name
        is not on its command line)."""
        want = f"RABBITMQ_NODENAME={self.nodename}".encode()
        for pid in subprocess.run(["pgrep", "beam.smp"], capture_output=True, text=True).stdout.split():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if want in f.read().split(b"\0"):
                        return int(pid)
            except OSError:
                continue
        raise RuntimeError("cannot find RabbitMQ's beam.smp process")

    def join(self, other):
        """Makes this node a member of `other`'s cluster (same cookie)."""
        self.rabbitmqctl("stop_app")
        self.rabbitmqctl("join_cluster", other.nodename)
        self.rabbitmqctl("start_app")
        if not amqp_ready(self.port, 120):
            raise RuntimeError(f"rabbitmq {self.nodename} did not come back after joining")

    def stop(self):
        subprocess.run(["rabbitmqctl", "-n", self.nodename, "stop"], env=self.env, capture_output=True, timeout=60)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


