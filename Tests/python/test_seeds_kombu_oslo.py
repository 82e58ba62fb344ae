"""The kombu and oslo.messaging programs of the seed tutorials, run against a real Warren node."""


def test_kombu_hello_world(progs):
    out = progs.run("kombu/send.py")
    assert "Sent: helloworld" in out
    out = progs.run("kombu/receive.py")
    assert "Received: helloworld" in out


def test_kombu_work_queue(progs):
    """Ten tasks shared by two workers: each processed exactly once."""
    import time
    a = progs.start("kombu/worker.py")
    b = progs.start("kombu/worker.py")
    progs.run("kombu/client.py")
    deadline = time.time() + 20
    while time.time() < deadline and len(a.matching("th message")) + len(b.matching("th message")) < 10:
        a.settle(0.1)
        b.settle(0.1)
    a.settle(0.3)
    b.settle(0.1)
    got = sorted(a.matching("th message") + b.matching("th message"))
    assert got == sorted(f"{i}th message" for i in range(1, 11))


def test_kombu_publish_subscribe(progs):
    r = progs.start("kombu/receive_logs.py")
    r.settle(1.0)  # the consumer declares and binds its queue
    progs.run("kombu/emit_log.py")
    r.wait_for(r"INFO: \d+th message", count=10)


def test_kombu_routing(progs):
    r = progs.start("kombu/receive_logs_direct.py")
    r.settle(1.0)
    progs.run("kombu/emit_log_direct.py")
    lines = r.wait_for(r"(INFO|ERROR|WARNING): \d+th message", count=19)
    assert len(set(lines)) == 19


def test_kombu_topics(progs):
    r = progs.start("kombu/receive_logs_topic.py")
    r.settle(1.0)
    progs.run("kombu/emit_log_topic.py")
    r.wait_for(r"(INFO|ERROR|WARNING): \d+th message", count=19)


def test_kombu_rpc(progs):
    server = progs.start("kombu/rpc_server.py")
    server.settle(1.0)
    out = progs.run("kombu/rpc_client.py", timeout=60)
    assert "Got 832040" in out
    server.wait_for(r"fib\(30\)")


def test_oslo_messaging_rpc(progs):
    server = progs.start("oslo/server.py")
    server.wait_for("Start Server")
    server.settle(1.0)
    out = progs.run("oslo/client.py", timeout=90)
    assert "result is 3" in out
    assert "fib(10) = 55" in out
    server.wait_for("testing")
    server.wait_for(r"^10$")


def test_oslo_messaging_notifications(progs):
    receiver = progs.start("oslo/receiver.py")
    receiver.wait_for("listening")
    # "listening" is printed before the listener has subscribed: send until it has them.
    for _ in range(10):
        progs.run("oslo/send.py", timeout=60)
        receiver.settle(1.0)
        if receiver.matching("^Info$") and receiver.matching("^Error$"):
            break
    receiver.wait_for("^Info$")
    receiver.wait_for("^Error$")
    receiver.wait_for("my_type")
