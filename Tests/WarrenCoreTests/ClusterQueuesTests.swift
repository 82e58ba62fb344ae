import AMQPProtocol
import NIOCore
import Testing

@testable import WarrenCore

/// Two brokers and the queue traffic between them, with no sockets: what one sends the test
/// hands to the other (or holds back, or loses), and the clock is the test's.
final class TwoNodes {
    let clock = ManualClock()
    let a: Broker
    let b: Broker
    /// Batches on their way, per receiving node, in order.
    var toA: [ByteBuffer] = []
    var toB: [ByteBuffer] = []

    init() {
        var ca = BrokerConfiguration()
        ca.nodeName = "a@test"
        var cb = BrokerConfiguration()
        cb.nodeName = "b@test"
        a = Broker(configuration: ca, clock: clock)
        b = Broker(configuration: cb, clock: clock)
        for broker in [a, b] {
            broker.setClusterNodes(["a@test": "a:1", "b@test": "b:1"])
            // The same definitions on both, as the metadata log gives them: queue q lives on a.
            broker.metadataLog.propose(.declareQueue(QueueDeclaration(vhost: "/", name: "q", durable: true, node: "a@test"))) { _ in }
            let cq = broker.enableClusterQueues()
            cq.serving = true
        }
        a.clusterQueues!.transmit = { [unowned self] _, batch in toB.append(batch) }
        b.clusterQueues!.transmit = { [unowned self] _, batch in toA.append(batch) }
        a.clusterQueues!.linkChanged("b@test", up: true)
        b.clusterQueues!.linkChanged("a@test", up: true)
        deliver()
    }

    /// Hands over what is on its way, until nothing is.
    func deliver() {
        while !toA.isEmpty || !toB.isEmpty {
            let (x, y) = (toA, toB)
            toA.removeAll()
            toB.removeAll()
            for batch in x { a.clusterQueues!.received(batch, from: "b@test") }
            for batch in y { b.clusterQueues!.received(batch, from: "a@test") }
        }
    }

    var queueOnA: MessageQueue { a.vhosts["/"]!.queues["q"]! }
}

@Suite("Queues of other nodes (ClusterQueues, no sockets)")
struct ClusterQueuesTests {
    @Test("a publish on b with confirms lands in a's queue; the confirm waits for a's answer")
    func publishAndConfirm() {
        let n = TwoNodes()
        let client = TestClient.ready(n.b)
        client.send(channel: 1, .confirmSelect(ConfirmSelect()))
        client.publish(routingKey: "q", body: "hello")
        #expect(!client.methods(channel: 1).contains { if case .basicAck = $0 { return true } else { return false } }, "no confirm before a answered")
        n.deliver()
        client.collect()
        #expect(n.queueOnA.messageCount == 1)
        #expect(client.methods(channel: 1).last == .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
    }

    @Test("a consumer on b gets a's messages; its ack settles them on a")
    func consumeAndAck() throws {
        let n = TwoNodes()
        n.a.vhosts["/"]!.queues["q"]!.enqueue(Message(exchange: "", routingKey: "q", properties: .empty, body: ByteBuffer(string: "m1")))
        let client = TestClient.ready(n.b)
        client.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "c1")))
        #expect(client.methods(channel: 1).isEmpty, "consume-ok waits for a's answer")
        n.deliver()
        client.collect()
        let commands = client.commands(channel: 1)
        #expect(commands.first?.method == .basicConsumeOk(BasicConsumeOk(consumerTag: "c1")))
        let delivery = try #require(commands.last)
        #expect(String(buffer: delivery.body) == "m1")
        #expect(n.queueOnA.unackedCount == 1)
        client.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
        n.deliver()
        #expect(n.queueOnA.unackedCount == 0 && n.queueOnA.messageCount == 0)
    }

    @Test("a restarted: b's session is not up again until the new process is heard, so nothing goes out echoing the old one")
    func restartedPeerIsHeardBeforeTheSessionIsUp() {
        let n = TwoNodes()
        #expect(n.b.clusterQueues!.peersUp == ["a@test"])
        // a is killed and started again: a new process, its links reconnect within a second.
        var ca = BrokerConfiguration()
        ca.nodeName = "a@test"
        let a2 = Broker(configuration: ca, clock: n.clock)
        a2.setClusterNodes(["a@test": "a:1", "b@test": "b:1"])
        a2.metadataLog.propose(.declareQueue(QueueDeclaration(vhost: "/", name: "q", durable: true, node: "a@test"))) { _ in }
        let cq2 = a2.enableClusterQueues()
        var toA2: [ByteBuffer] = []
        var toB: [ByteBuffer] = []
        cq2.transmit = { _, batch in toB.append(batch) }
        n.b.clusterQueues!.transmit = { _, batch in toA2.append(batch) }
        n.b.clusterQueues!.linkChanged("a@test", up: false)
        n.b.clusterQueues!.linkChanged("a@test", up: true)
        // Regression: b counted the session up again at once, with the old process's
        // generation; what it sent then was dropped by a2, and nacked when a2 was heard.
        #expect(!n.b.clusterQueues!.isUp("a@test"), "up before the new process was heard")
        #expect(n.b.clusterQueues!.peersUp.isEmpty)
        // Hands over what is on its way between a2 and b, until nothing is.
        func deliver() {
            while !toA2.isEmpty || !toB.isEmpty {
                let (x, y) = (toA2, toB)
                toA2.removeAll()
                toB.removeAll()
                for batch in x { cq2.received(batch, from: "b@test") }
                for batch in y { n.b.clusterQueues!.received(batch, from: "a@test") }
            }
        }
        // a2 has replayed its definitions and serves: its heartbeat brings the session up.
        cq2.serving = true
        cq2.linkChanged("b@test", up: true)
        deliver()
        #expect(n.b.clusterQueues!.isUp("a@test"))
        let client = TestClient.ready(n.b)
        client.send(channel: 1, .confirmSelect(ConfirmSelect()))
        client.publish(routingKey: "q", body: "after the restart")
        deliver()
        client.collect()
        #expect(a2.vhosts["/"]!.queues["q"]!.messageCount == 1)
        #expect(client.methods(channel: 1).last == .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
    }

    @Test("when a goes silent: b's consumer is cancelled, its waiting confirm nacked, and a requeues what b had")
    func silenceEndsTheSession() throws {
        let n = TwoNodes()
        n.a.vhosts["/"]!.queues["q"]!.enqueue(Message(exchange: "", routingKey: "q", properties: .empty, body: ByteBuffer(string: "m1")))
        let consumer = TestClient.ready(n.b)
        consumer.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "c1")))
        n.deliver()
        consumer.collect()
        #expect(n.queueOnA.unackedCount == 1)
        let publisher = TestClient.ready(n.b)
        publisher.send(channel: 1, .confirmSelect(ConfirmSelect()))
        publisher.publish(routingKey: "q", body: "lost on the way")
        n.toA.removeAll()  // a never hears of it
        // b hears nothing from a for longer than the limit.
        n.clock.now += n.b.clusterQueues!.silenceLimit + 1
        n.toA.removeAll()
        n.b.clusterQueues!.tick()
        consumer.collect()
        publisher.collect()
        #expect(consumer.methods(channel: 1).last == .basicCancel(BasicCancel(consumerTag: "c1", nowait: true)))
        guard case .basicNack(let nack) = publisher.methods(channel: 1).last else {
            Issue.record("no nack: \(publisher.methods(channel: 1))")
            return
        }
        #expect(nack.deliveryTag == 1)
        // An ack for the old delivery is for an ended session: b does not send it.
        consumer.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
        #expect(n.toA.allSatisfy { $0.getInteger(at: $0.readerIndex + 24, as: UInt32.self) == 0 }, "only heartbeats go to a")
        // a hears b's new session and takes back what b had: the message is ready again, redelivered.
        n.deliver()
        #expect(n.queueOnA.unackedCount == 0 && n.queueOnA.messageCount == 1)
        let again = try #require(n.queueOnA.get(noAck: true))
        #expect(again.redelivered)
    }

    @Test("a batch from an ended session is ignored")
    func staleBatchIgnored() {
        let n = TwoNodes()
        n.a.vhosts["/"]!.queues["q"]!.enqueue(Message(exchange: "", routingKey: "q", properties: .empty, body: ByteBuffer(string: "m1")))
        let client = TestClient.ready(n.b)
        client.send(channel: 1, .basicGet(BasicGet(queue: "q", noAck: false)))
        n.deliver()
        client.collect()
        #expect(n.queueOnA.unackedCount == 1)
        client.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
        let ack = n.toA
        n.toA.removeAll()
        // a ends the session (its link to b dropped) before the ack arrives.
        n.a.clusterQueues!.linkChanged("b@test", up: false)
        #expect(n.queueOnA.messageCount == 1, "requeued when the session ended")
        for batch in ack { n.a.clusterQueues!.received(batch, from: "b@test") }
        #expect(n.queueOnA.messageCount == 1, "the old session's ack does not settle the requeued message")
    }

    @Test("a queue deleted on its home node while another node's consumer still has deliveries: that node's later cancel and acks are harmless")
    func deletedUnderARemoteConsumer() {
        let n = TwoNodes()
        for i in 0..<3 { n.queueOnA.enqueue(Message(exchange: "", routingKey: "q", properties: .empty, body: ByteBuffer(string: "m\(i)"))) }
        let client = TestClient.ready(n.b)
        client.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "c1")))
        n.deliver()
        client.collect()
        // a applies the deletion; b has not yet (its copy of the log is behind).
        n.a.metadataLog.propose(.deleteQueue(vhost: "/", name: "q")) { _ in }
        #expect(n.a.vhosts["/"]!.queues["q"] == nil)
        // b's client acks one, cancels, and closes the channel: all of it reaches a.
        client.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
        client.send(channel: 1, .basicCancel(BasicCancel(consumerTag: "c1")))
        client.send(channel: 1, .channelClose(ChannelClose(replyCode: 200, replyText: "bye", classID: 0, methodID: 0)))
        n.deliver()
        // And the session ends: nothing of the deleted queue is requeued anywhere.
        n.a.clusterQueues!.linkChanged("b@test", up: false)
        #expect(n.a.clusterQueues!.peers["b@test"]!.proxies.isEmpty && n.a.clusterQueues!.peers["b@test"]!.unacked.isEmpty)
    }

    @Test("a publisher whose publishes the home node has not taken yet stops being read once the credit is used, and goes on when it comes back")
    func publishCreditPausesThePublisher() {
        let n = TwoNodes()
        let client = TestClient.ready(n.b)
        // 4 MiB bodies cost 1,025 credit units each: the eighth uses up the window.
        let body = String(repeating: "x", count: 4 << 20)
        for _ in 0..<7 { client.publish(routingKey: "q", body: body) }
        #expect(client.transport.reading, "credit left")
        client.publish(routingKey: "q", body: body)
        #expect(!client.transport.reading, "out of credit: the connection is not read")
        n.deliver()
        #expect(n.queueOnA.messageCount == 8)
        #expect(client.transport.reading, "a took them and gave the credit back")
    }
}
