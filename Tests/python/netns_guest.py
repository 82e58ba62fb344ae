"""Run inside a private network namespace (unshare --net) by test_access_pika: there, 10.200.0.1
is an address of the namespace's own loopback interface but not a loopback address, so a client
connecting to it is, by its real source address, not on loopback. Nothing outside the namespace
can reach the node. Prints one JSON object with what happened."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pika  # noqa: E402

import brokers  # noqa: E402
from conftest import Node  # noqa: E402

ADDRESS = "10.200.0.1"


def login(node, user, password):
    try:
        c = pika.BlockingConnection(pika.ConnectionParameters(
            node.host, node.port, credentials=pika.PlainCredentials(user, password), heartbeat=0, connection_attempts=1))
    except pika.exceptions.ProbableAuthenticationError as e:
        return str(e)
    c.channel().queue_declare("", exclusive=True)
    c.close()
    return "ok"


def main():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
    definitions = brokers.write_definitions({
        "users": [{"name": "guest", "password": "guest", "tags": ["administrator"]}, {"name": "remote", "password": "remotepw", "tags": []}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": u, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} for u in ("guest", "remote")],
    })
    result = {}
    node = Node("netns_guest", ["--load-definitions", definitions], bind=ADDRESS)
    try:
        result["guest"] = login(node, "guest", "guest")
        result["remote"] = login(node, "remote", "remotepw")
        result["log"] = node.log_text()
    finally:
        result["exit"] = node.stop()
    node = Node("netns_guest_open", ["--load-definitions", definitions, "--loopback-users", "none"], bind=ADDRESS)
    try:
        result["guest_when_allowed"] = login(node, "guest", "guest")
    finally:
        node.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
