import AMQPClient
import AMQPProtocol
import ArgumentParser
import Foundation
import ManagementClient
import NIOCore
import NIOPosix
import WarrenChecker

/// `warren-cluster check HISTORY`: the checker on a recorded history (JSON lines).
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a recorded history (JSON lines): lost, unexpected, duplicated, recovered, availability. Exit 1 if anything was lost or unexpected.")
    @Argument(help: "The history file (history.jsonl of a run).") var history: String
    @Flag(help: "The report as JSON instead of the summary.") var json = false

    func run() throws {
        let text = try String(contentsOfFile: history, encoding: .utf8)
        let decoder = JSONDecoder()
        var events: [HistoryEvent] = []
        for (n, line) in text.split(separator: "\n").enumerated() where !line.isEmpty {
            do {
                events.append(try decoder.decode(HistoryEvent.self, from: Data(line.utf8)))
            } catch {
                throw DriverError("\(history):\(n + 1): not a history event: \(line.prefix(200))")
            }
        }
        let report = Checker.check(events)
        print(json ? try RunReport.json(report) : Checker.summary(report))
        if !report.ok { throw ExitCode(1) }
    }
}

enum RunReport {
    static func json(_ r: Checker.Report) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(r), as: UTF8.self)
    }
}

/// `warren-cluster run SCENARIO --dir DIR`: a workload against a quorum queue while the
/// scenario breaks the cluster; then mend, drain, check. docs/failure-testing.md.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a fault scenario under a workload against a cluster started by `up`, then check the history. Exit 1 if anything was lost or unexpected.",
        discussion: "Scenarios:\n" + Scenario.allCases.map { "  \($0.rawValue): \($0.summary)" }.joined(separator: "\n"))
    @Argument(help: "The scenario (see below).") var scenario: String
    @Option(help: "The cluster's directory (from `warren-cluster up`).") var dir: String
    @Option(help: "Seconds of workload under faults.") var duration: Double = 180
    @Option(help: "The schedule's seed.") var seed: UInt64 = 1
    @Option(help: "Scale of every wait of the schedule (1: faults every 10-30 s; 0.2 for short runs).") var pace: Double = 1
    @Option(help: "Publishers (each with confirms, one message in flight).") var publishers = 2
    @Option(help: "Push consumers (manual ack); a basic.get poller runs too.") var consumers = 2
    @Option(help: "The queue (a quorum queue of 3 members, declared if missing).") var queue = "jepsen"
    @Option(
        help: ArgumentHelp(
            "queue: publish to the queue and consume it. dead-letter: publish to QUEUE-source (at-least-once dead-lettering into QUEUE through the exchange QUEUE.dlx), where consumers reject everything; consume QUEUE. federation: publish to QUEUE in vhost /, consume QUEUE in vhost federated, a queue federated from it (ack-mode on-confirm, the upstream URIs every node).",
            valueName: "queue|dead-letter|federation")) var workload = "queue"
    @Option(help: "Where the history (history.jsonl) and report (report.json) go (default: DIR/run-SCENARIO-SEED).") var out: String?

    func run() async throws {
        guard let sc = Scenario(rawValue: scenario) else {
            throw ValidationError("unknown scenario '\(scenario)'; one of: \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let layout = try ClusterLayout.load(dir)
        let outDir = out ?? (dir as NSString).appendingPathComponent("run-\(sc.rawValue)-\(seed)")
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let history = HistoryRecorder()
        guard ["queue", "dead-letter", "federation"].contains(workload) else { throw ValidationError("--workload: queue, dead-letter or federation") }
        let queues = try await declare(layout, group: group)
        var w = Workload(ports: layout.nodes.map(\.amqp), names: layout.nodes.map(\.name), queue: queue, history: history, group: group)
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
        FileHandle.standardError.write(Data("running \(sc.rawValue) (seed \(seed)) for \(Int(duration)) s on \(layout.nodes.count) nodes ...\n".utf8))
        let faults = FaultRunner(dir: dir, scenario: sc, queue: queue, history: history, seed: seed, pace: pace)
        if sc == .federationCut && workload != "federation" { throw ValidationError("federation-cut needs --workload federation") }
        faults.start()
        try await Task.sleep(for: .milliseconds(Int64(duration * 1000)))
        faults.stop.set()
        while !faults.done.isSet { try await Task.sleep(for: .milliseconds(50)) }
        // Mend, then publish a little longer (the cluster must serve again), then drain.
        history.record(.heal, info: "mend everything")
        try faults.mend()
        try Health.wait(try ClusterLayout.load(dir), timeout: 120)
        try await Task.sleep(for: .seconds(2))
        stopPublishing.set()
        for t in tasks { await t.value }
        let drainedBy = Date().addingTimeInterval(120)
        while Date() < drainedBy {
            try await Task.sleep(for: .milliseconds(250))
            // Empty queues deliver nothing more; 2 s of quiet catches a late redelivery in flight.
            let quiet = history.lastDelivery.map { Date().timeIntervalSince($0) > 2 } ?? true
            let left = try? queues.reduce(0) { $0 + (try messagesLeft(try ClusterLayout.load(dir), $1.name, vhost: $1.vhost)) }
            if quiet, left == 0 { break }
        }
        stopConsuming.set()
        for t in consumerTasks { await t.value }
        try? await group.shutdownGracefully()
        try history.write(to: (outDir as NSString).appendingPathComponent("history.jsonl"))
        let report = Checker.check(history.snapshot)
        try RunReport.json(report).write(toFile: (outDir as NSString).appendingPathComponent("report.json"), atomically: true, encoding: .utf8)
        print("\(sc.rawValue), seed \(seed), \(layout.nodes.count) nodes, \(Int(duration)) s (history: \(outDir)/history.jsonl)")
        print(Checker.summary(report))
        for e in faults.errors { print("fault schedule error: \(e)") }
        if !report.ok || !faults.errors.isEmpty { throw ExitCode(1) }
    }

    /// The quorum queue, declared through node 1 (3 members, or the cluster's size); for the
    /// dead-letter workload also its source queue, dead-lettering at-least-once (which needs
    /// reject-publish) through a direct exchange bound to it.
    func declare(_ layout: ClusterLayout, group: MultiThreadedEventLoopGroup) async throws -> [(name: String, vhost: String)] {
        let c = try await AMQPClientConnection.connect(AMQPClientConfiguration(port: layout.nodes[0].amqp), eventLoopGroup: group)
        let ch = try await c.openChannel()
        let quorum: FieldTable = ["x-queue-type": "quorum", "x-quorum-initial-group-size": .int32(3)]
        try await ch.queueDeclare(queue, durable: true, arguments: quorum)
        var queues = [(name: queue, vhost: "/")]
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
            queues.append((queue + "-source", "/"))
        }
        try await c.close()
        if workload == "federation" {
            try federate(layout)
            let d = try await AMQPClientConnection.connect(
                AMQPClientConfiguration(port: layout.nodes[0].amqp, virtualHost: Self.federatedVhost), eventLoopGroup: group)
            try await d.openChannel().queueDeclare(queue, durable: true, arguments: quorum)
            try await d.close()
            queues.append((queue, Self.federatedVhost))
        }
        for q in queues { try waitFor("every node to know \(q.name)", timeout: 30) { (try? messagesLeft(layout, q.name, vhost: q.vhost)) != nil } }
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

    /// Messages in a queue (ready and unacknowledged), as its leader says.
    func messagesLeft(_ layout: ClusterLayout, _ queue: String, vhost: String) throws -> Int {
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
