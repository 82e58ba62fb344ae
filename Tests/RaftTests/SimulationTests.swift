import Foundation
import Raft
import RaftTestKit
import Testing

/// Randomized runs of the simulator: every invariant after every step, linearizability of the
/// client history at the end. WARREN_RAFT_SEEDS=N runs N seeds (the long mode), and
/// WARREN_RAFT_SEED=S replays one.
@Suite("Raft simulation")
struct SimulationTests {
    static var seedCount: Int { Int(ProcessInfo.processInfo.environment["WARREN_RAFT_SEEDS"] ?? "") ?? 500 }

    @Test("random faults over many seeds: all invariants hold, the history is linearizable, the group converges")
    func randomSeeds() throws {
        var total = FaultCounts()
        var failures: [String] = []
        let seeds: [UInt64] =
            ProcessInfo.processInfo.environment["WARREN_RAFT_SEED"].flatMap(UInt64.init).map { [$0] }
            ?? (1...UInt64(Self.seedCount)).map { $0 }
        for seed in seeds {
            let voters = 3 + Int(seed % 3)  // 3, 4 or 5
            let sim = Simulation(seed: seed, voters: voters)
            do {
                try sim.runRandom(steps: 300)
            } catch {
                failures.append("seed \(seed): \(error)")
                if failures.count >= 5 { break }
            }
            total.add(sim.counts)
        }
        print("raft simulation: \(seeds.count) seeds; \(total)")
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }
}
