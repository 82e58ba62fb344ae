import Foundation
import ManagementClient
#if canImport(Glibc)
    import Glibc
#endif

/// Starting, stopping and signalling one node of the layout.
enum NodeControl {
    /// Starts node `i` with its recorded command line; returns once its AMQP port accepts.
    static func start(_ layout: inout ClusterLayout, _ i: Int, dir: String, timeout: TimeInterval = 30, extra: [String] = []) throws {
        var n = layout.nodes[i]
        if let pid = n.pid, Processes.runs(pid, program: layout.binary) {
            throw DriverError("\(n.name) already runs (pid \(pid))")
        }
        let pid = try Processes.spawn(n.argv + extra, log: n.log, env: n.env ?? [:])
        n.pid = pid
        n.state = "running"
        layout.nodes[i] = n
        try layout.save(dir)
        try waitFor("\(n.name) to accept AMQP connections (log: \(n.log))", timeout: timeout) {
            guard Processes.alive(pid) else { throw DriverError("\(n.name) exited at start; see \(n.log)") }
            return Processes.accepts(n.amqp)
        }
    }

    /// SIGTERM and wait for a graceful exit (SIGKILL after `timeout`).
    static func stop(_ layout: inout ClusterLayout, _ i: Int, timeout: TimeInterval = 30) -> String {
        guard let pid = layout.nodes[i].pid, Processes.runs(pid, program: layout.binary) else {
            layout.nodes[i].state = "stopped"
            return "\(layout.nodes[i].name) was not running"
        }
        kill(pid, SIGCONT)  // a paused node cannot stop
        kill(pid, SIGTERM)
        var how = "stopped"
        if !Processes.waitExit(pid, timeout: timeout) {
            kill(pid, SIGKILL)
            _ = Processes.waitExit(pid, timeout: 10)
            how = "killed after \(Int(timeout)) s of SIGTERM"
        }
        layout.nodes[i].state = "stopped"
        layout.nodes[i].pid = nil
        return "\(layout.nodes[i].name) \(how)"
    }

    static func kill9(_ layout: inout ClusterLayout, _ i: Int) throws -> String {
        guard let pid = layout.nodes[i].pid, Processes.runs(pid, program: layout.binary) else {
            layout.nodes[i].state = "stopped"
            return "\(layout.nodes[i].name) was not running"
        }
        kill(pid, SIGKILL)
        guard Processes.waitExit(pid, timeout: 10) else { throw DriverError("\(layout.nodes[i].name) (pid \(pid)) survived SIGKILL for 10 s") }
        layout.nodes[i].state = "stopped"
        layout.nodes[i].pid = nil
        return "\(layout.nodes[i].name) killed"
    }

    static func signal(_ layout: inout ClusterLayout, _ i: Int, _ sig: Int32, state: String) throws -> String {
        guard let pid = layout.nodes[i].pid, Processes.runs(pid, program: layout.binary) else {
            throw DriverError("\(layout.nodes[i].name) is not running")
        }
        kill(pid, sig)
        layout.nodes[i].state = state
        return "\(layout.nodes[i].name) \(state)"
    }
}

/// What "healthy" means: every node the driver believes running answers its management API,
/// sees every other such node, and all agree on one metadata leader, with every running node
/// a voter.
enum Health {
    static func problems(_ layout: ClusterLayout) -> [String] {
        let expected = layout.nodes.filter { $0.state == "running" }
        var problems: [String] = []
        var leaders: Set<String> = []
        for n in expected {
            guard let pid = n.pid, Processes.alive(pid) else {
                problems.append("\(n.name): process gone")
                continue
            }
            var client = ManagementClient(host: "127.0.0.1", port: n.management, user: "guest", password: "guest")
            client.timeout = 2
            guard let status = (try? client.call("GET", "/api/warren/cluster")) as? [String: Any] else {
                problems.append("\(n.name): management API does not answer")
                continue
            }
            let running = Set(status["running_nodes"] as? [String] ?? [])
            let voters = Set(status["voters"] as? [String] ?? [])
            let missing = expected.map(\.name).filter { !running.contains($0) }
            if !missing.isEmpty { problems.append("\(n.name): does not see \(missing.joined(separator: ", "))") }
            let notVoting = expected.map(\.name).filter { !voters.contains($0) }
            if !notVoting.isEmpty { problems.append("\(n.name): \(notVoting.joined(separator: ", ")) not (yet) voting") }
            if let leader = status["metadata_leader"] as? String { leaders.insert(leader) } else { problems.append("\(n.name): knows no metadata leader") }
            // The queue sessions too: a node that just restarted takes clients a moment before
            // its publishes to other nodes' queues go through (they would be nacked).
            let links = Set(status["queue_links"] as? [String] ?? [])
            let noLink = expected.map(\.name).filter { $0 != n.name && !links.contains($0) }
            if !noLink.isEmpty { problems.append("\(n.name): queue session with \(noLink.joined(separator: ", ")) not (yet) up") }
        }
        if leaders.count > 1 { problems.append("nodes disagree on the metadata leader: \(leaders.sorted().joined(separator: ", "))") }
        return problems
    }

    static func wait(_ layout: ClusterLayout, timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let p = problems(layout)
            if p.isEmpty { return }
            if Date() >= deadline { throw DriverError("the cluster is not healthy after \(Int(timeout)) s: \(p.joined(separator: "; "))") }
            usleep(100_000)
        }
    }
}
