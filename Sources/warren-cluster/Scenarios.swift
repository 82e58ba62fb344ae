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
            case .killLeader, .killRandom:
                let victims: [Int]
                if scenario == .killLeader {
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
                let links = layout.links.keys.filter { $0.split(separator: "-").compactMap { Int($0) }.contains(node) }
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

    /// Takes every fault off: partitions healed, paused nodes resumed, stopped nodes started.
    func mend() throws {
        var layout = try ClusterLayout.load(dir)
        try applyFaults(dir) { f in
            f.cut = []
            f.drop = []
            f.delay = [:]
        }
        for i in layout.nodes.indices {
            switch layout.nodes[i].state {
            case "paused": _ = try NodeControl.signal(&layout, i, SIGCONT, state: "running")
            case "stopped": try NodeControl.start(&layout, i, dir: dir, timeout: 60)
            default: break
            }
        }
        try layout.save(dir)
    }
}
