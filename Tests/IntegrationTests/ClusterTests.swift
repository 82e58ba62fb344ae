import AMQPClient
import AMQPProtocol
import Foundation
import NIOCore
import NIOPosix
import Testing
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

    @Test("definitions made through AMQPClient on one node reach the others; a stopped node's peers go on")
    func replication() async throws {
        let nodes = try await Self.startCluster(3)
        var stopped: Set<Int> = []
        defer {
            for (i, n) in nodes.enumerated() where !stopped.contains(i) { Task { try? await n.stop() } }
        }
        // Every node sees three members once formed.
        for n in nodes {
            try await Self.eventually(n, "three members") { $0.clusterNodes.count == 3 }
        }
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
}
