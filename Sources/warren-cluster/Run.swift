import AMQPClient
import AMQPProtocol
import ArgumentParser
import Foundation
import ManagementClient
import NIOCore
import NIOPosix
import WarrenChecker

/// `warren-cluster run SCENARIO --dir DIR`: a workload against a quorum queue while the
/// scenario breaks the cluster; then mend, drain, check. With `--uris` instead of `--dir`, the
/// workload runs against any cluster (RabbitMQ's too) while you break it your own way: the
/// scenario must be `none` then. docs/failure-testing.md.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a fault scenario under a workload against a cluster started by `up` (or a workload alone against any cluster's URIs), then check the history. Exit 1 if anything was lost or unexpected.",
        discussion: "Scenarios:\n" + Scenario.allCases.map { "  \($0.rawValue): \($0.summary)" }.joined(separator: "\n"))
    @Argument(help: "The scenario (see below).") var scenario: String
    @Option(help: "The cluster's directory (from `warren-cluster up`).") var dir: String?
    @Option(
        help: ArgumentHelp(
            "Instead of --dir: the nodes of any running cluster, as AMQP URIs separated by commas (amqp://user:pass@host:port/vhost). Scenario `none` only: the driver cannot break a cluster it did not start.",
            valueName: "uris")) var uris: String?
    @Option(help: "Seconds of workload under faults.") var duration: Double = 180
    @Option(help: "The schedule's seed.") var seed: UInt64 = 1
    @Option(help: "Scale of every wait of the schedule (1: faults every 10-30 s; 0.2 for short runs).") var pace: Double = 1
    @Option(help: "Publishers (each with confirms, one message in flight).") var publishers = 2
    @Option(help: "Push consumers (manual ack); a basic.get poller runs too.") var consumers = 2
    @Option(help: "The queue (a quorum queue of 3 members, declared if missing).") var queue = "jepsen"
    @Option(
        help: ArgumentHelp(
            "queue: publish to the queue and consume it. dead-letter: publish to QUEUE-source (at-least-once dead-lettering into QUEUE through the exchange QUEUE.dlx), where consumers reject everything; consume QUEUE. federation (--dir only): publish to QUEUE in vhost /, consume QUEUE in vhost federated, a queue federated from it (ack-mode on-confirm, the upstream URIs every node).",
            valueName: "queue|dead-letter|federation")) var workload = "queue"
    @Option(help: "Where the history (history.jsonl) and report (report.json) go (default: DIR/run-SCENARIO-SEED, or ./run-SCENARIO-SEED with --uris).") var out: String?

    func run() async throws {
        guard let sc = Scenario(rawValue: scenario) else {
            throw ValidationError("unknown scenario '\(scenario)'; one of: \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard ["queue", "dead-letter", "federation"].contains(workload) else { throw ValidationError("--workload: queue, dead-letter or federation") }
        if sc == .federationCut && workload != "federation" { throw ValidationError("federation-cut needs --workload federation") }
        let target: Target
        switch (dir, uris) {
        case (let dir?, nil): target = .driver(dir: dir, layout: try ClusterLayout.load(dir))
        case (nil, let uris?):
            guard sc == .none else { throw ValidationError("with --uris the scenario is `none`: break the cluster your own way while the workload runs") }
            guard workload != "federation" else { throw ValidationError("the federation workload needs a cluster started by `up` (--dir)") }
            target = .uris(try uris.split(separator: ",").map { try AMQPClientConfiguration(url: String($0)) })
        default: throw ValidationError("give either --dir (a cluster from `up`) or --uris")
        }
        let outDir = out ?? ((dir ?? ".") as NSString).appendingPathComponent("run-\(sc.rawValue)-\(seed)")
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let history = HistoryRecorder()
        let queues = try await declare(target, group: group)
        var w = Workload(endpoints: target.endpoints, names: target.names, queue: queue, history: history, group: group)
        w.publishers = publishers
        w.consumers = consumers
        if workload == "dead-letter" { w.deadLetterFrom = queue + "-source" }
        if workload == "federation" { w.consumeVhost = Self.federatedVhost }
        let stopPublishing = StopFlag()
        let stopConsuming = StopFlag()
        let clients = w
        var tasks: [Task<Void, Never>] = []
        for p in 0..<publishers { tasks.append(Task { await clients.publish(p, stop: stopPublishing) }) }
        var consumerTasks: [Task<Void, Never>] = []
        for c in 0..<consumers { consumerTasks.append(Task { await clients.consume(c, stop: stopConsuming) }) }
        consumerTasks.append(Task { await clients.poll(stop: stopConsuming) })
        if clients.deadLetterFrom != nil {
            for r in 0..<clients.rejecters { consumerTasks.append(Task { await clients.reject(r, stop: stopConsuming) }) }
        }
        FileHandle.standardError.write(Data("running \(sc.rawValue) (seed \(seed)) for \(Int(duration)) s on \(target.names.count) nodes ...\n".utf8))
        var faults: FaultRunner?
        if case .driver(let dir, _) = target {
            faults = FaultRunner(dir: dir, scenario: sc, queue: queue, history: history, seed: seed, pace: pace)
            faults?.start()
        }
        try await Task.sleep(for: .milliseconds(Int64(duration * 1000)))
        if let faults, case .driver(let dir, _) = target {
            faults.stop.set()
            while !faults.done.isSet { try await Task.sleep(for: .milliseconds(50)) }
            // Mend, then publish a little longer (the cluster must serve again), then drain.
            history.record(.heal, info: "mend everything")
            try faults.mend()
            try Health.wait(try ClusterLayout.load(dir), timeout: 120)
        }
        try await Task.sleep(for: .seconds(2))
        stopPublishing.set()
        for t in tasks { await t.value }
        let drainedBy = Date().addingTimeInterval(120)
        while Date() < drainedBy {
            try await Task.sleep(for: .milliseconds(250))
            // Empty queues deliver nothing more; 2 s of quiet catches a late redelivery in flight.
            let quiet = history.lastDelivery.map { Date().timeIntervalSince($0) > 2 } ?? true
            guard quiet else { continue }
            var left = 0
            for q in queues { left += (try? await messagesLeft(target, q.name, vhost: q.vhost, group: group)) ?? 1 }
            if left == 0 { break }
        }
        stopConsuming.set()
        for t in consumerTasks { await t.value }
        try? await group.shutdownGracefully()
        try history.write(to: (outDir as NSString).appendingPathComponent("history.jsonl"))
        let report = Checker.check(history.snapshot)
        try RunReport.json(report).write(toFile: (outDir as NSString).appendingPathComponent("report.json"), atomically: true, encoding: .utf8)
        print("\(sc.rawValue), seed \(seed), \(target.names.count) nodes, \(Int(duration)) s (history: \(outDir)/history.jsonl)")
        print(Checker.summary(report))
        for e in faults?.errors ?? [] { print("fault schedule error: \(e)") }
        if !report.ok || !(faults?.errors.isEmpty ?? true) { throw ExitCode(1) }
    }

    /// A cluster `up` started (its faults are the driver's), or nodes given by URI.
    enum Target {
        case driver(dir: String, layout: ClusterLayout)
        case uris([AMQPClientConfiguration])

        var endpoints: [AMQPClientConfiguration] {
            switch self {
            case .driver(_, let layout): return layout.nodes.map { AMQPClientConfiguration(port: $0.amqp) }
            case .uris(let list): return list
            }
        }
        var names: [String] {
            switch self {
            case .driver(_, let layout): return layout.nodes.map(\.name)
            case .uris(let list): return list.map { "\($0.host):\($0.port)" }
            }
        }
    }

    /// The quorum queue, declared through the first node (3 members, or the cluster's size);
    /// for the dead-letter workload also its source queue, dead-lettering at-least-once (which
    /// needs reject-publish) through a direct exchange bound to it.
    func declare(_ target: Target, group: MultiThreadedEventLoopGroup) async throws -> [(name: String, vhost: String)] {
        let first = target.endpoints[0]
        let c = try await AMQPClientConnection.connect(first, eventLoopGroup: group)
        let ch = try await c.openChannel()
        let quorum: FieldTable = ["x-queue-type": "quorum", "x-quorum-initial-group-size": .int32(3)]
        try await ch.queueDeclare(queue, durable: true, arguments: quorum)
        var queues = [(name: queue, vhost: first.virtualHost)]
        if workload == "dead-letter" {
            let dlx = queue + ".dlx"
            try await ch.exchangeDeclare(dlx, type: "direct", durable: true)
            try await ch.queueBind(queue, exchange: dlx, routingKey: queue)
            var source = quorum
            source["x-dead-letter-exchange"] = .string(dlx)
            source["x-dead-letter-routing-key"] = .string(queue)
            source["x-dead-letter-strategy"] = "at-least-once"
            source["x-overflow"] = "reject-publish"
            try await ch.queueDeclare(queue + "-source", durable: true, arguments: source)
            queues.append((queue + "-source", first.virtualHost))
        }
        try await c.close()
        guard case .driver(_, let layout) = target else { return queues }
        if workload == "federation" {
            try federate(layout)
            var downstream = first
            downstream.virtualHost = Self.federatedVhost
            let d = try await AMQPClientConnection.connect(downstream, eventLoopGroup: group)
            try await d.openChannel().queueDeclare(queue, durable: true, arguments: quorum)
            try await d.close()
            queues.append((queue, Self.federatedVhost))
        }
        for q in queues {
            try waitFor("every node to know \(q.name)", timeout: 30) { (try? Self.messagesOnLeader(layout, q.name, vhost: q.vhost)) != nil }
        }
        return queues
    }

    static let federatedVhost = "federated"

    /// The federation workload's downstream: a vhost whose QUEUE is federated from QUEUE in
    /// "/", the upstream URIs every node of the cluster (the link moves on when one goes).
    func federate(_ layout: ClusterLayout) throws {
        var api = ManagementClient(host: "127.0.0.1", port: layout.nodes[0].management, user: "guest", password: "guest")
        api.timeout = 10
        let v = ManagementClient.segment(Self.federatedVhost)
        _ = try api.call("PUT", "/api/vhosts/\(v)", body: [String: Any]())
        _ = try api.call("PUT", "/api/permissions/\(v)/guest", body: ["configure": ".*", "write": ".*", "read": ".*"])
        let uris = layout.nodes.map { "amqp://guest:guest@127.0.0.1:\($0.amqp)/%2f" }
        _ = try api.call(
            "PUT", "/api/parameters/federation-upstream/\(v)/\(queue)-upstream",
            body: ["value": ["uri": uris, "ack-mode": "on-confirm", "reconnect-delay": 1] as [String: Any]])
        _ = try api.call(
            "PUT", "/api/policies/\(v)/\(queue)-federation",
            body: ["pattern": "^\(NSRegularExpression.escapedPattern(for: queue))$", "apply-to": "queues", "definition": ["federation-upstream": "\(queue)-upstream"]] as [String: Any])
    }

    /// Messages left in a queue: ready and unacknowledged as its leader's API says (a driver
    /// cluster), or ready as a passive declare says (any cluster; the workload's consumers ack
    /// at once, so what they hold drains with them).
    func messagesLeft(_ target: Target, _ queue: String, vhost: String, group: MultiThreadedEventLoopGroup) async throws -> Int {
        switch target {
        case .driver(let dir, _): return try Self.messagesOnLeader(try ClusterLayout.load(dir), queue, vhost: vhost)
        case .uris(let list):
            for var endpoint in list {
                endpoint.virtualHost = vhost
                guard let c = try? await AMQPClientConnection.connect(endpoint, eventLoopGroup: group) else { continue }
                let ok = try? await c.openChannel().queueDeclare(queue, passive: true)
                try? await c.close()
                if let ok { return Int(ok.messageCount) }
            }
            throw DriverError("no node answers for \(queue)")
        }
    }

    static func messagesOnLeader(_ layout: ClusterLayout, _ queue: String, vhost: String) throws -> Int {
        for n in layout.nodes where n.state == "running" {
            var client = ManagementClient(host: "127.0.0.1", port: n.management, user: "guest", password: "guest")
            client.timeout = 2
            if let q = (try? client.call("GET", "/api/queues/\(ManagementClient.segment(vhost))/\(ManagementClient.segment(queue))")) as? [String: Any],
                let m = q["messages"] as? Int
            {
                return m
            }
        }
        throw DriverError("no node answers for \(queue)")
    }
}
