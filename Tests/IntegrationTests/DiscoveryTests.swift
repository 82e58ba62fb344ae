import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing
import WarrenCluster
import WarrenCore
import WarrenNode

/// Pods of a StatefulSet in this process: cluster_discovery = dns:svc, with a resolver that
/// knows the pods started so far (what DNS of a headless service with publishNotReadyAddresses
/// says).
@Suite("DNS peer discovery in process")
struct DiscoveryInProcessTests {
    final class FakeDNS: Sendable {
        let table = NIOLockedValueBox<[String: String]>([:])
        func add(_ pod: Int, port: Int) { table.withLockedValue { $0["warren-\(pod).svc"] = "127.0.0.1:\(port)" } }
        var resolver: @Sendable (String) -> String? { { [table] name in table.withLockedValue { $0[name] } } }
    }

    static func pod(_ k: Int, port: Int, dns: FakeDNS, dataDirectory: String? = nil) async throws -> TestNode {
        try await TestNode.start { c in
            c.nodeName = "warren@warren-\(k).svc"
            c.clusterPort = port
            c.clusterAddress = "127.0.0.1:\(port)"
            c.clusterDiscovery = "dns:svc"
            c.discoveryResolver = dns.resolver
            c.clusterSecret = "discovery-secret"
            c.metadataTimeoutSeconds = 3
            if let dataDirectory { c.dataDirectory = dataDirectory }
        }
    }

    /// Polls (bounded) until the node's view of the cluster satisfies `check`.
    static func eventually(_ node: TestNode, _ what: String, _ check: @escaping @Sendable (ClusterNode.View) -> Bool) async throws {
        let cluster = node.node.cluster
        for _ in 0..<600 {
            if try await cluster.loop.submit({ check(cluster.view()) }).get() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("timed out waiting for \(what)")
    }

    @Test("three pods started at the same moment form one cluster founded by pod 0; a scaled-up pod joins; a pod restarted with its volume rejoins; pod 0 without its volume joins instead of founding")
    func lifecycle() async throws {
        let dns = FakeDNS()
        let ports = try (0..<4).map { _ in try ClusterInProcessTests.freePort() }
        for k in 0..<3 { dns.add(k, port: ports[k]) }
        var pods: [Int: TestNode] = [:]
        try await withThrowingTaskGroup(of: (Int, TestNode).self) { group in
            for k in 0..<3 { group.addTask { (k, try await Self.pod(k, port: ports[k], dns: dns)) } }
            for try await (k, node) in group { pods[k] = node }
        }
        defer { for p in pods.values { Task { try? await p.stop() } } }
        for (k, p) in pods { try await Self.eventually(p, "pod \(k) to see three voters") { $0.voters.count == 3 } }
        #expect(pods[0]!.logs.contains("founded a new cluster"))
        #expect(!pods[1]!.logs.contains("founded a new cluster") && !pods[2]!.logs.contains("founded a new cluster"))
        let leaders = try await withThrowingTaskGroup(of: String?.self) { g in
            for p in pods.values { g.addTask { try await p.node.cluster.loop.submit { p.node.cluster.view().leader }.get() } }
            var all: Set<String?> = []
            for try await l in g { all.insert(l) }
            return all
        }
        #expect(leaders.count == 1 && leaders.first! != nil, "one cluster, one leader: \(leaders)")

        // Scaled up: pod 3 appears in DNS and joins.
        dns.add(3, port: ports[3])
        pods[3] = try await Self.pod(3, port: ports[3], dns: dns)
        try await Self.eventually(pods[0]!, "four voters") { $0.voters.count == 4 }
        #expect(!pods[3]!.logs.contains("founded a new cluster"))

        // Pod 1 restarted with its volume: back from its own log, a member again.
        let dir1 = pods[1]!.node.configuration.dataDirectory
        try await pods[1]!.stop()
        pods[1] = try await Self.pod(1, port: ports[1], dns: dns, dataDirectory: dir1)
        try await Self.eventually(pods[1]!, "pod 1 back with four voters") { $0.voters.count == 4 && $0.leader != nil }
        #expect(pods[1]!.logs.contains("metadata log recovered"))

        // Pod 0 rescheduled without its volume while the others run: it must not found a
        // second cluster; it asks its peers, hears they are members, and joins them.
        try await pods[0]!.stop()
        pods[0] = try await Self.pod(0, port: ports[0], dns: dns)
        try await Self.eventually(pods[0]!, "the new pod 0 in the cluster") { $0.voters.count == 4 && $0.leader != nil }
        #expect(!pods[0]!.logs.contains("founded a new cluster"))
    }
}

