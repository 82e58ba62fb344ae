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
        try await declare(layout, group: group)
        var workload = Workload(ports: layout.nodes.map(\.amqp), names: layout.nodes.map(\.name), queue: queue, history: history, group: group)
        workload.publishers = publishers
        workload.consumers = consumers
        let stopPublishing = StopFlag()
        let stopConsuming = StopFlag()
        let w = workload
        var tasks: [Task<Void, Never>] = []
        for p in 0..<publishers { tasks.append(Task { await w.publish(p, stop: stopPublishing) }) }
        var consumerTasks: [Task<Void, Never>] = []
        for c in 0..<consumers { consumerTasks.append(Task { await w.consume(c, stop: stopConsuming) }) }
        consumerTasks.append(Task { await w.poll(stop: stopConsuming) })
        FileHandle.standardError.write(Data("running \(sc.rawValue) (seed \(seed)) for \(Int(duration)) s on \(layout.nodes.count) nodes ...\n".utf8))
        let faults = FaultRunner(dir: dir, scenario: sc, queue: queue, history: history, seed: seed, pace: pace)
        faults.start()
        try await Task.sleep(for: .milliseconds(Int64(duration * 1000)))
        faults.stop.set()
        while !faults.done.isSet { try await Task.sleep(for: .milliseconds(50)) }
        // Mend, then publish a little longer (the cluster must serve again), then drain.
        history.record(.heal, info: "mend everything")
        try faults.mend()
        try Health.wait(try ClusterLayout.load(dir), timeout: 120)
        try await Task.sleep(for: .seconds(3))
        stopPublishing.set()
        for t in tasks { await t.value }
        let drainedBy = Date().addingTimeInterval(120)
        while Date() < drainedBy {
            try await Task.sleep(for: .milliseconds(500))
            let quiet = history.lastDelivery.map { Date().timeIntervalSince($0) > 5 } ?? true
            if quiet, (try? messagesLeft(try ClusterLayout.load(dir))) == 0 { break }
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

    /// The quorum queue, declared through node 1 (3 members, or the cluster's size).
    func declare(_ layout: ClusterLayout, group: MultiThreadedEventLoopGroup) async throws {
        let c = try await AMQPClientConnection.connect(AMQPClientConfiguration(port: layout.nodes[0].amqp), eventLoopGroup: group)
        let ch = try await c.openChannel()
        try await ch.queueDeclare(queue, durable: true, arguments: ["x-queue-type": "quorum", "x-quorum-initial-group-size": .int32(3)])
        try await c.close()
        try waitFor("every node to know \(queue)", timeout: 30) { (try? messagesLeft(layout)) != nil }
    }

    /// Messages in the queue (ready and unacknowledged), as its leader says.
    func messagesLeft(_ layout: ClusterLayout) throws -> Int {
        for n in layout.nodes where n.state == "running" {
            var client = ManagementClient(host: "127.0.0.1", port: n.management, user: "guest", password: "guest")
            client.timeout = 2
            if let q = (try? client.call("GET", "/api/queues/\(ManagementClient.segment("/"))/\(ManagementClient.segment(queue))")) as? [String: Any],
                let m = q["messages"] as? Int
            {
                return m
            }
        }
        throw DriverError("no node answers for \(queue)")
    }
}
