"""Real clients from Debian that found differences from RabbitMQ: the Go client
(golang-github-streadway-amqp-dev, what amqp091-go grew from) and php-amqp. Their programs are in
Tests/clients; the expected lines are what each prints against RabbitMQ 3.10.8. The packages are
installed with apt-get when missing."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import ROOT
from debian import ensure_packages

CLIENTS = os.path.join(ROOT, "Tests", "clients")
GOPATH = "/usr/share/gocode"


def go_client():
    ensure_packages("golang-go", "golang-github-streadway-amqp-dev",
                    present=lambda: shutil.which("go") and os.path.isdir(f"{GOPATH}/src/github.com/streadway/amqp"))
    out = os.path.join(tempfile.mkdtemp(prefix="warren-go-"), "streadway_compat")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOCACHE=os.path.join(tempfile.gettempdir(), "warren-gocache"))
    subprocess.run(["go", "build", "-o", out, os.path.join(CLIENTS, "streadway_compat.go")], check=True, env=env, timeout=300)
    return out


def php_has_amqp():
    if not shutil.which("php"):
        return False
    return "amqp" in subprocess.run(["php", "-m"], capture_output=True, text=True).stdout.split()


def test_streadway_flow_close_crossing_confirm_and_cancel(warren):
    binary = go_client()
    out = subprocess.run([binary, f"amqp://guest:guest@{warren.host}:{warren.port}/"], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == [
        'flow(false): Exception (540) Reason: "NOT_IMPLEMENTED - active=false"',
        "issue43 second channel: <nil>",
        "confirm: 1 true",
        "cancel: test.cancel",
    ], out.stdout + out.stderr


def test_php_amqp_return_then_lone_ack(warren):
    ensure_packages("php-cli", "php-amqp", present=php_has_amqp)
    out = subprocess.run(["php", os.path.join(CLIENTS, "php_amqp_confirms.php"), warren.host, str(warren.port)],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["return 312 NO_ROUTE unroutable", "ack 1 single"], out.stdout + out.stderr
    assert lines[-1] == "acked up to 4", out.stdout + out.stderr
