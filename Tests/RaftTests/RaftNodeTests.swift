import Raft
import RaftTestKit
import Testing

/// The core's contract with its host, node by node, without the simulator.
@Suite("Raft node")
struct RaftNodeTests {
    func node(_ id: NodeID, voters: Set<NodeID>, storage: MemoryStorage? = nil) -> (RaftNode, MemoryStorage) {
        let s = storage ?? .bootstrap(voters: voters)
        var c = RaftConfiguration(id: id)
        c.seed = 42
        return (RaftNode(configuration: c, storage: s), s)
    }

    @Test("a single-node group commits through ready/advance: persisted, then committed, then applied")
    func singleNode() throws {
        let (n, storage) = node(1, voters: [1])
        n.campaign()
        #expect(n.role == .leader)
        var r = n.ready()
        #expect(r.hardState?.term == 2 && r.hardState?.vote == 1)
        #expect(r.entries.map(\.payload) == [.noop], "the leader's no-op must be persisted")
        #expect(r.committed.map(\.index) == [1], "the bootstrap configuration was committed already")
        storage.save(r)
        n.advance(r)
        let index = try n.propose([7])
        r = n.ready()
        #expect(r.committed.map(\.index) == [2], "the no-op commits once persisted")
        #expect(r.entries.map(\.index) == [index])
        storage.save(r)
        n.advance(r)
        r = n.ready()
        #expect(r.committed.map(\.payload) == [.normal([7])], "applied only after it was persisted")
        n.advance(r)
        #expect(!n.hasReady)
    }

    @Test("a follower's answer to an append travels in the same Ready as the entries it must persist first")
    func persistBeforeSend() throws {
        let voters: Set<NodeID> = [1, 2, 3]
        let (leader, _) = node(1, voters: voters)
        let (follower, fs) = node(2, voters: voters)
        leader.campaign()
        _ = leader.ready()  // pre-votes
        for granted in [NodeID(2), 3] {
            leader.step(Message(from: granted, to: 1, term: 2, kind: .preVoteResponse(granted: true)))
        }
        _ = leader.ready()  // votes
        leader.step(Message(from: 2, to: 1, term: 2, kind: .voteResponse(granted: true)))
        #expect(leader.role == .leader)
        let r = leader.ready()
        let append = try #require(r.messages.first { $0.to == 2 })
        follower.step(append)
        let fr = follower.ready()
        #expect(fr.hardState?.term == 2)
        #expect(fr.entries.map(\.payload) == [.noop])
        #expect(fr.messages.contains { if case .appendResponse(false, 2, _, _) = $0.kind { true } else { false } })
        fs.save(fr)
        follower.advance(fr)
        // After a restart from what was persisted, the follower has the term and the entry.
        let (again, _) = node(2, voters: voters, storage: fs)
        #expect(again.term == 2 && again.lastIndex == 2 && again.term(at: 2) == 2)
    }

    @Test("a member with no configuration (added later, or wiped and back under its id) grants no vote or pre-vote")
    func noConfigurationNoVote() {
        let (fresh, _) = node(3, voters: [], storage: MemoryStorage())
        fresh.step(Message(from: 1, to: 3, term: 5, kind: .preVote(lastIndex: 9, lastTerm: 4)))
        fresh.step(Message(from: 1, to: 3, term: 5, kind: .vote(lastIndex: 9, lastTerm: 4, transfer: false)))
        let answers = fresh.ready().messages.map(\.kind)
        #expect(answers.contains(.preVoteResponse(granted: false)))
        #expect(answers.contains(.voteResponse(granted: false)))
        #expect(fresh.vote == 0, "it must not remember a vote it did not give")
        // Once the leader's snapshot gave it a configuration, it votes like any member.
        let (member, _) = node(3, voters: [1, 2, 3])
        member.step(Message(from: 1, to: 3, term: 5, kind: .vote(lastIndex: 9, lastTerm: 4, transfer: false)))
        #expect(member.ready().messages.map(\.kind).contains(.voteResponse(granted: true)))
    }

    @Test("a follower refuses proposals and reads, naming the leader it knows")
    func notLeader() {
        let sim = Simulation(seed: 3, voters: 3, faults: .none)
        sim.nodes[1]!.raft!.campaign()
        try? sim.stabilize()
        #expect(throws: RaftError.notLeader(leader: 1)) { try sim.nodes[2]!.raft!.propose([1]) }
        #expect(throws: RaftError.notLeader(leader: 1)) { try sim.nodes[3]!.raft!.readIndex(context: 9) }
    }

    @Test("membership changes are refused when they make no sense")
    func badConfChanges() throws {
        let sim = Simulation(seed: 3, voters: 3, faults: .none)
        sim.nodes[1]!.raft!.campaign()
        try sim.stabilize()
        let leader = sim.nodes[1]!.raft!
        #expect(throws: RaftError.invalidConfChange("2 is already a voter")) { try leader.proposeConfChange(.addVoter(2)) }
        #expect(throws: RaftError.invalidConfChange("9 is not a member")) { try leader.proposeConfChange(.remove(9)) }
        _ = try leader.proposeConfChange(.remove(3))
        #expect(throws: RaftError.configChangePending) { try leader.proposeConfChange(.remove(2)) }
    }

    @Test("seeds that once failed stay green", arguments: [UInt64(40), 81, 93, 103, 149, 14005, 43679, 63315])
    func regressionSeeds(_ seed: UInt64) throws {
        // Found by the simulator, both in the harness's convergence check: after healing, a
        // leader with a transfer in flight refused its proposal (40 ... 149; it now waits for the
        // transfer to end); a crashed voter was not restarted because the leader of that moment
        // had an uncommitted entry removing it, later replaced (14005, 43679, 63315; every node restarts now).
        let sim = Simulation(seed: seed, voters: 3 + Int(seed % 3))
        try sim.runRandom(steps: 300)
    }
}

@Suite("Raft: a leader's crash noticed by its link")
struct PeerUnreachableTests {
    @Test("followers told their leader is unreachable elect a new one without waiting an election timeout")
    func electsAtOnce() throws {
        let sim = Simulation(seed: 5, voters: 3, faults: .none)
        sim.nodes[1]!.raft!.campaign()
        try sim.stabilize()
        #expect(sim.leader()?.id == 1)
        sim.crash(1)
        for id in [NodeID(2), 3] { sim.nodes[id]!.raft!.peerUnreachable(1) }
        // Within a few ticks, far less than the election timeout (10 to 20 ticks).
        var ticks = 0
        while sim.leader() == nil && ticks < 8 {
            try sim.step()
            try sim.stabilize()
            ticks += 1
        }
        let leader = try #require(sim.leader(), "no leader after \(ticks) ticks")
        #expect(leader.id != 1)
    }

    @Test("a follower alone in noticing it does not unseat a leader the others still hear")
    func leaseHolds() throws {
        let sim = Simulation(seed: 6, voters: 3, faults: .none)
        sim.nodes[1]!.raft!.campaign()
        try sim.stabilize()
        let term = sim.nodes[1]!.raft!.term
        sim.nodes[2]!.raft!.peerUnreachable(1)
        for _ in 0..<4 {
            try sim.step()
            try sim.stabilize()
        }
        #expect(sim.leader()?.id == 1)
        #expect(sim.nodes[1]!.raft!.term == term, "pre-vote refused: no term was bumped")
    }
}
