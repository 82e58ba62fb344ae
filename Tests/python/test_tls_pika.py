"""AMQP over TLS with pika and openssl s_client: server TLS, mutual TLS with SASL EXTERNAL,
refused client certificates, protocol versions and ciphers, reload on SIGHUP, and the plain
listener switched off. The test PKI comes from Scripts/make-test-certs."""
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pika
import pytest

from conftest import ROOT, Node

PKI = tempfile.mkdtemp(prefix="warren-pki-")
subprocess.run([os.path.join(ROOT, "Scripts", "make-test-certs"), PKI], check=True, capture_output=True)


def pki(name):
    return os.path.join(PKI, name)


def tls_args(*extra):
    return ["--amqps-port", "0", "--tls-cert", pki("server.pem"), "--tls-key", pki("server.key"),
            "--tls-ca-cert", pki("ca.pem"), *extra]


def client_context(cert=None):
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))
    if cert:
        ctx.load_cert_chain(pki(f"{cert}.pem"), pki(f"{cert}.key"))
    return ctx


def params(node, cert=None, external=False, **kw):
    creds = pika.credentials.ExternalCredentials() if external else pika.PlainCredentials("guest", "guest")
    return pika.ConnectionParameters("127.0.0.1", node.amqps_port, credentials=creds,
                                     ssl_options=pika.SSLOptions(client_context(cert), "localhost"),
                                     connection_attempts=1, socket_timeout=5, **kw)


def round_trip(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"over tls")
    for _ in range(50):
        m, _, body = ch.basic_get(q, auto_ack=True)
        if m:
            return body
        time.sleep(0.02)
    return None


@pytest.fixture(scope="module")
def server_tls():
    node = Node("test_tls_pika-server", tls_args())
    yield node
    assert node.stop() == 0


@pytest.fixture(scope="module")
def mutual_tls():
    # Users: guest (password) and tlsuser (no password: only EXTERNAL can log in as it).
    defs = {"users": [{"name": "guest", "password": "guest", "tags": "administrator"},
                      {"name": "tlsuser", "password_hash": "", "tags": ""}],
            "vhosts": [{"name": "/"}],
            "permissions": [{"user": u, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
                            for u in ("guest", "tlsuser")]}
    path = os.path.join(PKI, "defs.json")
    with open(path, "w") as f:
        json.dump(defs, f)
    node = Node("test_tls_pika-mutual", tls_args("--tls-verify-peer", "on", "--tls-fail-if-no-peer-cert", "on",
                                                   "--tls-cert-login-from", "common_name", "--load-definitions", path))
    yield node
    assert node.stop() == 0


def test_pika_over_tls_with_server_verification(server_tls):
    conn = pika.BlockingConnection(params(server_tls))
    assert round_trip(conn) == b"over tls"
    conn.close()
    assert "AMQPS listener started" in server_tls.log_text()


def test_mutual_tls_logs_in_with_external_as_the_certificate_cn(mutual_tls):
    conn = pika.BlockingConnection(params(mutual_tls, cert="client", external=True))
    assert round_trip(conn) == b"over tls"
    conn.close()
    assert "TLS client certificate verified" in mutual_tls.log_text()
    assert "login=tlsuser" in mutual_tls.log_text()


def test_mutual_tls_still_allows_plain_login_with_a_certificate(mutual_tls):
    conn = pika.BlockingConnection(params(mutual_tls, cert="client"))
    assert round_trip(conn) == b"over tls"
    conn.close()


@pytest.mark.parametrize("cert", [None, "expired", "selfsigned", "other"])
def test_refused_client_certificates(mutual_tls, cert):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params(mutual_tls, cert=cert, external=cert is not None))
    # And the node keeps serving others.
    conn = pika.BlockingConnection(params(mutual_tls, cert="client", external=True))
    conn.close()


def test_refused_handshakes_are_logged(mutual_tls):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params(mutual_tls, cert="expired", external=True))
    time.sleep(0.2)
    assert "TLS handshake failed" in mutual_tls.log_text()


def test_external_without_a_matching_user_is_refused(server_tls):
    # Server-only TLS: no verified certificate, so EXTERNAL is not even offered.
    with pytest.raises((pika.exceptions.AuthenticationError, pika.exceptions.AMQPConnectionError)):
        pika.BlockingConnection(params(server_tls, cert="client", external=True))


def s_client(port, *args):
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", pki("ca.pem"), *args],
                         input=b"", capture_output=True, timeout=20)
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


def test_tls_1_1_and_older_are_refused(server_tls):
    for flag in ("-tls1_1", "-tls1"):
        out = s_client(server_tls.amqps_port, flag)
        assert "alert protocol version" in out or "no protocols available" in out, out[-500:]


def test_only_tls_1_2_and_1_3_with_aead_ciphers(server_tls):
    out12 = s_client(server_tls.amqps_port, "-tls1_2")
    assert "Protocol  : TLSv1.2" in out12 and "Verify return code: 0 (ok)" in out12
    cipher = [l.split(":", 1)[1].strip() for l in out12.splitlines() if l.strip().startswith("Cipher    :")][0]
    assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    out13 = s_client(server_tls.amqps_port, "-tls1_3")
    assert "TLSv1.3" in out13 and ("GCM" in out13 or "CHACHA20" in out13)
    # A non-AEAD suite is refused outright.
    refused = s_client(server_tls.amqps_port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256")
    assert "handshake failure" in refused or "no shared cipher" in refused or "Cipher is (NONE)" in refused, refused[-500:]


def test_sighup_reloads_the_certificate_without_dropping_connections():
    certdir = tempfile.mkdtemp(prefix="warren-reload-")
    cert, key = os.path.join(certdir, "server.pem"), os.path.join(certdir, "server.key")
    for src, dst in (("server.pem", cert), ("server.key", key)):
        with open(pki(src), "rb") as a, open(dst, "wb") as b:
            b.write(a.read())
    node = Node("test_tls_pika-reload", ["--amqps-port", "0", "--tls-cert", cert, "--tls-key", key])
    try:
        def served_serial():
            ctx = client_context()
            with socket.create_connection(("127.0.0.1", node.amqps_port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    return t.getpeercert()["serialNumber"]
        live = pika.BlockingConnection(params(node))
        before = served_serial()
        for src, dst in (("server2.pem", cert), ("server2.key", key)):
            with open(pki(src), "rb") as a, open(dst, "wb") as b:
                b.write(a.read())
        node.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "TLS certificate and key reloaded" not in node.log_text() and time.time() < deadline:
            time.sleep(0.05)
        after = served_serial()
        assert before != after, "new connections get the new certificate"
        assert round_trip(live) == b"over tls", "a connection from before the reload keeps working"
        live.close()
    finally:
        assert node.stop() == 0


def test_plain_listener_can_be_turned_off():
    node = Node("test_tls_pika-tlsonly", tls_args("--plain-listener", "off"))
    try:
        assert node.port is None and node.amqps_port
        assert "AMQP listener started" not in node.log_text()
        conn = pika.BlockingConnection(params(node))
        conn.close()
    finally:
        assert node.stop() == 0


@pytest.mark.parametrize("login_from,user", [
    ("distinguished_name", "CN=tlsuser,O=Warren Tests"),
    ("subject_alternative_name:dns", "tlsuser.example"),
    ("subject_alternative_name:email", "tlsuser@example.com"),
])
def test_external_user_from_the_dn_or_a_san(login_from, user):
    defs = {"users": [{"name": user, "password_hash": "", "tags": ""}], "vhosts": [{"name": "/"}],
            "permissions": [{"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]}
    path = os.path.join(tempfile.mkdtemp(prefix="warren-defs-"), "defs.json")
    with open(path, "w") as f:
        json.dump(defs, f)
    node = Node("test_tls_pika-login-" + login_from.replace(":", "-"),
                tls_args("--tls-verify-peer", "on", "--tls-cert-login-from", login_from, "--load-definitions", path))
    try:
        conn = pika.BlockingConnection(params(node, cert="client", external=True))
        assert round_trip(conn) == b"over tls"
        conn.close()
        assert f"login={user}" in node.log_text()
    finally:
        assert node.stop() == 0


def test_warren_perf_over_amqps_loses_nothing(server_tls):
    """AMQPClient's TLS (the load generator, later federation links) against the AMQPS listener."""
    from conftest import warren_binary
    perf = os.path.join(os.path.dirname(warren_binary()), "warren-perf")
    out = subprocess.run([perf, "--uri", f"amqps://guest:guest@localhost:{server_tls.amqps_port}/", "--tls-ca", pki("ca.pem"),
                          "--duration", "1", "--quiet", "--size", "64", "--verify", "--confirm", "100"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["consumed"] > 0 and result["lost"] == 0 and result["duplicated"] == 0, result


def test_external_for_a_user_that_does_not_exist_is_refused_with_403():
    """A verified certificate naming nobody the node knows: ACCESS_REFUSED, logged, node serving."""
    node = Node("test_tls_pika-nouser", tls_args("--tls-verify-peer", "on", "--tls-cert-login-from", "common_name"))
    try:
        with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
            pika.BlockingConnection(params(node, cert="client", external=True))
        assert "(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL." in str(e.value)
        assert "EXTERNAL login refused: user 'tlsuser'" in node.log_text()
        conn = pika.BlockingConnection(params(node))  # guest over PLAIN still gets in
        assert round_trip(conn) == b"over tls"
        conn.close()
    finally:
        assert node.stop() == 0
