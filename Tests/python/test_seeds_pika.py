"""Every pika program of the seed tutorials, run against a real Warren node."""


def test_hello_world(progs):
    receiver = progs.start("pika/receive.py")
    receiver.wait_for(r"Waiting for messages")
    out = progs.run("pika/send.py")
    assert "Sent 'Hello World!'" in out
    receiver.wait_for(r"Received b'Hello World!'")


def test_chinese_queue_name(progs):
    progs.run("pika/shuihu_send.py")
    receiver = progs.start("pika/shuihu_receive.py")
    receiver.wait_for("消费者接收到了任务: '武松又去打老虎啦2'")


def test_work_queue_fair_dispatch(progs):
    """Prefetch 1 and manual ack: a busy worker gets nothing more until it acks."""
    env = {"WORK_UNIT": "0.2"}
    a = progs.start("pika/worker.py", env=env)
    b = progs.start("pika/worker.py", env=env)
    a.wait_for("Waiting for messages")
    b.wait_for("Waiting for messages")
    # 10 s of work: the four light tasks below (a process start each, slow on a loaded machine)
    # must all be published while the heavy one is still being worked on.
    progs.run("pika/new_task.py", "heavy" + "." * 50)
    heavy_worker = first_to_print([a, b], "Received 'heavy")
    other = b if heavy_worker is a else a
    for i in range(4):
        progs.run("pika/new_task.py", f"light{i}.")
    other.wait_for(r"Done 'light", count=4, timeout=15)
    heavy_worker.wait_for(r"Done 'heavy", timeout=30)
    heavy_worker.settle(0.3)
    assert heavy_worker.matching("light") == [], "the busy worker got more than its prefetch allows"


def first_to_print(programs, pattern, timeout=15):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in programs:
            p.settle(0.05)
            if p.matching(pattern):
                return p
    raise AssertionError(f"nobody printed {pattern!r}")


def test_work_queue_round_robin(progs):
    env = {"WORK_UNIT": "0"}
    a = progs.start("pika/worker.py", env=env)
    b = progs.start("pika/worker.py", env=env)
    a.wait_for("Waiting for messages")
    b.wait_for("Waiting for messages")
    for i in range(6):
        progs.run("pika/new_task.py", f"task{i}")
    a.wait_for(r"Done 'task", count=3)
    b.wait_for(r"Done 'task", count=3)
    a.settle(0.5)
    b.settle(0.1)
    done = sorted(a.matching("Done 'task") + b.matching("Done 'task"))
    assert done == sorted(f" [x] Done 'task{i}'" for i in range(6)), done
    assert len(a.matching("Done")) == 3 and len(b.matching("Done")) == 3


def test_unacked_message_survives_a_crashed_consumer(progs):
    progs.run("pika/lol_send.py")
    crasher = progs.start("pika/lol_receive.py", env={"FAIL": "1"})
    crasher.wait_for("德玛西亚万岁")
    assert crasher.wait_exit() != 0
    receiver = progs.start("pika/lol_receive.py")
    receiver.wait_for("消费者接受到了任务：'德玛西亚万岁'")


def test_publish_subscribe(progs):
    r1 = progs.start("pika/receive_logs.py")
    r2 = progs.start("pika/receive_logs.py")
    r1.wait_for("Waiting for logs")
    r2.wait_for("Waiting for logs")
    progs.run("pika/emit_log.py", "info: broadcast")
    r1.wait_for(r"\[x\] b'info: broadcast'")
    r2.wait_for(r"\[x\] b'info: broadcast'")


def test_direct_routing(progs):
    errors = progs.start("pika/receive_logs_direct.py", "warning", "error")
    everything = progs.start("pika/receive_logs_direct.py", "info", "warning", "error")
    errors.wait_for("Waiting for logs")
    everything.wait_for("Waiting for logs")
    progs.run("pika/emit_log_direct.py", "error", "Run. Run. Or it will explode.")
    progs.run("pika/emit_log_direct.py", "info", "just info")
    progs.run("pika/emit_log_direct.py", "debug", "nobody listens")
    everything.wait_for(r"'info':b'just info'")
    everything.wait_for(r"'error':b'Run. Run. Or it will explode.'")
    errors.wait_for(r"'error':b'Run. Run. Or it will explode.'")
    errors.settle(0.3)
    assert errors.matching("info") == []
    assert everything.matching("debug") == []


def test_topics(progs):
    receivers = {
        "#": progs.start("pika/receive_logs_topic.py", "#"),
        "kern.*": progs.start("pika/receive_logs_topic.py", "kern.*"),
        "*.critical": progs.start("pika/receive_logs_topic.py", "*.critical"),
        "both": progs.start("pika/receive_logs_topic.py", "kern.*", "*.critical"),
    }
    for r in receivers.values():
        r.wait_for("Waiting for logs")
    progs.run("pika/emit_log_topic.py", "kern.critical", "A critical kernel error")
    progs.run("pika/emit_log_topic.py", "anonymous.info", "hello")
    progs.run("pika/emit_log_topic.py", "kern.info.extra", "three words")
    for r in receivers.values():
        r.wait_for(r"'kern.critical':b'A critical kernel error'")
    receivers["#"].wait_for(r"'anonymous.info'")
    receivers["#"].wait_for(r"'kern.info.extra'")
    for name in ("kern.*", "*.critical", "both"):
        receivers[name].settle(0.2)
        assert receivers[name].matching("anonymous.info") == []
        assert receivers[name].matching("kern.info.extra") == []
    assert len(receivers["both"].matching("kern.critical")) == 1, "a message matching two bindings arrives once"


def test_rpc(progs):
    server = progs.start("pika/rpc_server.py")
    server.wait_for("Awaiting RPC requests")
    out = progs.run("pika/rpc_client.py", "20")
    assert "Got 6765" in out
    server.wait_for(r"fib\(20\)")


def test_headers_exchange(progs):
    all_ = progs.start("pika/headers_consume.py", "all", "format=pdf", "type=report")
    any_ = progs.start("pika/headers_consume.py", "any", "format=pdf", "type=log")
    all_.wait_for("Waiting")
    any_.wait_for("Waiting")
    progs.run("pika/headers_publish.py", "format=pdf", "type=report")
    progs.run("pika/headers_publish.py", "format=zip", "type=log")
    progs.run("pika/headers_publish.py", "format=zip", "type=report")
    all_.wait_for(r"\('format', 'pdf'\), \('type', 'report'\)")
    any_.wait_for(r"\('format', 'pdf'\), \('type', 'report'\)")
    any_.wait_for(r"\('format', 'zip'\), \('type', 'log'\)")
    all_.settle(0.3)
    any_.settle(0.1)
    assert len(all_.matching("headers:")) == 1
    assert len(any_.matching("headers:")) == 2


def test_direct_keywords_seed_001(progs):
    c1 = progs.start("pika/m2_consumer.py", "alex", "sb")
    c2 = progs.start("pika/m2_consumer.py", "sb")
    c1.wait_for("bound")
    c2.wait_for("bound")
    progs.run("pika/m2_producer.py", "sb")
    c1.wait_for("aaaalexlaolalaodi")
    c2.wait_for("aaaalexlaolalaodi")
    progs.run("pika/m2_producer.py", "alex")
    c1.wait_for("aaaalexlaolalaodi", count=2)
    c2.settle(0.3)
    assert len(c2.matching("aaaalexlaolalaodi")) == 1


def test_seed_000_topic_and_fanout(progs):
    topic = progs.start("pika/dcs_topic_consume.py")
    topic.wait_for("等待消息")
    out = progs.run("pika/dcs_topic_publish.py")
    assert "发送2条消息" in out
    topic.wait_for("获取到消息", count=2)
    fanout = progs.start("pika/dcs_fanout_consume.py")
    fanout.wait_for("等待消息")
    progs.run("pika/dcs_fanout_publish.py")
    fanout.wait_for("获取到消息", count=2)
