public import Raft

/// The safety properties of Figure 3 of the Raft paper, checked as the simulation runs:
///
/// - Election safety: at most one leader per term.
/// - Leader append-only: a leader never overwrites or deletes entries of its log.
/// - Log matching: two logs with an entry of the same index and term hold the same entry there
///   and agree on everything before it (checked inductively: same payload, same previous term).
/// - Leader completeness: a leader's log holds every entry committed before it was elected.
/// - State machine safety: no two nodes apply different entries at one index.
/// - And: an index reported committed stays committed to the same entry.
public final class InvariantChecker {
    var leaders: [Term: NodeID] = [:]
    /// (index, term) -> (payload, term of the entry before it), as first seen persisted.
    var seen: [LogIndex: [Term: (EntryPayload, Term?)]] = [:]
    /// Applied entries, by index.
    public private(set) var committed: [LogIndex: Entry] = [:]
    public private(set) var maxCommitted: LogIndex = 0

    public init() {}

    func fail(_ s: String) throws -> Never { throw InvariantViolation(description: s) }

    func persisted(node: NodeID, entries: [Entry], raft: RaftNode) throws {
        for e in entries {
            let prevTerm = raft.term(at: e.index - 1)
            if let (payload, prev) = seen[e.index]?[e.term] {
                if payload != e.payload {
                    try fail("log matching: node \(node) has a different entry at index \(e.index) term \(e.term)")
                }
                if let prev, let prevTerm, prev != prevTerm {
                    try fail("log matching: node \(node) at index \(e.index) term \(e.term) follows term \(prevTerm), another log has \(prev)")
                }
            } else {
                seen[e.index, default: [:]][e.term] = (e.payload, prevTerm)
            }
            if let c = committed[e.index], c.term != e.term, e.index <= raft.commitIndex {
                try fail("committed entry \(e.index) (term \(c.term)) replaced on node \(node) by term \(e.term)")
            }
        }
    }

    func applied(node: NodeID, entry e: Entry) throws {
        if let c = committed[e.index] {
            if c != e {
                try fail("state machine safety: node \(node) applied \(e) at \(e.index), another node applied \(c)")
            }
        } else {
            committed[e.index] = e
            maxCommitted = max(maxCommitted, e.index)
        }
    }

    func checkStep(_ sim: Simulation) throws {
        for node in sim.nodes.values {
            guard let raft = node.raft else { continue }
            if raft.role == .leader {
                if let other = leaders[raft.term], other != node.id {
                    try fail("election safety: nodes \(other) and \(node.id) both lead term \(raft.term)")
                }
                if node.lastRole != .leader || node.leaderLog == nil {
                    leaders[raft.term] = node.id
                    sim.counts.elections += 1
                    try checkCompleteness(node.id, raft)
                } else if let before = node.leaderLog {
                    // Append-only: every entry it had (and still holds in memory) is unchanged.
                    for (i, t) in before.terms.enumerated() {
                        let index = before.first + LogIndex(i)
                        guard index >= raft.firstIndex else { continue }
                        if raft.term(at: index) != t {
                            try fail("leader append-only: leader \(node.id) changed entry \(index) (term \(t) -> \(String(describing: raft.term(at: index))))")
                        }
                    }
                }
                node.leaderLog = (raft.firstIndex, raft.entries.map(\.term))
            } else {
                node.leaderLog = nil
            }
            node.lastRole = raft.role
            // Committed stays committed: whatever this node considers committed and still has
            // in memory agrees with what was applied anywhere.
            if raft.commitIndex > 0 {
                let lo = max(raft.firstIndex, raft.commitIndex > 8 ? raft.commitIndex - 8 : 1)
                if lo <= raft.commitIndex {
                    for i in lo...raft.commitIndex {
                        if let c = committed[i], let t = raft.term(at: i), t != c.term {
                            try fail("node \(node.id) has term \(t) at committed index \(i), applied elsewhere as term \(c.term)")
                        }
                    }
                }
            }
        }
    }

    func checkCompleteness(_ id: NodeID, _ raft: RaftNode) throws {
        if raft.lastIndex < maxCommitted {
            try fail("leader completeness: leader \(id) of term \(raft.term) ends at \(raft.lastIndex), entries are committed up to \(maxCommitted)")
        }
        var i = max(raft.firstIndex, 1)
        while i <= maxCommitted {
            if let c = committed[i], raft.term(at: i) != c.term {
                try fail("leader completeness: leader \(id) of term \(raft.term) lacks committed entry \(i) (term \(c.term))")
            }
            i += 1
        }
    }
}
