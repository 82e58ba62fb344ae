import Foundation
import ManagementClient
import WarrenChecker
#if canImport(Glibc)
    import Glibc
#endif

/// A deterministic random source (SplitMix64): a scenario's schedule is its seed's.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The fault scenarios of `warren-cluster run` (docs/failure-testing.md says how to add one).
/// A scenario is a loop of faults: wait, break something, wait, mend it; `pace` scales every
/// wait (1 = the issue's: faults every 10-30 s, partitions of 10 or 30 s; the short CI runs use
/// a faster pace).
enum Scenario: String, CaseIterable {
    case none
    case killLeader = "kill-leader"
    case killRandom = "kill-random"
    case pauseLeader = "pause-leader"
    case partitionHalves = "partition-halves"
    case partitionSingle = "partition-single"
    case partitionRing = "partition-majorities-ring"
    case partitionBridge = "partition-bridge"
    case rollingRestart = "rolling-restart"
    case linkDelay = "link-delay"
    case linkDrop = "link-drop"
    case packetLoss = "packet-loss"
    case damagedTail = "damaged-tail"
    case diskFull = "disk-full"
    case clockJump = "clock-jump"
    case federationCut = "federation-cut"

    var summary: String {
        switch self {
        case .none: return "no faults (the workload alone)"
        case .killLeader: return "kill -9 the queue's leader every 10-30 s, start it again 3-8 s later"
        case .killRandom: return "kill -9 one or two random nodes (a minority) every 10-30 s, start them 3-8 s later"
        case .pauseLeader: return "SIGSTOP the queue's leader for 5-20 s every 10-30 s"
        case .partitionHalves: return "cut the cluster in two halves for 10 or 30 s, heal, 5-10 s, again"
        case .partitionSingle: return "isolate one random node for 10 or 30 s"
        case .partitionRing: return "every node sees a majority, each a different one (ring) for 10 or 30 s"
        case .partitionBridge: return "two halves and one node that sees both, for 10 or 30 s"
        case .linkDelay: return "100-500 ms of latency on every cluster link of a random node for 10-30 s, then 5-10 s without"
        case .linkDrop: return "everything between a random node and the others silently dropped (connections stay open) for 10 or 30 s"
        case .rollingRestart: return "every 10-30 s, the next node in turn stopped gracefully (SIGTERM) and started again, as an upgrade does"
        case .packetLoss:
            return "2, 10 or 30 % of packets lost on every cluster link of a random node for 10-30 s (as TCP shows it: retransmission delays)"
        case .damagedTail: return "kill -9 a random node, append zeros or a cut-off record to its logs' newest segments, start it 1-3 s later"
        case .diskFull:
            return "a node's data on a small disk of its own (tmpfs, root); every 10-30 s it is filled to 20 MB free (disk alarm) or to nothing (writes fail) for 5-20 s"
        case .clockJump: return "a node runs under libfaketime; every 10-30 s its clocks (wall and monotonic) jump 5-60 s ahead"
        case .federationCut:
            return "with --workload federation: every 10-30 s the upstream queue's leader killed (-9, started 3-8 s later) or the link's upstream connection closed"
        }
    }
}

/// Runs a scenario's faults against a driver cluster on a thread of its own (the driver's
/// verbs block), recording each in the history, until `stop`; then mends everything.
final class FaultRunner: @unchecked Sendable {
    let dir: String
    let scenario: Scenario
    let queue: String
    let history: HistoryRecorder
    let pace: Double
    var rng: SeededRandom
    let stop = StopFlag()
    let done = StopFlag()
    var errors: [String] = []
    /// rolling-restart: how many nodes it has restarted.
    var rolled = 0
    /// disk-full and clock-jump: the node moved onto a small disk, or under a faked clock.
    var chosen: Int?
    /// clock-jump: how far ahead its clock is (seconds).
    var clockOffset = 0

    init(dir: String, scenario: Scenario, queue: String, history: HistoryRecorder, seed: UInt64, pace: Double) {
        self.dir = dir
        self.scenario = scenario
        self.queue = queue
        self.history = history
        self.rng = SeededRandom(seed: seed)
        self.pace = pace
    }

    func start() {
        let t = Thread { [self] in
            do {
                try loop()
            } catch {
                errors.append("\(error)")
            }
            done.set()
        }
        t.start()
    }

    /// Sleeps `seconds` x pace, in short steps; false when told to stop meanwhile.
    private func wait(_ seconds: Double) -> Bool {
        let until = Date().addingTimeInterval(seconds * pace)
        while Date() < until {
            if stop.isSet { return false }
            usleep(50_000)
        }
        return !stop.isSet
    }

    private func uniform(_ a: Double, _ b: Double) -> Double { Double.random(in: a...b, using: &rng) }

    private func loop() throws {
        guard scenario != .none else { return }
        while wait(uniform(10, 30)) {
            var layout = try ClusterLayout.load(dir)
            switch scenario {
            case .none: return
            case .federationCut where Bool.random(using: &rng):
                history.record(.fault, info: "close the federation link's upstream connections")
                let closed = closeFederationConnections(layout)
                if closed == 0 { history.record(.heal, info: "no federation link connection was open") }
            case .killLeader, .killRandom, .federationCut:
                let victims: [Int]
                if scenario != .killRandom {
                    guard let leader = leaderIndex(layout) else { continue }
                    victims = [leader]
                } else {
                    let minority = (layout.nodes.count - 1) / 2
                    victims = Array(layout.nodes.indices.shuffled(using: &rng).prefix(Int.random(in: 1...max(1, minority), using: &rng)))
                }
                for v in victims {
                    history.record(.fault, info: "kill -9 \(layout.nodes[v].name)")
                    _ = try NodeControl.kill9(&layout, v)
                }
                try layout.save(dir)
                _ = wait(uniform(3, 8))
                history.record(.heal, info: "start \(victims.map { layout.nodes[$0].name }.joined(separator: ", "))")
                for v in victims { try NodeControl.start(&layout, v, dir: dir, timeout: 60) }
            case .pauseLeader:
                guard let leader = leaderIndex(layout) else { continue }
                history.record(.fault, info: "SIGSTOP \(layout.nodes[leader].name)")
                _ = try NodeControl.signal(&layout, leader, SIGSTOP, state: "paused")
                try layout.save(dir)
                _ = wait(uniform(5, 20))
                history.record(.heal, info: "SIGCONT \(layout.nodes[leader].name)")
                _ = try NodeControl.signal(&layout, leader, SIGCONT, state: "running")
                try layout.save(dir)
            case .rollingRestart:
                let i = rolled % layout.nodes.count
                rolled += 1
                history.record(.fault, info: "stop \(layout.nodes[i].name)")
                _ = NodeControl.stop(&layout, i, timeout: 30)
                try layout.save(dir)
                history.record(.heal, info: "start \(layout.nodes[i].name)")
                try NodeControl.start(&layout, i, dir: dir, timeout: 60)
                // The next one only once the cluster is whole again (as an operator would).
                try Health.wait(try ClusterLayout.load(dir), timeout: 120)
            case .linkDelay:
                let node = Int.random(in: 1...layout.nodes.count, using: &rng)
                let ms = Int.random(in: 100...500, using: &rng)
                let links = layout.links(of: [node])
                history.record(.fault, info: "delay \(ms) ms on the links of \(layout.nodes[node - 1].name)")
                try applyFaults(dir) { f in for l in links { f.delay[l] = ms } }
                _ = wait(uniform(10, 30))
                history.record(.heal, info: "no delay")
                try applyFaults(dir) { $0.delay = [:] }
                _ = wait(uniform(5, 10))
            case .linkDrop:
                let node = Int.random(in: 1...layout.nodes.count, using: &rng)
                var dropped: Set<String> = []
                for other in 1...layout.nodes.count where other != node {
                    dropped.insert(Faults.link(node, other))
                    dropped.insert(Faults.link(other, node))
                }
                history.record(.fault, info: "drop everything to and from \(layout.nodes[node - 1].name)")
                try applyFaults(dir) { $0.drop = dropped }
                _ = wait(Bool.random(using: &rng) ? 10 : 30)
                history.record(.heal, info: "heal")
                try applyFaults(dir) { $0.drop = [] }
                _ = wait(uniform(5, 10))
            case .packetLoss:
                let node = Int.random(in: 1...layout.nodes.count, using: &rng)
                let share = [0.02, 0.1, 0.3].randomElement(using: &rng)!
                let links = layout.links(of: [node])
                history.record(.fault, info: "lose \(Int(share * 100)) % of packets on the links of \(layout.nodes[node - 1].name)")
                try applyFaults(dir) { f in for l in links { f.loss[l] = share } }
                _ = wait(uniform(10, 30))
                history.record(.heal, info: "no loss")
                try applyFaults(dir) { $0.loss = [:] }
                _ = wait(uniform(5, 10))
            case .damagedTail:
                let v = Int.random(in: 0..<layout.nodes.count, using: &rng)
                let damage = NodeFaults.Damage.allCases.randomElement(using: &rng)!
                let bytes = Int.random(in: 16...8192, using: &rng)
                history.record(.fault, info: "kill -9 \(layout.nodes[v].name), then \(bytes) bytes of \(damage == .zeros ? "zeros" : "a cut-off record") after its logs")
                _ = try NodeControl.kill9(&layout, v)
                try layout.save(dir)
                _ = try NodeFaults.damageTail(layout.nodes[v].dataDir, damage, bytes: bytes, rng: &rng)
                _ = wait(uniform(1, 3))
                history.record(.heal, info: "start \(layout.nodes[v].name)")
                try NodeControl.start(&layout, v, dir: dir, timeout: 60)
            case .diskFull:
                guard let v = chosen else {
                    let v = Int.random(in: 0..<layout.nodes.count, using: &rng)
                    history.record(.fault, info: "restart \(layout.nodes[v].name) with its data on a disk of its own")
                    _ = NodeControl.stop(&layout, v, timeout: 30)
                    try layout.save(dir)
                    try NodeFaults.mountSmallDisk(layout.nodes[v].dataDir, log: layout.nodes[v].log)
                    history.record(.heal, info: "start \(layout.nodes[v].name)")
                    try NodeControl.start(&layout, v, dir: dir, timeout: 60)
                    chosen = v
                    continue
                }
                let leaving = Bool.random(using: &rng) ? 0 : 20_000_000
                history.record(.fault, info: "fill the disk of \(layout.nodes[v].name) to \(leaving / 1_000_000) MB free")
                try NodeFaults.fill(layout.nodes[v].dataDir, leaving: leaving)
                _ = wait(uniform(5, 20))
                history.record(.heal, info: "free the disk of \(layout.nodes[v].name)")
                NodeFaults.unfill(layout.nodes[v].dataDir)
                try startIfExited(&layout, v)
            case .clockJump:
                guard let v = chosen else {
                    let v = Int.random(in: 0..<layout.nodes.count, using: &rng)
                    history.record(.fault, info: "restart \(layout.nodes[v].name) under libfaketime")
                    _ = NodeControl.stop(&layout, v, timeout: 30)
                    layout.nodes[v].env = try NodeFaults.fakedClockEnvironment(dir, v)
                    try layout.save(dir)
                    history.record(.heal, info: "start \(layout.nodes[v].name)")
                    try NodeControl.start(&layout, v, dir: dir, timeout: 60)
                    chosen = v
                    continue
                }
                let jump = Int.random(in: 5...60, using: &rng)
                clockOffset += jump
                history.record(.fault, info: "the clocks of \(layout.nodes[v].name) jump \(jump) s ahead (\(clockOffset) s in all)")
                try NodeFaults.setClockOffset(dir, v, seconds: clockOffset)
            case .partitionHalves, .partitionSingle, .partitionRing, .partitionBridge:
                let cut = partition(layout.nodes.count)
                history.record(.fault, info: "\(scenario.rawValue): cut \(cut.sorted().joined(separator: " "))")
                try applyFaults(dir) { $0.cut = cut }
                _ = wait(Bool.random(using: &rng) ? 10 : 30)
                history.record(.heal, info: "heal")
                try applyFaults(dir) { $0.cut = [] }
                _ = wait(uniform(5, 10))
            }
        }
    }

    /// The links to cut (both directions, "i-j" with nodes from 1) for this scenario's partition.
    func partition(_ n: Int) -> Set<String> {
        let order = Array(1...n).shuffled(using: &rng)
        var connected: Set<String> = []
        func connect(_ a: Int, _ b: Int) {
            connected.insert(Faults.link(a, b))
            connected.insert(Faults.link(b, a))
        }
        switch scenario {
        case .partitionHalves, .partitionBridge:
            let half = n / 2
            let left = Array(order.prefix(half))
            var right = Array(order.dropFirst(half))
            var bridge: Int?
            if scenario == .partitionBridge, right.count > 1 { bridge = right.removeFirst() }
            for side in [left, right] { for a in side { for b in side where a != b { connect(a, b) } } }
            if let bridge { for other in left + right { connect(bridge, other) } }
        case .partitionSingle:
            let alone = order[0]
            for a in order where a != alone { for b in order where b != alone && b != a { connect(a, b) } }
        case .partitionRing:
            // Each node with its two neighbours on a ring: on 5 nodes each sees a majority (3),
            // each a different one. (On 3 nodes that is everyone: use 5.)
            for (i, a) in order.enumerated() where n > 1 {
                connect(a, order[(i + 1) % n])
            }
        default:
            break
        }
        var cut: Set<String> = []
        for a in 1...n { for b in 1...n where a != b && !connected.contains(Faults.link(a, b)) { cut.insert(Faults.link(a, b)) } }
        return cut
    }

    /// Closes (as an operator would, through the API) every federation link connection into
    /// the upstream vhost "/"; returns how many.
    func closeFederationConnections(_ layout: ClusterLayout) -> Int {
        guard let n = layout.nodes.first(where: { $0.state == "running" }) else { return 0 }
        var client = ManagementClient(host: "127.0.0.1", port: n.management, user: "guest", password: "guest")
        client.timeout = 5
        let list = (try? client.call("GET", "/api/connections")) as? [[String: Any]] ?? []
        var closed = 0
        for c in list where c["vhost"] as? String == "/" && (c["user_provided_name"] as? String ?? "").hasPrefix("Federation link") {
            guard let name = c["name"] as? String else { continue }
            do {
                _ = try client.call("DELETE", "/api/connections/\(ManagementClient.segment(name))", headers: ["X-Reason": "warren-cluster federation-cut"])
                closed += 1
            } catch {
                history.record(.heal, info: "closing \(name) failed: \(error)")
            }
        }
        return closed
    }

    /// The node that leads the workload's queue now, as a running node's API says.
    func leaderIndex(_ layout: ClusterLayout) -> Int? {
        for n in layout.nodes where n.state == "running" {
            var client = ManagementClient(host: "127.0.0.1", port: n.management, user: "guest", password: "guest")
            client.timeout = 2
            let path = "/api/queues/\(ManagementClient.segment("/"))/\(ManagementClient.segment(queue))"
            if let q = (try? client.call("GET", path)) as? [String: Any], let leader = q["leader"] as? String,
                let i = layout.nodes.firstIndex(where: { $0.name == leader })
            {
                return i
            }
        }
        return nil
    }

    /// A node that stopped by itself (a failed write on a full disk stops it: crash-only) is
    /// started again; the history says so.
    private func startIfExited(_ layout: inout ClusterLayout, _ i: Int) throws {
        guard layout.nodes[i].state == "running", let pid = layout.nodes[i].pid, !Processes.runs(pid, program: layout.binary) else { return }
        history.record(.heal, info: "\(layout.nodes[i].name) had stopped; start it")
        layout.nodes[i].state = "stopped"
        layout.nodes[i].pid = nil
        try NodeControl.start(&layout, i, dir: dir, timeout: 60)
    }

    /// Takes every fault off: partitions healed, paused nodes resumed, stopped nodes started,
    /// disks freed, a faked clock's node restarted on the true time. (A node moved onto a
    /// small disk stays there until `down`.)
    func mend() throws {
        var layout = try ClusterLayout.load(dir)
        try applyFaults(dir) { f in
            f.cut = []
            f.drop = []
            f.delay = [:]
            f.loss = [:]
        }
        for i in layout.nodes.indices {
            NodeFaults.unfill(layout.nodes[i].dataDir)
            switch layout.nodes[i].state {
            case "paused": _ = try NodeControl.signal(&layout, i, SIGCONT, state: "running")
            case "stopped": try NodeControl.start(&layout, i, dir: dir, timeout: 60)
            default: try startIfExited(&layout, i)
            }
            if layout.nodes[i].env != nil {
                _ = NodeControl.stop(&layout, i, timeout: 30)
                layout.nodes[i].env = nil
                try layout.save(dir)
                try NodeControl.start(&layout, i, dir: dir, timeout: 60)
            }
        }
        try layout.save(dir)
    }
}
