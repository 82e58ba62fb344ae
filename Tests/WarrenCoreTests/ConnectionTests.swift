import AMQPProtocol
import NIOCore
import Testing

@testable import WarrenCore

/// Whole connections driven through bytes, no sockets: what a client sees.
@Suite("Connection")
struct ConnectionTests {
    @Test("handshake: start advertises what works, tune proposes RabbitMQ's defaults")
    func handshake() throws {
        let c = TestClient(Broker())
        let replies = c.handshake()
        guard case .connectionStart(let start) = replies.first else { Issue.record("no start"); return }
        #expect(start.mechanisms == "PLAIN AMQPLAIN")
        let caps = start.serverProperties["capabilities"]?.tableValue
        // RabbitMQ 3.10's capabilities, each of which works.
        #expect(Set(caps?.entries.map(\.key) ?? []) == [
            "publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify", "connection.blocked",
            "consumer_priorities", "authentication_failure_close", "per_consumer_qos", "direct_reply_to",
        ])
        #expect(caps?.entries.allSatisfy { $0.value == true } == true)
        #expect(replies.dropFirst().first == .connectionTune(ConnectionTune(channelMax: 2047, frameMax: 131_072, heartbeat: 60)))
        #expect(replies.last == .connectionOpenOk(ConnectionOpenOk()))
        #expect(c.connection.state == .open)
    }

    @Test("the handshake works fed one byte at a time")
    func byteByByte() {
        let broker = Broker()
        let c = TestClient(broker)
        var all = ByteBuffer()
        all.writeAMQPProtocolHeader()
        all.writeAMQPFrame(.method(channel: 0, .connectionStartOk(ConnectionStartOk(clientProperties: [:], mechanism: "PLAIN", response: Array("\0guest\0guest".utf8)))))
        all.writeAMQPFrame(.method(channel: 0, .connectionTuneOk(ConnectionTuneOk(channelMax: 0, frameMax: 0, heartbeat: 0))))
        all.writeAMQPFrame(.method(channel: 0, .connectionOpen(ConnectionOpen())))
        all.writeAMQPFrame(.method(channel: 1, .channelOpen(ChannelOpen())))
        while let byte = all.readSlice(length: 1) { c.sendBytes(byte) }
        #expect(c.methods().last == .channelOpenOk(ChannelOpenOk()))
    }

    @Test("AMQPLAIN logins work")
    func amqplain() {
        let c = TestClient(Broker())
        var b = ByteBuffer()
        b.writeAMQPProtocolHeader()
        c.sendBytes(b)
        var table = ByteBuffer()
        table.amqpWriteFieldTable(["LOGIN": "guest", "PASSWORD": "guest"])
        c.send(channel: 0, .connectionStartOk(ConnectionStartOk(clientProperties: [:], mechanism: "AMQPLAIN", response: Array(table.readableBytesView.dropFirst(4)))))
        #expect(c.methods(channel: 0).last == .connectionTune(ConnectionTune(channelMax: 2047, frameMax: 131_072, heartbeat: 60)))
    }

    @Test("wrong password, unknown user, guest from afar: 403 and a closed connection", arguments: [
        ("guest", "wrong", true), ("nobody", "guest", true), ("guest", "guest", false),
    ])
    func refused(user: String, password: String, loopback: Bool) {
        let c = TestClient(Broker(), peer: PeerInfo(address: "10.1.2.3:4444", isLoopback: loopback))
        let last = c.handshake(user: user, password: password).last
        #expect(last?.closeCode == 403)
        #expect(last?.closeText == "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.")
    }

    @Test("an unknown vhost is 530")
    func unknownVhost() {
        let c = TestClient(Broker())
        #expect(c.handshake(vhost: "nope").last?.closeText == "NOT_ALLOWED - vhost nope not found")
    }

    @Test("a wrong protocol header gets ours back and the socket closes")
    func wrongHeader() {
        let c = TestClient(Broker())
        c.sendBytes(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        #expect(c.raw == [0x41, 0x4D, 0x51, 0x50, 0, 0, 9, 1])
        #expect(c.transport.disconnected)
    }

    @Test("frames on an unopened channel and a second open are hard errors")
    func channelErrors() {
        let c = TestClient(Broker())
        c.handshake()
        c.send(channel: 3, .queueDeclare(QueueDeclare(queue: "q")))
        let close = c.methods(channel: 0).last
        #expect(close?.closeCode == 504)
        #expect(close?.closeText == "CHANNEL_ERROR - expected 'channel.open'")
        #expect(c.transport.closeTimerStarted)

        let d = TestClient(Broker())
        d.handshake()
        d.openChannel()
        d.send(channel: 1, .channelOpen(ChannelOpen()))
        #expect(d.methods(channel: 0).last?.closeText == "CHANNEL_ERROR - second 'channel.open' seen")

    }

    @Test("channel_max limits how many channels are open, not their numbers (530 past it)")
    func channelCount() {
        var config = BrokerConfiguration()
        config.channelMax = 2
        let e = TestClient(Broker(configuration: config))
        e.handshake(channelMax: 2)
        e.openChannel(65535)
        e.openChannel(3000)
        e.send(channel: 7, .channelOpen(ChannelOpen()))
        let close = e.methods(channel: 0).last
        #expect(close?.closeCode == 530)
        #expect(close?.closeText == "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)")
    }

    @Test("a channel the server closes while the client closes it stays until the client's close-ok")
    func closeCrossing() {
        let c = TestClient.ready(Broker())
        var batch = ByteBuffer()
        batch.writeAMQPMethodFrame(channel: 1, .queueDeclare(QueueDeclare(queue: "missing", passive: true)))
        batch.writeAMQPMethodFrame(channel: 1, .channelClose(ChannelClose(replyCode: 200, replyText: "bye", classID: 0, methodID: 0)))
        c.sendBytes(batch)
        #expect(c.methods(channel: 1).map(\.name) == ["channel.close", "channel.close-ok"])
        c.send(channel: 1, .channelCloseOk(ChannelCloseOk()))
        #expect(c.methods(channel: 0).isEmpty)
        #expect(c.connection.state == .open)
        c.openChannel()
    }

    @Test("after connection.close the server ignores all but close-ok, then disconnects")
    func closeHandshake() {
        let c = TestClient.ready(Broker())
        c.send(channel: 1, .basicQos(BasicQos(prefetchSize: 1, prefetchCount: 0, global: false)))
        #expect(c.methods(channel: 0).last?.closeText == "NOT_IMPLEMENTED - prefetch_size!=0 (1)")
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "ignored")))
        #expect(c.methods().isEmpty)
        c.send(channel: 0, .connectionCloseOk(ConnectionCloseOk()))
        #expect(c.transport.disconnected)
    }

    @Test("heartbeats: sent when idle, and a silent peer is dropped after two intervals")
    func heartbeats() {
        let c = TestClient(Broker())
        c.handshake(heartbeat: 10)
        #expect(c.transport.heartbeatInterval == 5000)
        c.connection.heartbeatTick()  // something was just sent (open-ok): no heartbeat yet
        c.connection.heartbeatTick()
        #expect(c.unread().contains(.heartbeat))
        c.connection.heartbeatTick()
        c.connection.heartbeatTick()
        #expect(!c.transport.disconnected)
        c.connection.heartbeatTick()
        #expect(c.transport.disconnected, "five half-intervals without a byte: more than two missed heartbeats")
    }

    @Test("input resets the heartbeat clock")
    func heartbeatReset() {
        let c = TestClient(Broker())
        c.handshake(heartbeat: 10)
        for _ in 0..<20 {
            c.connection.heartbeatTick()
            c.sendBytes(encodeFrames([.heartbeat]))
        }
        #expect(!c.transport.disconnected)
    }

    @Test("a handshake that never finishes is dropped when the timer fires")
    func handshakeTimeout() {
        let c = TestClient(Broker())
        var b = ByteBuffer()
        b.writeAMQPProtocolHeader()
        c.sendBytes(b)
        c.connection.handshakeTimedOut()
        #expect(c.transport.disconnected)
        #expect(c.connection.broker.connections.isEmpty)
    }
}

@Suite("Channel behaviour")
struct ChannelBehaviourTests {
    @Test("publish to a queue and consume: consume-ok first, then deliveries with increasing tags")
    func publishConsume() {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        #expect(c.methods(channel: 1) == [.queueDeclareOk(QueueDeclareOk(queue: "q", messageCount: 0, consumerCount: 0))])
        c.publish(routingKey: "q", body: "one", properties: BasicProperties(contentType: "text/plain", headers: ["h": 1]))
        c.publish(routingKey: "q", body: "two")
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "ctag")))
        let cmds = c.commands(channel: 1)
        #expect(cmds.map(\.method) == [
            .basicConsumeOk(BasicConsumeOk(consumerTag: "ctag")),
            .basicDeliver(BasicDeliver(consumerTag: "ctag", deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q")),
            .basicDeliver(BasicDeliver(consumerTag: "ctag", deliveryTag: 2, redelivered: false, exchange: "", routingKey: "q")),
        ])
        #expect(cmds[1].body == ByteBuffer(string: "one"))
        #expect(cmds[1].header?.properties == BasicProperties(contentType: "text/plain", headers: ["h": 1]))
        #expect(broker.vhosts["/"]!.queues["q"]!.unackedCount == 2)
    }

    @Test("per-consumer prefetch holds deliveries until acks")
    func prefetch() {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        for i in 0..<5 { c.publish(routingKey: "q", body: "m\(i)") }
        c.send(channel: 1, .basicQos(BasicQos(prefetchCount: 2)))
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "t")))
        #expect(c.methods(channel: 1).filter { if case .basicDeliver = $0 { return true } else { return false } }.count == 2)
        c.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1)))
        #expect(c.methods(channel: 1).count == 1)
        c.send(channel: 1, .basicAck(BasicAck(deliveryTag: 3, multiple: true)))
        #expect(c.methods(channel: 1).count == 2)
        #expect(broker.vhosts["/"]!.queues["q"]!.messageCount == 0)
    }

    @Test("global prefetch is shared by the channel's consumers")
    func globalPrefetch() {
        let broker = Broker()
        let c = TestClient.ready(broker)
        for q in ["a", "b"] {
            c.send(channel: 1, .queueDeclare(QueueDeclare(queue: q)))
            for _ in 0..<3 { c.publish(routingKey: q, body: "x") }
        }
        c.send(channel: 1, .basicQos(BasicQos(prefetchCount: 3, global: true)))
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "a")))
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "b")))
        let delivered = c.methods(channel: 1).filter { if case .basicDeliver = $0 { return true } else { return false } }
        #expect(delivered.count == 3)
    }

    @Test("round-robin across consumers on different connections")
    func roundRobin() {
        let broker = Broker()
        let a = TestClient.ready(broker)
        let b = TestClient.ready(broker)
        a.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        a.send(channel: 1, .basicConsume(BasicConsume(queue: "q", noAck: true)))
        b.send(channel: 1, .basicConsume(BasicConsume(queue: "q", noAck: true)))
        _ = a.methods()
        _ = b.methods()
        for i in 0..<6 { a.publish(routingKey: "q", body: "\(i)") }
        #expect(a.commands(channel: 1).map { String(buffer: $0.body) } == ["0", "2", "4"])
        #expect(b.commands(channel: 1).map { String(buffer: $0.body) } == ["1", "3", "5"])
        #expect(b.transport.outputPendingCalls > 0, "deliveries caused by another connection ask for a flush")
    }

    @Test("nack and reject with requeue bring messages back, in place, marked redelivered")
    func requeue() {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        for i in 0..<4 { c.publish(routingKey: "q", body: "\(i)") }
        for _ in 0..<3 { c.send(channel: 1, .basicGet(BasicGet(queue: "q"))) }
        _ = c.commands()
        c.send(channel: 1, .basicNack(BasicNack(deliveryTag: 2, multiple: true, requeue: true)))  // 0 and 1 back
        c.send(channel: 1, .basicReject(BasicReject(deliveryTag: 3, requeue: false)))  // 2 dropped
        var got: [(String, Bool)] = []
        for _ in 0..<4 {
            c.send(channel: 1, .basicGet(BasicGet(queue: "q", noAck: true)))
            if let cmd = c.commands(channel: 1).first, case .basicGetOk(let ok) = cmd.method {
                got.append((String(buffer: cmd.body), ok.redelivered))
            }
        }
        #expect(got.map(\.0) == ["0", "1", "3"])
        #expect(got.map(\.1) == [true, true, false])
    }

    @Test("closing a channel requeues its unacked messages to other consumers")
    func requeueOnClose() {
        let broker = Broker()
        let a = TestClient.ready(broker)
        let b = TestClient.ready(broker)
        a.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        a.send(channel: 1, .basicQos(BasicQos(prefetchCount: 10)))
        a.send(channel: 1, .basicConsume(BasicConsume(queue: "q")))
        for i in 0..<3 { b.publish(routingKey: "q", body: "\(i)") }
        _ = a.commands()
        b.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "b")))
        _ = b.methods()
        a.send(channel: 1, .channelClose(ChannelClose(replyCode: 200, replyText: "", classID: 0, methodID: 0)))
        #expect(a.methods(channel: 1) == [.channelCloseOk(ChannelCloseOk())])
        let redelivered = b.commands(channel: 1)
        #expect(redelivered.map { String(buffer: $0.body) } == ["0", "1", "2"])
        #expect(redelivered.allSatisfy { if case .basicDeliver(let d) = $0.method { return d.redelivered } else { return false } })
    }

    @Test("a dropped connection requeues too, and its exclusive queues go")
    func transportClosed() {
        let broker = Broker()
        let a = TestClient.ready(broker)
        a.send(channel: 1, .queueDeclare(QueueDeclare(queue: "excl", exclusive: true)))
        a.send(channel: 1, .queueDeclare(QueueDeclare(queue: "shared")))
        a.publish(routingKey: "shared", body: "x")
        a.send(channel: 1, .basicGet(BasicGet(queue: "shared")))
        a.connection.transportClosed()
        let v = broker.vhosts["/"]!
        #expect(v.queues["excl"] == nil)
        #expect(v.queues["shared"]?.messageCount == 1)
        #expect(broker.connections.isEmpty)
    }

    @Test("confirms of one read batch coalesce; an unroutable publish is acked alone at once (RabbitMQ's frames)")
    func confirms() {
        let c = TestClient.ready(Broker())
        c.send(channel: 1, .confirmSelect(ConfirmSelect()))
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        _ = c.methods()
        var batch = ByteBuffer()
        for i in 0..<5 {
            batch.writeAMQPCommand(channel: 1, .basicPublish(BasicPublish(routingKey: i == 2 ? "nowhere" : "q")), body: ByteBuffer(string: "x"), maxFrameSize: 131_072)
        }
        c.sendBytes(batch)
        #expect(c.methods(channel: 1) == [.basicAck(BasicAck(deliveryTag: 3)), .basicAck(BasicAck(deliveryTag: 5, multiple: true))])
        c.publish(routingKey: "q", body: "y")
        #expect(c.methods(channel: 1) == [.basicAck(BasicAck(deliveryTag: 6, multiple: false))])
    }

    @Test("mandatory unroutable messages come back with 312 NO_ROUTE before their confirm")
    func mandatory() {
        let c = TestClient.ready(Broker())
        c.send(channel: 1, .confirmSelect(ConfirmSelect()))
        _ = c.methods()
        c.publish(routingKey: "nowhere", body: "lost?", mandatory: true)
        let cmds = c.commands(channel: 1)
        #expect(cmds.map(\.method) == [
            .basicReturn(BasicReturn(replyCode: 312, replyText: "NO_ROUTE", exchange: "", routingKey: "nowhere")),
            .basicAck(BasicAck(deliveryTag: 1)),
        ])
        #expect(cmds[0].body == ByteBuffer(string: "lost?"))
    }

    @Test("transactions: nothing happens before commit, rollback forgets publishes and restores acks")
    func transactions() {
        let broker = Broker()
        let c = TestClient.ready(broker)
        let q = { broker.vhosts["/"]!.queues["q"]! }
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        c.publish(routingKey: "q", body: "before")
        c.send(channel: 1, .basicGet(BasicGet(queue: "q")))
        c.send(channel: 1, .txSelect(TxSelect()))
        c.publish(routingKey: "q", body: "in-tx")
        c.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1)))
        #expect(q().messageCount == 0 && q().unackedCount == 1)
        c.send(channel: 1, .txRollback(TxRollback()))
        #expect(q().messageCount == 0 && q().unackedCount == 1)
        c.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1)))  // still known after rollback
        c.publish(routingKey: "q", body: "committed")
        c.send(channel: 1, .txCommit(TxCommit()))
        #expect(q().messageCount == 1 && q().unackedCount == 0)
        #expect(c.methods(channel: 1).contains(.txCommitOk(TxCommitOk())))
    }

    @Test("soft errors close the channel, which then ignores everything but close-ok")
    func softError() {
        let c = TestClient.ready(Broker())
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "missing", passive: true)))
        let close = c.methods(channel: 1).last
        #expect(close?.closeCode == 404)
        #expect(close?.closeText == "NOT_FOUND - no queue 'missing' in vhost '/'")
        guard case .channelClose(let cc) = close else { return }
        #expect(cc.classID == 50 && cc.methodID == 10)
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "ignored")))
        #expect(c.methods(channel: 1).isEmpty)
        c.send(channel: 1, .channelCloseOk(ChannelCloseOk()))
        c.openChannel(1)  // the number is free again
        #expect(c.connection.state == .open)
    }

    @Test("deleting a queue cancels its consumers with basic.cancel")
    func cancelNotify() {
        let broker = Broker()
        let a = TestClient.ready(broker)
        a.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        a.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "t")))
        _ = a.methods()
        let b = TestClient.ready(broker)
        b.send(channel: 1, .queueDelete(QueueDelete(queue: "q")))
        #expect(a.methods(channel: 1) == [.basicCancel(BasicCancel(consumerTag: "t", nowait: true))])
    }

    @Test("auto-delete queues go with their last consumer; exclusive queues with their connection")
    func lifecycle() {
        let broker = Broker()
        let v = broker.vhosts["/"]!
        let c = TestClient.ready(broker)
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "ad", autoDelete: true)))
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "ad", consumerTag: "t")))
        #expect(v.queues["ad"] != nil)
        c.send(channel: 1, .basicCancel(BasicCancel(consumerTag: "t")))
        #expect(v.queues["ad"] == nil)

        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "", exclusive: true)))
        guard case .queueDeclareOk(let ok) = c.methods(channel: 1).last else { Issue.record("no declare-ok"); return }
        #expect(ok.queue.hasPrefix("amq.gen-") && ok.queue.count == 30)
        c.send(channel: 0, .connectionClose(ConnectionClose(replyCode: 200, replyText: "", classID: 0, methodID: 0)))
        #expect(v.queues[ok.queue] == nil)
        #expect(c.methods(channel: 0).last == .connectionCloseOk(ConnectionCloseOk()))
    }

    @Test("channel.flow(true) is answered; flow(false) is 540 NOT_IMPLEMENTED, as RabbitMQ")
    func flow() {
        let c = TestClient.ready(Broker())
        c.send(channel: 1, .channelFlow(ChannelFlow(active: true)))
        #expect(c.methods(channel: 1) == [.channelFlowOk(ChannelFlowOk(active: true))])
        c.send(channel: 1, .channelFlow(ChannelFlow(active: false)))
        let close = c.methods(channel: 0).last
        #expect(close?.closeCode == 540)
        #expect(close?.closeText == "NOT_IMPLEMENTED - active=false")
    }

    @Test("a socket that cannot take more pauses deliveries")
    func writability() {
        let c = TestClient.ready(Broker())
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "q", noAck: true)))
        _ = c.methods()
        c.connection.setWritable(false)
        c.publish(routingKey: "q", body: "held")
        #expect(c.methods(channel: 1).isEmpty)
        c.connection.setWritable(true)
        #expect(c.methods(channel: 1).count == 1)
    }

    @Test("a consumer without prefetch gets a bounded batch per hand-over, not the whole backlog")
    func boundedOutput() {
        let broker = Broker()
        let p = TestClient.ready(broker)
        p.send(channel: 1, .queueDeclare(QueueDeclare(queue: "big")))
        let body = String(repeating: "x", count: 64 * 1024)
        for _ in 0..<64 { p.publish(routingKey: "big", body: body) }  // 4 MiB waiting
        let c = TestClient.ready(broker)
        var consume = ByteBuffer()
        consume.writeAMQPFrame(.method(channel: 1, .basicConsume(BasicConsume(queue: "big", noAck: true))))
        c.connection.receive(consume)
        c.connection.receiveComplete()
        var sizes: [Int] = []
        while let out = c.connection.takeOutbound() { sizes.append(out.readableBytes) }
        // Without the bound the first hand-over held all 4 MiB.
        #expect(sizes.count >= 4)
        #expect(sizes.allSatisfy { $0 <= AMQPConnection.outboundDeliveryLimit + 70 * 1024 })
        #expect(sizes.reduce(0, +) > 64 * 64 * 1024)
        #expect(broker.vhosts["/"]!.queues["big"]!.messageCount == 0)
    }

    @Test("a body over the limit closes the channel with 406 and the rest of it is skipped")
    func oversizeBody() {
        var config = BrokerConfiguration()
        config.maxMessageSize = 8
        let c = TestClient.ready(Broker(configuration: config))
        c.publish(routingKey: "q", body: "far too long a body")
        #expect(c.methods(channel: 1).last?.closeText == "PRECONDITION_FAILED - message size 19 is larger than configured max size 8")
        #expect(c.connection.state == .open)
    }
}
