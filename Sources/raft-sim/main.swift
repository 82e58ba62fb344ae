import Foundation
import Raft
import RaftTestKit

// raft-sim: the Raft core's long-running checks and benchmarks, in a release build.
//
//   raft-sim seeds [--count N] [--from S] [--steps K]   the randomized simulation over N seeds
//   raft-sim bench [--entries N] [--batch B] [--size BYTES]
//                                                        entries/s committed by a 3-node group
//   raft-sim idle [--groups N] [--ticks T]               memory and tick cost of idle groups

func option(_ name: String, _ fallback: Int) -> Int {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: "--\(name)"), i + 1 < args.count, let v = Int(args[i + 1]) else { return fallback }
    return v
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func rssMB() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Double(line.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? 0) / 1024
    }
    return 0
}

/// Storage that keeps nothing: the benchmark measures the core, not a store.
final class NullStorage: RaftStorage {
    let voters: Set<NodeID>
    init(voters: Set<NodeID>) { self.voters = voters }
    func initialState() -> (HardState, Snapshot?, [Entry]) {
        (HardState(term: 1, vote: 0, commit: 1), nil, [Entry(term: 1, index: 1, payload: .config(.bootstrap(voters: voters)))])
    }
}

/// A group whose members pass messages to each other directly (zero latency).
final class DirectGroup {
    var nodes: [NodeID: RaftNode] = [:]
    var committedOnLeader = 0

    init(size: Int, seed: UInt64, configure: (inout RaftConfiguration) -> Void = { _ in }) {
        let ids = Set((1...size).map { NodeID($0) })
        for id in ids {
            var c = RaftConfiguration(id: id)
            c.seed = seed
            configure(&c)
            nodes[id] = RaftNode(configuration: c, storage: NullStorage(voters: ids))
        }
    }

    /// Runs every Ready until none is left.
    func pump() {
        var again = true
        while again {
            again = false
            for (_, n) in nodes where n.hasReady {
                again = true
                let r = n.ready()
                if n.role == .leader { committedOnLeader += r.committed.count }
                for m in r.messages { nodes[m.to]?.step(m) }
                n.advance(r)
                if n.appliedIndex > n.firstIndex + 4096 { n.compact(upTo: n.appliedIndex, data: []) }
            }
        }
    }

    var leader: RaftNode? { nodes.values.first { $0.role == .leader } }
}

func runSeeds() {
    let count = option("count", 100_000)
    let from = option("from", 1)
    let steps = option("steps", 300)
    var total = FaultCounts()
    var failures = 0
    let start = ContinuousClock.now
    for seed in UInt64(from)..<UInt64(from + count) {
        let sim = Simulation(seed: seed, voters: 3 + Int(seed % 3))
        do {
            try sim.runRandom(steps: steps)
        } catch {
            failures += 1
            print("FAIL seed \(seed): \(error)")
            fflush(nil)
        }
        total.add(sim.counts)
        if (seed - UInt64(from) + 1) % 10_000 == 0 {
            print("\(seed - UInt64(from) + 1) seeds, \(failures) failures, \(String(format: "%.0f", seconds(ContinuousClock.now - start))) s")
            fflush(nil)
        }
    }
    print("seeds \(from)..<\(from + count): \(failures) failures in \(String(format: "%.1f", seconds(ContinuousClock.now - start))) s")
    print("faults injected: \(total)")
    exit(failures == 0 ? 0 : 1)
}

func runBench() {
    let entries = option("entries", 5_000_000)
    let batch = option("batch", 1000)
    let size = option("size", 16)
    let group = DirectGroup(size: 3, seed: 7) { $0.maxAppendBytes = 1 << 20 }
    group.nodes[1]!.campaign()
    group.pump()
    guard let leader = group.leader else { fatalError("no leader") }
    let payload = [UInt8](repeating: 0x2A, count: size)
    let data = [[UInt8]](repeating: payload, count: batch)
    group.committedOnLeader = 0
    let start = ContinuousClock.now
    var proposed = 0
    while proposed < entries {
        _ = try! leader.propose(batch: data)
        proposed += batch
        group.pump()
    }
    let took = seconds(ContinuousClock.now - start)
    print(String(format: "3-node group, zero-latency network, %d-byte entries, batches of %d: %d entries committed in %.2f s = %.0f entries/s",
                 size, batch, group.committedOnLeader, took, Double(group.committedOnLeader) / took))
}

func runIdle() {
    let count = option("groups", 10_000)
    let ticks = option("ticks", 100)
    let before = rssMB()
    // A node hosting `count` groups: its member of each, with the two other members of every
    // group simulated alongside (they are the other nodes' cost, reported separately).
    var groups: [DirectGroup] = []
    groups.reserveCapacity(count)
    for g in 0..<count {
        let group = DirectGroup(size: 3, seed: UInt64(g))
        group.nodes[NodeID(g % 3 + 1)]!.campaign()
        group.pump()
        groups.append(group)
    }
    let after = rssMB()
    let start = ContinuousClock.now
    for _ in 0..<ticks {
        for group in groups {
            for (_, n) in group.nodes { n.tick() }
            group.pump()
        }
    }
    let took = seconds(ContinuousClock.now - start)
    let perNode = (after - before) * 1024 * 1024 / Double(count * 3)
    let perRound = took / Double(ticks)
    print(String(format: "%d groups x 3 members in one process: %.1f MB, %.0f bytes per member", count, after - before, perNode))
    print(String(format: "one tick of every member, heartbeats delivered and answered: %.2f ms for %d groups = %.2f us per group (all 3 members), 1/3 of that per member",
                 perRound * 1000, count, perRound * 1e6 / Double(count)))
    print(String(format: "a node hosting %d groups (one member each): about %.1f MB and %.2f ms of work per tick", count,
                 perNode * Double(count) / 1024 / 1024, perRound * 1000 / 3))
}

/// Replays one seed and prints every member's state at the end (for a failing seed).
func runDebug() {
    let seed = UInt64(option("seed", 1))
    let sim = Simulation(seed: seed, voters: 3 + Int(seed % 3))
    do {
        try sim.runRandom(steps: option("steps", 300))
        print("seed \(seed): ok")
    } catch {
        print("seed \(seed): \(error)")
    }
    for id in sim.nodes.keys.sorted() {
        let n = sim.nodes[id]!
        guard let r = n.raft else {
            print("node \(id): down")
            continue
        }
        print("node \(id): \(r.role) term \(r.term) leader \(r.leader) commit \(r.commitIndex) applied \(r.appliedIndex) first \(r.firstIndex) last \(r.lastIndex) \(r.membership) match \(r.matchIndexes.sorted { $0.key < $1.key })")
    }
}

switch CommandLine.arguments.dropFirst().first {
case "debug": runDebug()
case "seeds": runSeeds()
case "bench": runBench()
case "idle": runIdle()
default:
    print("usage: raft-sim seeds [--count N] [--from S] [--steps K] | bench [--entries N] [--batch B] [--size BYTES] | idle [--groups N] [--ticks T]")
    exit(2)
}
