import Raft
import RaftTestKit
import Foundation
import Testing

@Suite("Raft: quiet groups")
struct QuiescenceTests {
    func quietSim(seed: UInt64, voters: Int = 3, faults: FaultProfile = .none) -> Simulation {
        let sim = Simulation(seed: seed, voters: voters, faults: faults) { $0.quiesceAfterRounds = 3 }
        sim.hostLiveness = true
        return sim
    }

    /// Steps until `done` holds, at most `limit` ticks; returns the ticks taken.
    func run(_ sim: Simulation, limit: Int, until done: () -> Bool) throws -> Int {
        var ticks = 0
        while !done() && ticks < limit {
            try sim.step()
            ticks += 1
        }
        return ticks
    }

    func allQuiet(_ sim: Simulation) -> Bool { sim.nodes.values.allSatisfy { $0.raft?.quiesced ?? true } }

    @Test("an idle group goes quiet and then sends nothing; a proposal wakes it, commits and it goes quiet again")
    func idleGoesQuiet() throws {
        let sim = quietSim(seed: 11)
        sim.nodes[1]!.raft!.campaign()
        try sim.stabilize()
        _ = try run(sim, limit: 40) { allQuiet(sim) }
        #expect(allQuiet(sim), "quiet within 40 ticks")
        let sent = sim.counts.messages
        for _ in 0..<200 { try sim.step() }
        #expect(sim.counts.messages == sent, "no message in 200 quiet ticks (10 election timeouts)")
        #expect(sim.leader()?.id == 1)

        #expect(sim.propose(at: 1))
        try sim.stabilize()
        #expect(!sim.nodes[1]!.raft!.quiesced)
        let target = sim.nodes[1]!.raft!.lastIndex
        _ = try run(sim, limit: 40) { allQuiet(sim) }
        #expect(allQuiet(sim))
        for n in sim.nodes.values { #expect(n.raft!.appliedIndex == target, "node \(n.id) applied the proposal before going quiet") }
        #expect(sim.leader()?.id == 1)
    }

    @Test("a quiet group's leader crashes: the host's report elects a new one within a few ticks; unreported, nobody moves")
    func crashOfQuietLeader() throws {
        let sim = quietSim(seed: 12)
        sim.nodes[1]!.raft!.campaign()
        try sim.stabilize()
        _ = try run(sim, limit: 40) { allQuiet(sim) }
        sim.hostLiveness = false
        sim.crash(1)
        for _ in 0..<100 { try sim.step() }
        #expect(sim.leader() == nil, "quiet followers rely on the host to notice")
        for id in [NodeID(2), 3] { sim.nodes[id]!.raft!.peerUnreachable(1) }
        let ticks = try run(sim, limit: 10) { sim.leader() != nil }
        #expect(sim.leader() != nil, "elected in \(ticks) ticks")
        #expect(sim.propose(at: sim.leader()!.id))
    }

    @Test("a quiet leader cut off from its majority steps down once told; the majority elects; after healing it follows")
    func partitionedQuietLeader() throws {
        let sim = quietSim(seed: 13)
        sim.nodes[1]!.raft!.campaign()
        try sim.stabilize()
        _ = try run(sim, limit: 40) { allQuiet(sim) }
        sim.partition([[1], [2, 3]])
        _ = try run(sim, limit: 60) { sim.nodes[1]!.raft!.role != .leader }
        #expect(sim.nodes[1]!.raft!.role != .leader, "the isolated leader stepped down (check-quorum)")
        let newLeader = try #require(sim.leader())
        #expect(newLeader.id != 1)
        sim.heal()
        #expect(sim.propose(at: newLeader.id))
        let target = newLeader.raft!.lastIndex
        _ = try run(sim, limit: 100) { sim.nodes[1]!.raft!.appliedIndex >= target && allQuiet(sim) }
        #expect(sim.nodes[1]!.raft!.appliedIndex >= target)
        #expect(allQuiet(sim), "quiet again once everyone has the log")
    }

    @Test("a member that restarts while the group is quiet is brought back (its vote request wakes the leader)")
    func restartedMember() throws {
        let sim = quietSim(seed: 14)
        sim.nodes[1]!.raft!.campaign()
        try sim.stabilize()
        _ = try run(sim, limit: 40) { allQuiet(sim) }
        sim.hostLiveness = false
        sim.crash(3)
        sim.restart(3)
        _ = try run(sim, limit: 100) { sim.nodes[3]!.raft!.leader == 1 && allQuiet(sim) }
        #expect(sim.nodes[3]!.raft!.leader == 1)
        #expect(sim.leader()?.id == 1, "the lease held: no new term")
        #expect(allQuiet(sim))
    }

    @Test("random faults with quiet groups keep every invariant and converge", arguments: Array(UInt64(1)...24))
    func randomRuns(_ seed: UInt64) throws {
        // Half the seeds with few proposals, so that the group goes quiet between faults.
        var faults = FaultProfile()
        if seed % 2 == 0 { faults.propose = 0.02 }
        let sim = quietSim(seed: 7_000 + seed, voters: 3 + Int(seed % 3), faults: faults)
        try sim.runRandom(steps: 400)
    }

    @Test("long sweep (WARREN_RAFT_QUIET_SEEDS=N)", .enabled(if: ProcessInfo.processInfo.environment["WARREN_RAFT_QUIET_SEEDS"] != nil))
    func sweep() throws {
        let n = UInt64(ProcessInfo.processInfo.environment["WARREN_RAFT_QUIET_SEEDS"] ?? "0") ?? 0
        var quietSteps = 0
        for seed in 1...max(n, 1) {
            var faults = FaultProfile()
            faults.propose = [0.3, 0.05, 0.01][Int(seed % 3)]
            let sim = quietSim(seed: 90_000 + seed, voters: 3 + Int(seed % 3), faults: faults)
            for _ in 0..<400 {
                try sim.injectRandomFaults()
                try sim.step()
                if sim.leader()?.raft?.quiesced == true { quietSteps += 1 }
            }
            try sim.runRandom(steps: 0)
        }
        print("quiet leader in \(quietSteps) of \(n * 400) steps")
    }
}
