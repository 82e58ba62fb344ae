import AMQPProtocol
import NIOCore
import Testing

@testable import WarrenCore

/// A replicated queue's log as the test runs it: what a member proposes waits until the test
/// commits it, then every member applies the same entries in the same order.
final class FakeReplicaLog: ReplicaLog {
    var proposed: [[UInt8]] = []
    var compacted = 0
    func open(group: UInt64, members: [String], campaign: Bool, join: Bool, initial: [UInt8]?) {}
    func close(group: UInt64) {}
    func leave(group: UInt64, members: [String]) {}
    func propose(_ batches: [(group: UInt64, data: [UInt8])]) { proposed += batches.map(\.data) }
    func compact(group: UInt64, upTo index: UInt64, data: [UInt8]) { compacted += 1 }
    func setMembers(group: UInt64, members: [String]) {}
    func transferLeadership(group: UInt64, to node: String) {}
}

/// Two members of one replicated queue "q" (declared on a, members a and b), with no sockets
/// and no Raft: the test says who leads and commits what the leader proposed.
final class TwoReplicas {
    let clock = ManualClock()
    let a: Broker
    let b: Broker
    let logA = FakeReplicaLog()
    let logB = FakeReplicaLog()
    var index: UInt64 = 1
    var term: UInt64 = 1

    init(arguments: FieldTable = [:]) {
        var ca = BrokerConfiguration()
        ca.nodeName = "a@test"
        var cb = BrokerConfiguration()
        cb.nodeName = "b@test"
        a = Broker(configuration: ca, clock: clock)
        b = Broker(configuration: cb, clock: clock)
        var arguments = arguments
        arguments["x-queue-type"] = "quorum"
        for (broker, log) in [(a, logA), (b, logB)] {
            broker.setClusterNodes(["a@test": "a:1", "b@test": "b:1"])
            broker.enableClusterQueues().serving = true
            let rq = broker.enableReplicatedQueues()
            rq.log = log
            broker.metadataLog.propose(.setGlobalParameter(name: Broker.replicationFeature, value: .bool(true))) { _ in }
            broker.metadataLog.propose(
                .declareQueue(
                    QueueDeclaration(
                        vhost: "/", name: "q", durable: true, arguments: arguments, node: "a@test"))
            ) { _ in }
        }
    }

    func queue(_ broker: Broker, _ name: String = "q") -> MessageQueue { broker.vhosts["/"]!.queues[name]! }

    /// A metadata change applied by both nodes.
    func both(_ command: MetadataCommand) {
        for broker in [a, b] { broker.metadataLog.propose(command) { _ in } }
    }
    var group: UInt64 { queue(a).replicated!.group }

    /// `leader` wins an election in a new term: it serves once the term's first entry is applied
    /// by everyone; every node records it.
    func elect(_ leader: Broker) {
        term += 1
        for broker in [a, b] {
            broker.replicatedQueues!.roleChanged(group: group, leads: broker === leader, term: term)
        }
        commit([nil])
        for broker in [a, b] {
            broker.metadataLog.propose(
                .queueLeader(vhost: "/", name: "q", incarnation: queue(broker).incarnation, node: leader.nodeName, term: term)) { _ in }
        }
    }

    /// Commits entries (nil: Raft's own) at the current term: both members apply them.
    func commit(_ entries: [[UInt8]?]) {
        var out: [ReplicaEntry] = []
        for data in entries {
            index += 1
            out.append(ReplicaEntry(index: index, term: term, data: data))
        }
        for broker in [a, b] { broker.replicatedQueues!.applied(group: group, snapshot: nil, entries: out) }
    }

    /// Commits everything `broker`'s member proposed so far (flushing its batch of this turn).
    func commitProposals(of broker: Broker) {
        broker.replicatedQueues!.flush()
        let log = broker === a ? logA : logB
        let batches = log.proposed
        log.proposed.removeAll()
        commit(batches)
    }
}

@Suite("Replicated queues (leader, log and members, no sockets)")
struct ReplicatedQueueTests {
    @Test("a confirm waits for the commit; the follower then holds the message")
    func confirmAfterCommit() {
        let r = TwoReplicas()
        r.elect(r.a)
        let client = TestClient.ready(r.a)
        client.send(channel: 1, .confirmSelect(ConfirmSelect()))
        client.publish(routingKey: "q", body: "m1")
        client.collect()
        #expect(!client.methods(channel: 1).contains { if case .basicAck = $0 { return true } else { return false } }, "no confirm before the commit")
        #expect(r.queue(r.b).messageCount == 0)
        r.commitProposals(of: r.a)
        client.collect()
        #expect(client.methods(channel: 1).last == .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
        #expect(r.queue(r.a).messageCount == 1 && r.queue(r.b).messageCount == 1)
    }

    @Test("leadership lost before the commit: the publish is nacked, never confirmed")
    func nackOnLeadershipLoss() {
        let r = TwoReplicas()
        r.elect(r.a)
        let client = TestClient.ready(r.a)
        client.send(channel: 1, .confirmSelect(ConfirmSelect()))
        client.publish(routingKey: "q", body: "m1")
        r.a.replicatedQueues!.flush()
        r.logA.proposed.removeAll()  // lost with the old leader's term
        r.elect(r.b)
        client.collect()
        let last = client.methods(channel: 1).last
        #expect({ if case .basicNack(let n) = last { return n.deliveryTag == 1 } else { return false } }(), "\(String(describing: last))")
        #expect(r.queue(r.b).messageCount == 0)
    }

    @Test("the new leader delivers again what the old one handed out and was not acked, marked redelivered; the old ack is ignored")
    func redeliveredAfterFailover() throws {
        let r = TwoReplicas()
        r.elect(r.a)
        let publisher = TestClient.ready(r.a)
        for body in ["m1", "m2", "m3"] { publisher.publish(routingKey: "q", body: body) }
        r.commitProposals(of: r.a)
        let consumer = TestClient.ready(r.a)
        consumer.send(channel: 1, .basicQos(BasicQos(prefetchSize: 0, prefetchCount: 10, global: false)))
        consumer.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "c")))
        consumer.collect()
        #expect(consumer.commands(channel: 1).filter { if case .basicDeliver = $0.method { return true } else { return false } }.count == 3)
        // m1 acked and committed; m2 and m3 handed out (logged as delivered), not acked.
        consumer.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1, multiple: false)))
        r.commitProposals(of: r.a)
        #expect(r.queue(r.b).messageCount == 2, "b applied the removal of m1")
        r.elect(r.b)
        // The old leader's deliveries are back among its ready messages, and acks of them do nothing.
        consumer.send(channel: 1, .basicAck(BasicAck(deliveryTag: 2, multiple: false)))
        r.a.replicatedQueues!.flush()
        #expect(r.logA.proposed.isEmpty, "an ack of the old leadership's delivery is not logged")
        #expect(r.queue(r.a).messageCount == 2)
        let next = TestClient.ready(r.b)
        next.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "d", noAck: true)))
        next.collect()
        let delivered = next.commands(channel: 1).compactMap { c -> (Bool, String)? in
            guard case .basicDeliver(let d) = c.method else { return nil }
            return (d.redelivered, String(buffer: c.body))
        }
        #expect(delivered.map(\.1) == ["m2", "m3"])
        #expect(delivered.allSatisfy { $0.0 }, "both were handed out before: redelivered")
    }

    @Test("a requeue counts a delivery on every member; the snapshot keeps counts and flags")
    func requeueAndSnapshot() throws {
        let r = TwoReplicas()
        r.elect(r.a)
        TestClient.ready(r.a).publish(routingKey: "q", body: "m1")
        r.commitProposals(of: r.a)
        let consumer = TestClient.ready(r.a)
        consumer.send(channel: 1, .basicGet(BasicGet(queue: "q", noAck: false)))
        consumer.send(channel: 1, .basicNack(BasicNack(deliveryTag: 1, multiple: false, requeue: true)))
        r.commitProposals(of: r.a)
        let data = r.queue(r.b).replicated!.snapshotData()
        let fresh = TwoReplicas()
        fresh.queue(fresh.b).replicated!.restore(data, index: 10)
        let (_, entries) = fresh.queue(fresh.b).replicaContents
        #expect(entries.count == 1)
        #expect(entries.first?.deliveryCount == 1 && entries.first?.redelivered == true)
    }
}

@Suite("Replicated queues: at-least-once dead-lettering")
struct AtLeastOnceDeadLetteringTests {
    static let arguments: FieldTable = [
        "x-dead-letter-exchange": "dlx", "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
    ]

    /// A queue "q" led by a with one message, rejected on a while "dlx" routes nowhere.
    func rejectedWhileUnroutable() -> (TwoReplicas, TestClient) {
        let r = TwoReplicas(arguments: Self.arguments)
        r.both(.declareExchange(vhost: "/", name: "dlx", type: "fanout", durable: true, autoDelete: false, internal: false, arguments: [:]))
        r.elect(r.a)
        let client = TestClient.ready(r.a)
        client.publish(routingKey: "q", body: "m1")
        r.commitProposals(of: r.a)
        client.send(channel: 1, .basicGet(BasicGet(queue: "q", noAck: false)))
        client.send(channel: 1, .basicReject(BasicReject(deliveryTag: 1, requeue: false)))
        r.commitProposals(of: r.a)
        return (r, client)
    }

    @Test("kept (its removal not logged) until a target has it; then removed everywhere and in the target with x-death")
    func keptUntilRoutable() throws {
        let (r, _) = rejectedWhileUnroutable()
        #expect(r.queue(r.b).messageCount == 1, "the follower still has it: no removal was logged")
        #expect(r.a.replicatedQueues!.byGroup[r.group]!.deadLettering.count == 1)
        // A snapshot taken now holds it, once (version, next sequence number, then the count).
        let snap = r.a.replicatedQueues!.byGroup[r.group]!.snapshotData()
        #expect(Array(snap[9..<13]) == [0, 0, 0, 1], "the snapshot holds it once")
        // A queue bound to the dead-letter exchange; the next attempt (2 s later) reaches it.
        r.both(.declareQueue(QueueDeclaration(vhost: "/", name: "dead", durable: true, node: "a@test")))
        r.both(.bind(vhost: "/", source: "dlx", destination: "dead", toExchange: false, routingKey: "", arguments: [:]))
        r.clock.now += 2_001
        r.a.replicatedQueues!.tick()
        r.commitProposals(of: r.a)
        #expect(r.queue(r.a, "dead").messageCount == 1)
        #expect(r.queue(r.b).messageCount == 0, "the removal is logged once the target has it")
        #expect(r.queue(r.a).messageCount == 0)
        #expect(r.a.replicatedQueues!.byGroup[r.group]!.deadLettering.isEmpty)
    }

    @Test("a leadership that ends before the targets have it puts it back: the next leader has it, and so does the old one")
    func backOnLeadershipLoss() throws {
        let (r, _) = rejectedWhileUnroutable()
        r.elect(r.b)
        #expect(r.queue(r.b).messageCount == 1)
        #expect(r.queue(r.a).messageCount == 1, "put back on the old leader too (the log still has it)")
        #expect(r.a.replicatedQueues!.byGroup[r.group]!.deadLettering.isEmpty)
    }

    @Test("without reject-publish it is at-most-once, as RabbitMQ 3.10: dropped when nothing is bound")
    func fallsBack() throws {
        var args = Self.arguments
        args["x-overflow"] = nil
        let r = TwoReplicas(arguments: args)
        r.both(.declareExchange(vhost: "/", name: "dlx", type: "fanout", durable: true, autoDelete: false, internal: false, arguments: [:]))
        r.elect(r.a)
        let client = TestClient.ready(r.a)
        client.publish(routingKey: "q", body: "m1")
        r.commitProposals(of: r.a)
        client.send(channel: 1, .basicGet(BasicGet(queue: "q", noAck: false)))
        client.send(channel: 1, .basicReject(BasicReject(deliveryTag: 1, requeue: false)))
        r.commitProposals(of: r.a)
        #expect(r.queue(r.b).messageCount == 0)
    }
}
