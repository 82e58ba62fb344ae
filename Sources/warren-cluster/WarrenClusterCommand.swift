import ArgumentParser
import Foundation
import ManagementClient
#if canImport(Glibc)
    import Glibc
#endif

/// `warren-cluster`: starts local Warren clusters and breaks and heals them, for failover tests
/// (docs/cluster-driver.md). Every verb is a process of its own; the cluster is found through
/// `--dir`.
@main
struct WarrenClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-cluster",
        abstract: "Start, break and heal a local Warren cluster (for failover tests).",
        subcommands: [
            Up.self, Status.self, Kill.self, Stop.self, Start.self, Pause.self, Resume.self, Partition.self, Drop.self,
            Delay.self, Loss.self, Heal.self, WaitHealthy.self, Down.self, Proxy.self, Run.self, Check.self,
        ])

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let error as DriverError {
            FileHandle.standardError.write(Data("warren-cluster: \(error.description)\n".utf8))
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}

struct DirOption: ParsableArguments {
    @Option(help: "The cluster's directory (layout, logs, data).") var dir: String
}

struct NodeVerb: ParsableArguments {
    @OptionGroup var where_: DirOption
    @Argument(help: "A node: its number (2), short name (warren-2) or full name.") var node: String
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the nodes, their ports and state, and what each running node sees (JSON).")
    @OptionGroup var where_: DirOption

    func run() throws {
        let layout = try ClusterLayout.load(where_.dir)
        var out = layout.summary(where_.dir)
        var list = out["nodes"] as? [[String: Any]] ?? []
        for (i, n) in layout.nodes.enumerated() {
            let alive = n.pid.map { Processes.runs($0, program: layout.binary) } ?? false
            list[i]["alive"] = alive
            guard alive, n.state == "running" else { continue }
            var client = ManagementClient(host: "127.0.0.1", port: n.management, user: "guest", password: "guest")
            client.timeout = 2
            if let s = (try? client.call("GET", "/api/warren/cluster")) as? [String: Any] {
                list[i]["sees"] = [
                    "running_nodes": s["running_nodes"] ?? [], "metadata_leader": s["metadata_leader"] ?? NSNull(), "voters": s["voters"] ?? [],
                    "queue_links": s["queue_links"] ?? [],
                ]
            }
        }
        out["nodes"] = list
        out["faults"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(Faults.load(where_.dir)))
        out["problems"] = Health.problems(layout)
        print(try JSONText.of(out))
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "SIGKILL a node.")
    @OptionGroup var verb: NodeVerb
    func run() throws {
        var layout = try ClusterLayout.load(verb.where_.dir)
        let i = try layout.index(of: verb.node)
        print(try NodeControl.kill9(&layout, i))
        try layout.save(verb.where_.dir)
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a node gracefully (SIGTERM; SIGKILL after --timeout).")
    @OptionGroup var verb: NodeVerb
    @Option(help: "Seconds before SIGKILL.") var timeout: Double = 30
    func run() throws {
        var layout = try ClusterLayout.load(verb.where_.dir)
        let i = try layout.index(of: verb.node)
        print(NodeControl.stop(&layout, i, timeout: timeout))
        try layout.save(verb.where_.dir)
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a stopped or killed node again (same ports and data); flags after -- are added for this start only.")
    @OptionGroup var verb: NodeVerb
    @Argument(parsing: .postTerminator, help: "Extra warren flags for this start, after --.") var extra: [String] = []
    func run() throws {
        var layout = try ClusterLayout.load(verb.where_.dir)
        let i = try layout.index(of: verb.node)
        try NodeControl.start(&layout, i, dir: verb.where_.dir, extra: extra)
        print("\(layout.nodes[i].name) started (pid \(layout.nodes[i].pid ?? 0))")
    }
}

struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Freeze a node (SIGSTOP): a process that hangs, with its sockets open.")
    @OptionGroup var verb: NodeVerb
    func run() throws {
        var layout = try ClusterLayout.load(verb.where_.dir)
        let i = try layout.index(of: verb.node)
        print(try NodeControl.signal(&layout, i, SIGSTOP, state: "paused"))
        try layout.save(verb.where_.dir)
    }
}

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Let a paused node go on (SIGCONT).")
    @OptionGroup var verb: NodeVerb
    func run() throws {
        var layout = try ClusterLayout.load(verb.where_.dir)
        let i = try layout.index(of: verb.node)
        print(try NodeControl.signal(&layout, i, SIGCONT, state: "running"))
        try layout.save(verb.where_.dir)
    }
}

/// Two groups of nodes, as "1,2" and "3" or by names.
struct Groups: ParsableArguments {
    @Argument(help: "One side: nodes separated by commas.") var a: String
    @Argument(help: "The other side (default: every node not in the first).") var b: String?

    func links(_ layout: ClusterLayout) throws -> Set<String> {
        let left = try Set(a.split(separator: ",").map { try layout.index(of: String($0)) + 1 })
        let right = try b.map { try Set($0.split(separator: ",").map { try layout.index(of: String($0)) + 1 }) }
            ?? Set(1...layout.nodes.count).subtracting(left)
        guard left.isDisjoint(with: right), !left.isEmpty, !right.isEmpty else { throw DriverError("the two sides must be non-empty and apart") }
        var links: Set<String> = []
        for i in left { for j in right { links.insert(Faults.link(i, j)); links.insert(Faults.link(j, i)) } }
        return links
    }
}

/// Writes the faults and waits (bounded) until the proxy has applied them.
func applyFaults(_ dir: String, _ change: (inout Faults) -> Void) throws {
    let layout = try ClusterLayout.load(dir)
    guard let pid = layout.proxyPid, Processes.alive(pid) else { throw DriverError("the proxy is not running (see \(dir)/proxy.log)") }
    var f = Faults.load(dir)
    change(&f)
    f.generation += 1
    try f.save(dir)
    try waitFor("the proxy to apply the faults", timeout: 10) {
        (try? String(contentsOfFile: Faults.appliedPath(dir), encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } == f.generation
    }
}

struct Partition: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cut the cluster links between two groups of nodes, both ways (connections closed, new ones refused). Adds to earlier partitions.")
    @OptionGroup var where_: DirOption
    @OptionGroup var groups: Groups
    func run() throws {
        let links = try groups.links(try ClusterLayout.load(where_.dir))
        try applyFaults(where_.dir) { $0.cut.formUnion(links) }
        print("cut \(links.count) links")
    }
}

struct Drop: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Silently drop everything between two groups of nodes (connections stay open, nothing arrives): a partition seen as timeouts.")
    @OptionGroup var where_: DirOption
    @OptionGroup var groups: Groups
    func run() throws {
        let links = try groups.links(try ClusterLayout.load(where_.dir))
        try applyFaults(where_.dir) { $0.drop.formUnion(links) }
        print("dropping on \(links.count) links")
    }
}

struct Delay: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add latency to every cluster link from and to the given nodes.")
    @OptionGroup var where_: DirOption
    @Argument(help: "Nodes, separated by commas.") var nodes: String
    @Argument(help: "Milliseconds (0 takes the delay off).") var milliseconds: Int
    func run() throws {
        let layout = try ClusterLayout.load(where_.dir)
        let chosen = try Set(nodes.split(separator: ",").map { try layout.index(of: String($0)) + 1 })
        try applyFaults(where_.dir) { f in
            for link in layout.links(of: chosen) { f.delay[link] = milliseconds > 0 ? milliseconds : nil }
        }
        print("delay \(milliseconds) ms on the links of \(nodes)")
    }
}

struct Loss: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lose a share of the packets on every cluster link from and to the given nodes (as TCP shows it: retransmission delays).")
    @OptionGroup var where_: DirOption
    @Argument(help: "Nodes, separated by commas.") var nodes: String
    @Argument(help: "Percent of packets lost (0 takes the loss off).") var percent: Double
    func run() throws {
        let layout = try ClusterLayout.load(where_.dir)
        guard (0...100).contains(percent) else { throw ValidationError("percent: 0 to 100") }
        let chosen = try Set(nodes.split(separator: ",").map { try layout.index(of: String($0)) + 1 })
        try applyFaults(where_.dir) { f in
            for link in layout.links(of: chosen) { f.loss[link] = percent > 0 ? percent / 100 : nil }
        }
        print("\(percent) % loss on the links of \(nodes)")
    }
}

struct Heal: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Take every partition, drop and delay off.")
    @OptionGroup var where_: DirOption
    func run() throws {
        try applyFaults(where_.dir) { f in
            f.cut = []
            f.drop = []
            f.delay = [:]
            f.loss = [:]
        }
        print("healed")
    }
}

struct WaitHealthy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait-healthy",
        abstract: "Wait until every running node sees every other, all agree on one metadata leader and all vote, and every node's queue sessions with the others are up.")
    @OptionGroup var where_: DirOption
    @Option(help: "Seconds.") var timeout: Double = 60
    func run() throws {
        let layout = try ClusterLayout.load(where_.dir)
        try Health.wait(layout, timeout: timeout)
        print("healthy")
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop every node and the proxy (by pid); --wipe also removes the directory.")
    @OptionGroup var where_: DirOption
    @Flag(help: "Kill with SIGKILL at once instead of stopping gracefully.") var kill = false
    @Flag(help: "Remove the directory afterwards.") var wipe = false
    func run() throws {
        let dir = where_.dir
        var layout = try ClusterLayout.load(dir)
        for i in layout.nodes.indices {
            print(kill ? try NodeControl.kill9(&layout, i) : NodeControl.stop(&layout, i, timeout: 15))
        }
        if let pid = layout.proxyPid, Processes.alive(pid) {
            FileManager.default.createFile(atPath: (dir as NSString).appendingPathComponent("proxy.stop"), contents: nil)
            if !Processes.waitExit(pid, timeout: 5) {
                Glibc.kill(pid, SIGKILL)
                _ = Processes.waitExit(pid, timeout: 5)
            }
        }
        layout.proxyPid = nil
        for n in layout.nodes { NodeFaults.unmountSmallDisk(n.dataDir) }
        try layout.save(dir)
        if wipe { try FileManager.default.removeItem(atPath: dir) }
        print("down")
    }
}

struct Proxy: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the fault-injecting proxy (started by up).", shouldDisplay: false)
    @OptionGroup var where_: DirOption
    func run() throws {
        let layout = try ClusterLayout.load(where_.dir)
        try FaultProxy(dir: where_.dir, layout: layout).run()
    }
}
