"""warrenctl against a real node: the list verbs print what rabbitmqctl prints for the same state
(captured from RabbitMQ 3.10 with the management fixtures), the admin verbs change what AMQP
clients see, and failures have clear messages and exit codes."""
import json
import os
import re
import subprocess

import pika
import pytest

import management_scenario as sc
from conftest import Node, warren_binary
from test_management_api import FIXTURE

WARRENCTL = os.path.join(os.path.dirname(warren_binary()), "warrenctl")

# Rows RabbitMQ has and Warren deliberately does not (docs/cli.md): the tracing exchange.
ONLY_IN_RABBITMQ = {"list_exchanges": {"amq.rabbitmq.trace\ttopic"}}


@pytest.fixture(scope="module")
def node():
    n = Node("test_warrenctl")
    api = sc.API(n.management_port)
    conn = sc.build_state(api, n.port)
    name = next(c["name"] for c in api.get("/api/connections")[1] if c.get("user_provided_name") == "scenario-consumer")
    sc.record(api, api.get("/api/overview")[1]["node"], name)  # the same requests as at capture time
    n.scenario_connection = conn
    yield n
    conn.close()
    n.stop()


def ctl(node, *args, check=True, user=None):
    cmd = [WARRENCTL, args[0], "--port", str(node.management_port), *args[1:]]
    if user:
        cmd += ["--username", user[0], "--password", user[1]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, f"{cmd}: {out.returncode} {out.stdout} {out.stderr}"
    return out


@pytest.fixture(scope="module")
def rabbitmqctl():
    with open(FIXTURE) as f:
        return json.load(f)["rabbitmqctl"]


@pytest.mark.parametrize("verb,args", [
    ("list_queues name messages_ready messages_unacknowledged", ["list_queues", "-p", "shop", "name", "messages_ready", "messages_unacknowledged"]),
    ("list_queues", ["list_queues", "-p", "shop"]),
    ("list_exchanges", ["list_exchanges", "-p", "shop"]),
    ("list_bindings", ["list_bindings", "-p", "shop"]),
    ("list_users", ["list_users"]),
    ("list_vhosts", ["list_vhosts"]),
    ("list_permissions", ["list_permissions", "-p", "shop"]),
])
def test_list_verbs_print_what_rabbitmqctl_prints(node, rabbitmqctl, verb, args):
    want = rabbitmqctl[verb].strip("\n").split("\n")
    got = ctl(node, *args, "-q").stdout.strip("\n").split("\n")
    assert got[0] == want[0], "header"
    missing = set(want[1:]) - set(got[1:]) - ONLY_IN_RABBITMQ.get(verb, set())
    extra = set(got[1:]) - set(want[1:])
    assert not missing and not extra, f"missing {missing}, extra {extra}"


def test_json_formatter_matches_rabbitmqctl(node, rabbitmqctl):
    want = json.loads(rabbitmqctl["list_queues --formatter json"])
    got_text = ctl(node, "list_queues", "-p", "shop", "-q", "--formatter", "json", "name", "messages").stdout
    got = json.loads(got_text)
    assert sorted(got, key=lambda r: r["name"]) == sorted(want, key=lambda r: r["name"])
    assert got_text.startswith("[\n{") and got_text.rstrip().endswith("}\n]")


def test_without_quiet_it_says_what_it_lists(node):
    out = ctl(node, "list_queues", "-p", "shop").stdout
    assert out.startswith("Listing queues for vhost shop ...\nname\tmessages\n")


def test_connections_channels_consumers(node):
    conns = ctl(node, "list_connections", "-q", "user", "vhost", "user_provided_name", "state").stdout
    assert "guest\tshop\tscenario-consumer\trunning" in conns
    chans = ctl(node, "list_channels", "-q", "user", "consumer_count", "messages_unacknowledged", "prefetch_count").stdout
    assert "guest\t1\t2\t10" in chans
    cons = ctl(node, "list_consumers", "-p", "shop", "-q").stdout.split("\n")
    assert cons[0] == "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments"
    assert any(line.startswith("work\t") and "\tscenario-tag\ttrue\t10\ttrue\t[]" in line for line in cons)


def test_admin_verbs_change_what_clients_see(node):
    ctl(node, "add_vhost", "ctl-vhost")
    ctl(node, "add_user", "dave", "davepw")
    ctl(node, "set_permissions", "-p", "ctl-vhost", "dave", ".*", ".*", ".*")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, "ctl-vhost", pika.PlainCredentials("dave", "davepw")))
    ch = conn.channel()
    ch.queue_declare("ctl-q")
    ch.basic_publish("", "ctl-q", b"x")
    conn.close()
    assert "ctl-q\t1" in ctl(node, "list_queues", "-p", "ctl-vhost", "-q").stdout
    ctl(node, "purge_queue", "-p", "ctl-vhost", "ctl-q")
    assert "ctl-q\t0" in ctl(node, "list_queues", "-p", "ctl-vhost", "-q").stdout
    ctl(node, "set_user_tags", "dave", "monitoring")
    assert "dave\t[monitoring]" in ctl(node, "list_users", "-q").stdout
    ctl(node, "change_password", "dave", "newpw")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, "ctl-vhost", pika.PlainCredentials("dave", "davepw")))
    ctl(node, "set_policy", "-p", "ctl-vhost", "--apply-to", "queues", "cap", "^ctl", '{"max-length": 5}')
    assert 'ctl-vhost\tcap\t^ctl\tqueues\t{"max-length":5}\t0' in ctl(node, "list_policies", "-p", "ctl-vhost", "-q").stdout
    ctl(node, "clear_policy", "-p", "ctl-vhost", "cap")
    ctl(node, "delete_queue", "-p", "ctl-vhost", "ctl-q")
    assert "ctl-q" not in ctl(node, "list_queues", "-p", "ctl-vhost", "-q").stdout
    ctl(node, "clear_permissions", "-p", "ctl-vhost", "dave")
    ctl(node, "delete_user", "dave")
    ctl(node, "delete_vhost", "ctl-vhost")
    assert "ctl-vhost" not in ctl(node, "list_vhosts", "-q").stdout


def test_close_connection(node):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.port, client_properties={"connection_name": "ctl-close"}))
    rows = ctl(node, "list_connections", "-q", "name", "user_provided_name").stdout.split("\n")
    name = next(r.split("\t")[0] for r in rows if r.endswith("\tctl-close"))
    ctl(node, "close_connection", name, "go away")
    with pytest.raises(pika.exceptions.ConnectionClosed) as e:
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)
    assert e.value.reply_code == 320 and "go away" in e.value.reply_text


def test_export_and_import_definitions(node, tmp_path):
    path = str(tmp_path / "defs.json")
    ctl(node, "export_definitions", path)
    defs = json.load(open(path))
    assert any(q["name"] == "orders.eu" for q in defs["queues"])
    defs["queues"].append({"name": "ctl-imported", "vhost": "shop", "durable": True, "auto_delete": False, "arguments": {}})
    json.dump(defs, open(path, "w"))
    ctl(node, "import_definitions", path)
    assert "ctl-imported" in ctl(node, "list_queues", "-p", "shop", "-q").stdout


def test_status_and_cluster_status(node):
    out = ctl(node, "status").stdout
    assert "Node: warren@" in out and "Connections: " in out and "Listeners:" in out
    cs = ctl(node, "cluster_status").stdout
    assert "Running Nodes" in cs and "warren@" in cs


def test_errors_and_exit_codes(node):
    r = ctl(node, "list_queues", "-p", "nosuchvhost", check=False)
    assert r.returncode == 65 and r.stderr.startswith("Error: ")
    r = ctl(node, "list_queues", "nonsense_column", check=False)
    assert r.returncode == 64 and "Invalid queue info item(s): nonsense_column" in r.stderr
    r = ctl(node, "list_users", user=("guest", "wrong"), check=False)
    assert r.returncode == 77 and "Login failed" in r.stderr
    r = ctl(node, "list_users", user=("alice", "alicepw"), check=False)
    assert r.returncode == 77 and "Not administrator user" in r.stderr
    r = subprocess.run([WARRENCTL, "list_queues", "--port", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 69 and "cannot reach the management API" in r.stderr
    r = ctl(node, "add_user", "guest", "x", check=False)
    assert r.returncode == 65 and "already exists" in r.stderr
    r = subprocess.run([WARRENCTL, "delete_queue"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64


def test_runtime_and_global_parameters(node):
    """set_parameter / list_parameters / clear_parameter (vhost-scoped: federation upstreams and
    the like) and their global counterparts, as rabbitmqctl's: JSON values, one row per
    parameter, gone once cleared."""
    up = '{"uri": "amqp://u:secret@upstream.example:5672", "expires": 3600000}'
    ctl(node, "set_parameter", "-p", "shop", "federation-upstream", "up-1", up)
    out = ctl(node, "list_parameters", "-p", "shop", "-q", "--formatter", "json").stdout
    rows = json.loads(out)
    assert [(r["component"], r["name"]) for r in rows] == [("federation-upstream", "up-1")], rows
    assert rows[0]["value"]["expires"] == 3600000
    assert json.loads(ctl(node, "list_parameters", "-q", "--formatter", "json").stdout) == [], "vhost / has none"
    ctl(node, "clear_parameter", "-p", "shop", "federation-upstream", "up-1")
    assert json.loads(ctl(node, "list_parameters", "-p", "shop", "-q", "--formatter", "json").stdout) == []
    r = ctl(node, "set_parameter", "federation-upstream", "bad", "{not json", check=False)
    assert r.returncode == 64 and "JSON" in r.stderr
    # Federation upstreams are checked as RabbitMQ checks them, with its texts.
    r = ctl(node, "set_parameter", "federation-upstream", "a", "{}", check=False)
    assert r.returncode != 0 and 'Key "uri" not found in a' in r.stderr, r.stderr
    r = ctl(node, "set_parameter", "federation-upstream", "d", '{"uri": "amqp://x", "ack-mode": "sometimes"}', check=False)
    assert 'ack-mode should be one of [<<"no-ack">>,<<"on-publish">>,<<"on-confirm">>], actually was <<"sometimes">>' in r.stderr, r.stderr

    ctl(node, "set_global_parameter", "warren-test-knob", '"off"')
    rows = json.loads(ctl(node, "list_global_parameters", "-q", "--formatter", "json").stdout)
    assert {"name": "warren-test-knob", "value": "off"} in rows, rows
    ctl(node, "clear_global_parameter", "warren-test-knob")
    rows = json.loads(ctl(node, "list_global_parameters", "-q", "--formatter", "json").stdout)
    assert all(r["name"] != "warren-test-knob" for r in rows)


def test_help_for_each_verb():
    out = subprocess.run([WARRENCTL, "--help"], capture_output=True, text=True, timeout=30).stdout
    section = out.split("SUBCOMMANDS:")[1].split("\n")
    verbs = [m.group(1) for m in (re.match(r"^  ([a-z_]+)(\s|$)", line) for line in section) if m]
    assert "list_queues" in verbs and "cluster_status" in verbs and len(verbs) >= 27
    for verb in verbs:
        r = subprocess.run([WARRENCTL, verb, "--help"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "USAGE: warrenctl " + verb in r.stdout, verb
