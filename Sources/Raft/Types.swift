/// A node's id within a group; 0 means none.
public typealias NodeID = UInt64
public typealias Term = UInt64
public typealias LogIndex = UInt64

/// A change of the group's membership, one server at a time (Raft dissertation, 4.1): any two
/// consecutive configurations share a majority, so no joint consensus is needed. A change takes
/// effect as soon as its entry is in a node's log, committed or not.
public enum ConfChange: Sendable, Hashable {
    /// The first configuration, written identically into every founding node's log at index 1.
    case bootstrap(voters: Set<NodeID>)
    case addVoter(NodeID)
    case addLearner(NodeID)
    case remove(NodeID)
}

public enum EntryPayload: Sendable, Hashable {
    case normal([UInt8])
    /// The entry a new leader appends, so that it can commit entries of earlier terms.
    case noop
    case config(ConfChange)
}

public struct Entry: Sendable, Hashable {
    public var term: Term
    public var index: LogIndex
    public var payload: EntryPayload
    public init(term: Term, index: LogIndex, payload: EntryPayload) {
        self.term = term
        self.index = index
        self.payload = payload
    }

    /// Bytes it costs in a message (for batching limits).
    var size: Int {
        switch payload {
        case .normal(let d): return 16 + d.count
        case .noop: return 16
        case .config: return 32
        }
    }
}

/// Who votes and who only receives the log.
public struct Membership: Sendable, Hashable, CustomStringConvertible {
    public var voters: Set<NodeID> = []
    public var learners: Set<NodeID> = []
    public init(voters: Set<NodeID> = [], learners: Set<NodeID> = []) {
        self.voters = voters
        self.learners = learners
    }

    public var members: Set<NodeID> { voters.union(learners) }
    public var quorum: Int { voters.count / 2 + 1 }

    func applying(_ change: ConfChange) -> Membership {
        var m = self
        switch change {
        case .bootstrap(let v):
            m.voters = v
            m.learners = []
        case .addVoter(let id):
            m.learners.remove(id)
            m.voters.insert(id)
        case .addLearner(let id):
            if !m.voters.contains(id) { m.learners.insert(id) }
        case .remove(let id):
            m.voters.remove(id)
            m.learners.remove(id)
        }
        return m
    }

    public var description: String {
        "voters \(voters.sorted())" + (learners.isEmpty ? "" : " learners \(learners.sorted())")
    }
}

/// What must be on stable storage before any message of the same `Ready` is sent.
public struct HardState: Sendable, Hashable {
    public var term: Term = 0
    public var vote: NodeID = 0
    public var commit: LogIndex = 0
    public init(term: Term = 0, vote: NodeID = 0, commit: LogIndex = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// A state-machine snapshot: everything up to and including `index`.
public struct Snapshot: Sendable, Hashable {
    public var index: LogIndex
    public var term: Term
    public var membership: Membership
    public var data: [UInt8]
    public init(index: LogIndex, term: Term, membership: Membership, data: [UInt8]) {
        self.index = index
        self.term = term
        self.membership = membership
        self.data = data
    }
}

public struct Message: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Would you vote for me in `term`? Changes nobody's term (pre-vote, dissertation 9.6).
        case preVote(lastIndex: LogIndex, lastTerm: Term)
        case preVoteResponse(granted: Bool)
        /// `transfer`: sent on a leader's request (timeoutNow), so the lease does not apply.
        case vote(lastIndex: LogIndex, lastTerm: Term, transfer: Bool)
        case voteResponse(granted: Bool)
        case append(prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex)
        /// Success: the follower's log matches the leader's up to `index`. Rejection: the
        /// append at `index` (its prevIndex) did not match; `hintIndex`/`hintTerm` point at the
        /// follower's last entry that may still match (fast backtracking).
        case appendResponse(reject: Bool, index: LogIndex, hintIndex: LogIndex, hintTerm: Term)
        /// `context` non-zero: a read-index round.
        case heartbeat(commit: LogIndex, context: UInt64)
        case heartbeatResponse(context: UInt64)
        case snapshot(Snapshot)
        /// Campaign now (leader transfer).
        case timeoutNow
        /// The leader has nothing to send and every member has its whole log and `commit`: it
        /// stops heartbeating, and the follower stops its election timer until it hears from the
        /// leader again or its host wakes it (`RaftNode.wake`, `peerUnreachable`).
        case quiesce(commit: LogIndex)
    }

    public var from: NodeID
    public var to: NodeID
    public var term: Term
    public var kind: Kind
    public init(from: NodeID, to: NodeID, term: Term, kind: Kind) {
        self.from = from
        self.to = to
        self.term = term
        self.kind = kind
    }
}

/// A linearizable read: the state machine may answer `context` once it has applied `index`.
public struct ReadState: Sendable, Hashable {
    public var context: UInt64
    public var index: LogIndex
}

public enum RaftError: Error, Sendable, Equatable {
    case notLeader(leader: NodeID?)
    case transferInProgress
    /// A membership change is already in the log and not yet committed (or the leader has not
    /// committed an entry of its term yet).
    case configChangePending
    case learnerNotCaughtUp(NodeID)
    case invalidConfChange(String)
}

/// Deterministic PRNG (SplitMix64): the core draws its election timeouts from it, so a node's
/// behaviour is a function of its seed and its inputs.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
