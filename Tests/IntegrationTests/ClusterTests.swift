import AMQPClient
import AMQPProtocol
import Foundation
import NIOCore
import NIOPosix
import Testing
import WarrenCluster
import WarrenCore
import WarrenNode

/// Three nodes in this process, clustered over loopback, driven with AMQPClient (the Python
/// suite drives real processes through warren-cluster; this one runs with the Swift tests).
@Suite("Cluster in process")
struct ClusterInProcessTests {
    static func freePort() throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress?.port ?? 0
        try channel.close().wait()
        return port
    }

    static func startCluster(_ n: Int) async throws -> [TestNode] {
        let ports = try (0..<n).map { _ in try freePort() }
        let seeds = ports.map { "127.0.0.1:\($0)" }
        var nodes: [TestNode] = []
        // The first seed founds; the others join it (started together, as a deployment would).
        try await withThrowingTaskGroup(of: (Int, TestNode).self) { group in
            for i in 0..<n {
                group.addTask {
                    let node = try await TestNode.start { c in
                        c.nodeName = "it-\(i + 1)@localhost"
                        c.clusterPort = ports[i]
                        c.clusterAddress = seeds[i]
                        c.clusterSeeds = seeds
                        c.clusterSecret = "in-process-secret"
                        c.metadataTimeoutSeconds = 3
                    }
                    return (i, node)
                }
            }
            var started: [(Int, TestNode)] = []
            for try await r in group { started.append(r) }
            nodes = started.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return nodes
    }

    /// Polls (bounded) until `check` holds on the node's broker.
    static func eventually(_ node: TestNode, _ what: String, _ check: @escaping @Sendable (Broker) -> Bool) async throws {
        for _ in 0..<400 {
            if try await node.node.withBroker(check) { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("timed out waiting for \(what)")
    }

    /// Polls (bounded) until all `n` members vote in the metadata group (a joined node is a
    /// learner until it caught up; stopping another node before that leaves no majority).
    static func waitForVoters(_ node: TestNode, _ n: Int) async throws {
        let cluster = node.node.cluster
        for _ in 0..<400 {
            if try await cluster.loop.submit({ cluster.view().voters.count }).get() == n { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("timed out waiting for \(n) voters")
    }

    @Test("definitions made through AMQPClient on one node reach the others; a stopped node's peers go on")
    func replication() async throws {
        let nodes = try await Self.startCluster(3)
        var stopped: Set<Int> = []
        defer {
            for (i, n) in nodes.enumerated() where !stopped.contains(i) { Task { try? await n.stop() } }
        }
        // Every node sees three members once formed, and all three vote.
        for n in nodes {
            try await Self.eventually(n, "three members") { $0.clusterNodes.count == 3 }
        }
        try await Self.waitForVoters(nodes[0], 3)
        let conn = try await nodes[1].connect()
        let ch = try await conn.openChannel()
        try await ch.exchangeDeclare("it.x", type: "topic", durable: true)
        try await ch.queueDeclare("it.q", durable: true)
        try await ch.queueBind("it.q", exchange: "it.x", routingKey: "k.#")
        try await conn.close()
        for (i, n) in nodes.enumerated() {
            try await Self.eventually(n, "node \(i + 1) to have it.q bound to it.x") { b in
                guard let v = b.vhosts["/"], v.queues["it.q"] != nil, let x = v.exchanges["it.x"] else { return false }
                return x.bindings.contains { $0.routingKey == "k.#" }
            }
        }
        // Node 1 (the founder, and likely the leader) stops; the two others still make changes.
        try await nodes[0].stop()
        stopped.insert(0)
        // Until the two elect a leader a change fails (541 closes the connection): connect again.
        var declared = false
        for _ in 0..<40 where !declared {
            do {
                let c = try await nodes[2].connect()
                try await c.openChannel().queueDeclare("it.after", durable: true)
                declared = true
                try? await c.close()
            } catch {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(declared, "the two remaining nodes form a majority")

        try await Self.eventually(nodes[1], "node 2 to have it.after") { $0.vhosts["/"]?.queues["it.after"] != nil }
        for i in 1..<3 {
            try await nodes[i].stop()
            stopped.insert(i)
        }
    }

    @Test("AMQPClient: publish with confirms on node 2 into a queue on node 1, consume on node 3, get and ack across nodes")
    func clientsOnAnyNode() async throws {
        let nodes = try await Self.startCluster(3)
        defer { for n in nodes { Task { try? await n.stop() } } }
        for n in nodes { try await Self.eventually(n, "three members") { $0.clusterNodes.count == 3 } }
        let home = try await nodes[0].connect()
        try await home.openChannel().queueDeclare("it.xq", durable: true)
        for n in nodes { try await Self.eventually(n, "it.xq everywhere") { $0.vhosts["/"]?.queues["it.xq"] != nil } }
        #expect(try await nodes[2].node.withBroker { $0.vhosts["/"]!.queues["it.xq"]!.homeNode } == "it-1@localhost")

        let publisher = try await nodes[1].connect()
        let pch = try await publisher.openChannel()
        try await pch.confirmSelect()
        let n = 500
        for i in 0..<n {
            try await pch.basicPublish(routingKey: "it.xq", body: "\(i)", properties: i % 2 == 0 ? BasicProperties(deliveryMode: 2) : .empty)
        }
        try await pch.waitForConfirms()
        // All of them on node 1, the home.
        try await Self.eventually(nodes[0], "500 messages on the home node") { $0.vhosts["/"]!.queues["it.xq"]!.messageCount == n }

        let consumer = try await nodes[2].connect()
        let cch = try await consumer.openChannel()
        // basic.get from node 3, nacked back, then consumed in order with the rest.
        let first = try #require(try await cch.basicGet(queue: "it.xq"))
        #expect(String(buffer: first.body) == "0" && first.messageCount == UInt32(n - 1))
        try await cch.basicNack(first.deliveryTag, requeue: true)
        try await cch.basicQos(prefetchCount: 50)
        let sub = try await cch.basicConsume(queue: "it.xq")
        var got: [String] = []
        for await d in sub.deliveries {
            got.append(String(buffer: d.body))
            try await cch.basicAck(d.deliveryTag)
            if got.count == n { break }
        }
        #expect(got == (0..<n).map { "\($0)" })
        try await Self.eventually(nodes[0], "the home node's queue empty, nothing unacked") { b in
            let q = b.vhosts["/"]!.queues["it.xq"]!
            return q.messageCount == 0 && q.unackedCount == 0
        }
        try? await publisher.close()
        try? await consumer.close()
        try? await home.close()
    }
}
