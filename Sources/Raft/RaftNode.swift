/// Settings of one group member. Times are in ticks: the host calls `tick()` at a fixed rate.
public struct RaftConfiguration: Sendable {
    public var id: NodeID
    /// A follower that hears nothing for a random time in [electionTicks, 2*electionTicks)
    /// starts an election.
    public var electionTicks = 10
    public var heartbeatTicks = 1
    /// Ask before disrupting: a node only bumps its term once a majority would vote for it.
    public var preVote = true
    /// A leader that has not heard from a majority for electionTicks steps down, and followers
    /// that heard from a leader within electionTicks ignore vote requests (the lease).
    public var checkQuorum = true
    /// Appends in flight per follower once it is replicating.
    public var maxInflight = 256
    /// Bytes of entries per append message (at least one entry is always sent).
    public var maxAppendBytes = 1 << 20
    /// Seed of the election-timeout PRNG.
    public var seed: UInt64 = 0
    /// Quiescence (0: never). A leader that had nothing to send for this many heartbeat rounds
    /// in a row, while every member answered each round and has its whole log and commit index,
    /// stops heartbeating and tells its followers (`Message.Kind.quiesce`), which stop their
    /// election timers: an idle group then costs nothing. Failure detection of a quiet group is
    /// the host's: when a member's node goes silent or its link drops it calls
    /// `peerUnreachable`, and any proposal, read, transfer or vote request wakes the group.
    public var quiesceAfterRounds = 0

    public init(id: NodeID) { self.id = id }
}

/// What the host must do, in this order: persist `hardState`, `snapshot` and `entries`; then
/// send `messages`; then apply `snapshot` (if any) and `committed` to the state machine and
/// answer `readStates` once applied to their index; then call `advance(_:)`.
public struct Ready: Sendable {
    public var hardState: HardState?
    public var snapshot: Snapshot?
    /// Append to the log, replacing any stored entries from `entries.first.index` on.
    public var entries: [Entry] = []
    public var messages: [Message] = []
    public var committed: [Entry] = []
    public var readStates: [ReadState] = []
    /// The leader as this node knows it, and its role, when either changed.
    public var leaderChanged: (leader: NodeID, role: RaftNode.Role)?

    public var isEmpty: Bool {
        hardState == nil && snapshot == nil && entries.isEmpty && messages.isEmpty && committed.isEmpty && readStates.isEmpty
    }
}

/// One member of one Raft group: pure state, no IO, no clock, no threads. Driven by `tick()`,
/// `step(_:)`, `propose(_:)` and the `ready()` / `advance(_:)` pair (etcd's RawNode shape).
public final class RaftNode {
    public enum Role: Sendable, Equatable { case follower, preCandidate, candidate, leader }

    public let id: NodeID
    let config: RaftConfiguration
    public internal(set) var term: Term = 0
    public internal(set) var vote: NodeID = 0
    public internal(set) var role = Role.follower
    public internal(set) var leader: NodeID = 0
    var log = RaftLog()
    /// The membership in force: the latest configuration entry in the log (or the snapshot's).
    public internal(set) var membership = Membership()
    var snapshotMembership = Membership()
    var membershipIndex: LogIndex = 0
    /// Leader: index of the last configuration entry it appended (must commit before another).
    var pendingConfIndex: LogIndex = 0
    /// The last snapshot taken or installed (what a lagging follower is sent).
    public internal(set) var latestSnapshot: Snapshot?
    var pendingSnapshot: Snapshot?

    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    var rng: SplitMix64
    var votes: [NodeID: Bool] = [:]
    var progress: [NodeID: Progress] = [:]
    public internal(set) var transferee: NodeID = 0

    var outbox: [Message] = []
    var readStates: [ReadState] = []
    var pendingReads: [(context: UInt64, index: LogIndex, acks: Set<NodeID>)] = []
    /// Reads asked for before this leader committed an entry of its term.
    var readsAwaitingCommit: [UInt64] = []
    var lastHardState = HardState()
    /// New entries or a new commit index to send: done once per `ready()`, so proposals made
    /// between two readies go out in the same appends (batching).
    var needsBroadcast = false
    var lastLeaderReported: (NodeID, Role) = (0, .follower)
    /// Quiet: a leader that stopped heartbeating, or a follower told so by its leader.
    public internal(set) var quiesced = false
    /// Leader: heartbeat rounds in a row with nothing to send and every member caught up.
    var quietRounds = 0

    /// Starts from what storage holds (empty storage: a node that will join an existing group).
    public init(configuration: RaftConfiguration, storage: some RaftStorage) {
        id = configuration.id
        config = configuration
        rng = SplitMix64(seed: configuration.seed ^ (configuration.id &* 0x9E37_79B9_7F4A_7C15))
        let (hs, snapshot, entries) = storage.initialState()
        if let snapshot {
            log.restore(index: snapshot.index, term: snapshot.term)
            snapshotMembership = snapshot.membership
            membership = snapshot.membership
            membershipIndex = snapshot.index
            latestSnapshot = snapshot
            log.applied = snapshot.index
        }
        log.entries = entries.filter { $0.index > log.snapshotIndex }
        log.stable = log.lastIndex
        log.unstableFrom = log.lastIndex + 1
        log.committed = max(hs.commit, log.snapshotIndex)
        term = hs.term
        vote = hs.vote
        lastHardState = hs
        recomputeMembership()
        resetRandomizedTimeout()
    }

    // MARK: inputs

    public func tick() {
        if quiesced { return }
        if role == .leader {
            tickLeader()
        } else {
            electionElapsed += 1
            if electionElapsed >= randomizedElectionTimeout && isPromotable {
                electionElapsed = 0
                campaign(preVote: config.preVote, transfer: false)
            }
        }
    }

    /// The host learned that `peer` is unreachable (its link dropped: a crash closes every
    /// socket at once). A follower whose leader it is forgets it, so that it no longer defends
    /// that leader's lease, and stands for election within 1 to 3 ticks instead of a full
    /// election timeout (random, so that the followers that all noticed do not split the vote).
    /// Pre-vote keeps this safe: members that still hear the leader refuse.
    ///
    /// A quiet leader with `peer` among its members wakes: it heartbeats again, so check-quorum
    /// applies (a leader cut off from its majority steps down) and a member that comes back is
    /// brought up to date.
    public func peerUnreachable(_ peer: NodeID) {
        if role == .leader {
            if membership.members.contains(peer) { wake() }
            return
        }
        guard leader == peer, isPromotable else { return }
        quiesced = false
        leader = 0
        electionElapsed = max(0, randomizedElectionTimeout - 1 - Int(rng.next() % 3))
    }

    /// Ends quiescence: a leader heartbeats at once (and every member counts as heard from for
    /// the next check-quorum round), a follower restarts its election timer.
    public func wake() {
        guard quiesced else { return }
        quiesced = false
        quietRounds = 0
        electionElapsed = 0
        if role == .leader {
            heartbeatElapsed = 0
            for pid in progress.keys { progress[pid]!.recentActive = true }
            broadcastHeartbeat(context: 0)
        }
    }

    /// Starts an election now (tests, and hosts that want a leader at once).
    public func campaign() {
        guard isPromotable, role != .leader else { return }
        campaign(preVote: config.preVote, transfer: false)
    }

    /// Appends `data` to the log if this node leads; returns its index.
    @discardableResult
    public func propose(_ data: [UInt8]) throws(RaftError) -> LogIndex {
        try checkCanPropose()
        appendAsLeader([.normal(data)])
        return log.lastIndex
    }

    /// Appends several entries at once (one replication round for all of them).
    @discardableResult
    public func propose(batch: [[UInt8]]) throws(RaftError) -> LogIndex {
        try checkCanPropose()
        appendAsLeader(batch.map { .normal($0) })
        return log.lastIndex
    }

    public func proposeConfChange(_ change: ConfChange) throws(RaftError) -> LogIndex {
        try checkCanPropose()
        // One change at a time, and only once an entry of this term is committed (the fix of
        // the single-server-change bug, Ongaro 2015).
        guard pendingConfIndex <= log.committed, log.term(at: log.committed) == term else { throw .configChangePending }
        switch change {
        case .bootstrap: throw .invalidConfChange("bootstrap is only for a new group's storage")
        case .addVoter(let id):
            if membership.voters.contains(id) { throw .invalidConfChange("\(id) is already a voter") }
            if membership.learners.contains(id) {
                // A learner votes only once it has the log up to the commit point.
                guard let p = progress[id], p.match >= log.committed else { throw .learnerNotCaughtUp(id) }
            }
        case .addLearner(let id):
            if membership.members.contains(id) { throw .invalidConfChange("\(id) is already a member") }
        case .remove(let id):
            guard membership.members.contains(id) else { throw .invalidConfChange("\(id) is not a member") }
            if membership.voters.contains(id) && membership.voters.count == 1 {
                throw .invalidConfChange("cannot remove the last voter")
            }
        }
        appendAsLeader([.config(change)])
        return log.lastIndex
    }

    /// Hands leadership to `target` once its log is up to date.
    public func transferLeadership(to target: NodeID) throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader == 0 ? nil : leader) }
        guard target != id else { return }
        guard membership.voters.contains(target) else { throw .invalidConfChange("\(target) is not a voter") }
        wake()
        transferee = target
        electionElapsed = 0
        if progress[target]?.match == log.lastIndex {
            send(to: target, .timeoutNow)
        } else {
            sendAppend(to: target)
        }
    }

    /// Asks for a linearizable read: `ReadState(context, index)` comes out of `ready()` once
    /// this leader has confirmed it still leads; answer the read after applying `index`.
    public func readIndex(context: UInt64) throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader == 0 ? nil : leader) }
        wake()
        guard log.term(at: log.committed) == term else {
            readsAwaitingCommit.append(context)
            return
        }
        startRead(context)
    }

    /// The state machine applied everything up to `index`; `data` is its state there. The log
    /// before it is dropped.
    public func compact(upTo index: LogIndex, data: [UInt8]) {
        guard index > log.snapshotIndex, index <= log.applied else { return }
        let snap = Snapshot(index: index, term: log.term(at: index)!, membership: membership(at: index), data: data)
        snapshotMembership = snap.membership
        log.compact(upTo: index)
        latestSnapshot = snap
    }

    // MARK: output

    public var hasReady: Bool {
        !outbox.isEmpty || needsBroadcast || log.unstableFrom <= log.lastIndex || pendingSnapshot != nil || !readStates.isEmpty
            || hardState != lastHardState || min(log.committed, log.stable) > log.applying
    }

    /// What to persist, send and apply now. Call `advance(_:)` when done.
    public func ready() -> Ready {
        var r = Ready()
        if needsBroadcast {
            needsBroadcast = false
            if role == .leader { broadcastAppend() }
        }
        let hs = hardState
        if hs != lastHardState {
            r.hardState = hs
            lastHardState = hs
        }
        r.snapshot = pendingSnapshot
        pendingSnapshot = nil
        if log.unstableFrom <= log.lastIndex {
            r.entries = log.slice(from: log.unstableFrom, to: log.lastIndex + 1)
            log.unstableFrom = log.lastIndex + 1
        }
        swap(&r.messages, &outbox)
        let applyTo = min(log.committed, log.stable)
        if applyTo > log.applying {
            r.committed = log.slice(from: log.applying + 1, to: applyTo + 1)
            log.applying = applyTo
        }
        swap(&r.readStates, &readStates)
        if (leader, role) != lastLeaderReported {
            lastLeaderReported = (leader, role)
            r.leaderChanged = (leader, role)
        }
        return r
    }

    /// The host persisted, sent and applied what `ready` held.
    public func advance(_ ready: Ready) {
        if let last = ready.entries.last, log.matches(index: last.index, term: last.term) {
            log.stable = max(log.stable, last.index)
            if role == .leader {
                progress[id]?.match = log.stable
                progress[id]?.next = log.stable + 1
                if maybeCommit() { needsBroadcast = true }
            }
        }
        if let s = ready.snapshot { log.applied = max(log.applied, s.index) }
        if let last = ready.committed.last { log.applied = max(log.applied, last.index) }
    }

    // MARK: state, for hosts and tests

    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    public var commitIndex: LogIndex { log.committed }
    public var appliedIndex: LogIndex { log.applied }
    public var lastIndex: LogIndex { log.lastIndex }
    public var lastTerm: Term { log.lastTerm }
    public var firstIndex: LogIndex { log.firstIndex }
    public func term(at index: LogIndex) -> Term? { log.term(at: index) }
    /// The entries this node has in memory (after its snapshot).
    public var entries: [Entry] { log.entries }
    public var isPromotable: Bool { membership.voters.contains(id) }
    /// Leader only: how far each member's log is known to match.
    public var matchIndexes: [NodeID: LogIndex] { progress.mapValues(\.match) }

    // MARK: internals shared by the extensions

    func send(to: NodeID, _ kind: Message.Kind) {
        outbox.append(Message(from: id, to: to, term: term, kind: kind))
    }

    func resetRandomizedTimeout() {
        randomizedElectionTimeout = config.electionTicks + Int(rng.next() % UInt64(config.electionTicks))
    }

    func checkCanPropose() throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader == 0 ? nil : leader) }
        guard transferee == 0 else { throw .transferInProgress }
    }

    func appendAsLeader(_ payloads: [EntryPayload]) {
        // The appends that follow wake the followers.
        if quiesced {
            quiesced = false
            electionElapsed = 0
            heartbeatElapsed = 0
            for pid in progress.keys { progress[pid]!.recentActive = true }
        }
        quietRounds = 0
        var index = log.lastIndex
        for p in payloads {
            index += 1
            let e = Entry(term: term, index: index, payload: p)
            log.entries.append(e)
            if case .config(let change) = p { applyConfEntry(change, at: index) }
        }
        log.unstableFrom = min(log.unstableFrom, log.lastIndex - LogIndex(payloads.count) + 1)
        needsBroadcast = true
    }
}
