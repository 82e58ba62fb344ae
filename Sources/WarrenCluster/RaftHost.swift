public import Logging
public import NIOCore
public import Raft

/// What a Raft group's host hands to the state machine of that group, on the cluster loop.
public protocol RaftGroupDelegate: AnyObject {
    /// Entries committed (in order), or a snapshot to install first. Persisted already.
    func committed(_ entries: [Entry], snapshot: Snapshot?, group: GroupID)
    /// The leader as this node knows it changed (0: none known).
    func leaderChanged(_ leader: NodeID, role: RaftNode.Role, term: Term, group: GroupID)
}

/// Where a host's messages go (the cluster transport; the tests' in-memory network).
public protocol RaftMessageSender: AnyObject {
    func send(_ messages: [(GroupID, Message)])
}

/// Drives the Raft groups of one node on the cluster's event loop (never the broker's: a node
/// busy with clients must not miss its heartbeats): ticks them, steps their messages, and runs
/// the persist-then-send cycle for all of them together, so one fsync of the shared WAL covers
/// every group's round (group commit) and one batch per peer carries every group's messages.
///
/// A group's next Ready is taken only after its previous one was persisted, sent and applied:
/// what is proposed meanwhile goes out in the next round (batching under load).
public final class RaftHost {
    public let loop: any EventLoop
    public let wal: RaftWAL
    public let logger: Logger
    public weak var sender: (any RaftMessageSender)?

    final class Group {
        let id: GroupID
        let node: RaftNode
        weak var delegate: (any RaftGroupDelegate)?
        var inFlight = false
        /// Term and vote as last written: a Ready that changes neither (nor has entries or a
        /// snapshot) needs no fsync before its messages go and its entries are applied.
        var writtenTerm: Term = 0
        var writtenVote: NodeID = 0
        var lastLeader: NodeID = 0
        var lastRole: RaftNode.Role = .follower
        /// In `dirty`: stepped, ticked or proposed to since its last Ready was taken.
        var dirty = false
        /// In `ticking`: not known to be quiet.
        var ticking = false
        init(id: GroupID, node: RaftNode, delegate: any RaftGroupDelegate) {
            self.id = id
            self.node = node
            self.delegate = delegate
        }
    }

    private var groups: [GroupID: Group] = [:]
    /// The groups that may have a Ready: a round looks at these only, so thousands of quiet
    /// groups cost nothing per round.
    private var dirty: [Group] = []
    /// The groups ticked: a quiet group leaves this list at its next tick and comes back when
    /// anything touches it (a message, a proposal, a wake), so 10,000 idle groups cost no ticks.
    private var ticking: [Group] = []
    private var processScheduled = false
    private var tickTask: RepeatedTask?
    private var closed = false

    /// Raft's tick on this node: election timeouts are 10 to 20 ticks, heartbeats every 2.
    public static let tickInterval = TimeAmount.milliseconds(50)

    public init(loop: any EventLoop, wal: RaftWAL, logger: Logger) {
        self.loop = loop
        self.wal = wal
        self.logger = logger
    }

    // MARK: liveness of the other nodes

    /// This node's id, and the other nodes of the cluster (set by the cluster as its registry
    /// changes): each is sent a ping every `pingInterval` and is declared silent after
    /// `silenceLimit` without a message. Quiet groups (`RaftConfiguration.quiesceAfterRounds`)
    /// send no heartbeats, so this is how their members notice a paused or cut-off node: a
    /// paused process keeps its sockets open, so a dropped link alone does not say it.
    public var me: NodeID = 0
    public var peers: [NodeID: String] = [:] {
        didSet {
            let now = NIODeadline.now()
            for p in peers.keys where lastHeard[p] == nil { lastHeard[p] = now }
            for p in lastHeard.keys where peers[p] == nil {
                lastHeard[p] = nil
                silent.remove(p)
            }
        }
    }
    public static let pingInterval = TimeAmount.milliseconds(200)
    public var silenceLimit = TimeAmount.seconds(1)
    /// Pings travel as a message of this group, which no queue or metadata group ever has.
    static let livenessGroup: GroupID = .max
    private var lastHeard: [NodeID: NIODeadline] = [:]
    private var silent: Set<NodeID> = []
    private var lastPing = NIODeadline.uptimeNanoseconds(0)
    private var lastTick = NIODeadline.now()

    private func checkLiveness() {
        let now = NIODeadline.now()
        defer { lastTick = now }
        if now - lastTick > .nanoseconds(silenceLimit.nanoseconds / 2) {
            // This loop itself stalled (or the process was paused): what arrived meanwhile is
            // still unread, so nobody can be judged silent on this round.
            for p in peers.keys { lastHeard[p] = now }
            return
        }
        if now - lastPing >= Self.pingInterval {
            lastPing = now
            sender?.send(peers.keys.sorted().map { (Self.livenessGroup, Message(from: me, to: $0, term: 0, kind: .heartbeatResponse(context: 0))) })
        }
        for (p, name) in peers {
            let quiet = now - (lastHeard[p] ?? now) > silenceLimit
            if quiet && !silent.contains(p) {
                silent.insert(p)
                logger.warning(
                    "cluster: node silent: its idle replicated queues elect new leaders where it led",
                    metadata: ["node": "\(name)", "for": "\(silenceLimit.nanoseconds / 1_000_000) ms"])
                peerUnreachable(p, quietOnly: true)
            } else if !quiet && silent.contains(p) {
                silent.remove(p)
                logger.notice("cluster: node heard from again", metadata: ["node": "\(name)"])
            }
        }
    }

    /// Starts ticking (on the loop).
    public func start() {
        loop.preconditionInEventLoop()
        let bound = NIOLoopBound(self, eventLoop: loop)
        tickTask = loop.scheduleRepeatedTask(initialDelay: Self.tickInterval, delay: Self.tickInterval) { _ in
            bound.value.tick()
        }
    }

    public func stop() {
        closed = true
        tickTask?.cancel()
        tickTask = nil
    }

    /// Adds a group from what the WAL recovered for it (or, empty, a member that will be sent
    /// the log or a snapshot by the leader).
    @discardableResult
    public func addGroup(_ id: GroupID, configuration: RaftConfiguration, delegate: any RaftGroupDelegate) -> RaftNode {
        add(id, state: wal.state(of: id), configuration: configuration, delegate: delegate)
    }

    /// A group founded here: a first snapshot at index 1 holding `data` (the initial state)
    /// with these voters. Written before anything else of the group, so the first fsync covers it.
    public func bootstrap(
        _ id: GroupID, voters: Set<NodeID>, data: [UInt8], configuration: RaftConfiguration, delegate: any RaftGroupDelegate
    ) -> RaftNode {
        let snapshot = Snapshot(index: 1, term: 1, membership: Membership(voters: voters), data: data)
        let hs = HardState(term: 1, vote: 0, commit: 1)
        wal.save(id, hardState: hs, entries: [], snapshot: snapshot)
        return add(id, state: RaftWAL.GroupState(hardState: hs, snapshot: snapshot, entries: []), configuration: configuration, delegate: delegate)
    }

    private func add(_ id: GroupID, state: RaftWAL.GroupState, configuration: RaftConfiguration, delegate: any RaftGroupDelegate) -> RaftNode {
        let node = RaftNode(configuration: configuration, storage: WALGroupStorage(state: state))
        let g = Group(id: id, node: node, delegate: delegate)
        g.writtenTerm = state.hardState.term
        g.writtenVote = state.hardState.vote
        groups[id] = g
        markDirty(g)
        // The state machine is in memory: it starts from the group's snapshot, and what was
        // committed after it comes out of the first Ready.
        if let snap = state.snapshot { delegate.committed([], snapshot: snap, group: id) }
        // A group of one need not wait for an election timeout.
        if node.membership.voters == [configuration.id] { node.campaign() }
        scheduleProcess()
        return node
    }

    public func removeGroup(_ id: GroupID) {
        groups[id] = nil
        wal.remove(id)
    }

    public func node(_ id: GroupID) -> RaftNode? { groups[id]?.node }

    // MARK: inputs

    /// Messages from peers (one batch from the transport).
    public func receive(_ messages: [(GroupID, Message)]) {
        var from: NodeID = 0
        let now = NIODeadline.now()
        for (g, m) in messages {
            if m.from != from {
                from = m.from
                if lastHeard[from] != nil { lastHeard[from] = now }
            }
            guard let group = groups[g] else { continue }
            group.node.step(m)
            markDirty(group)
        }
        scheduleProcess()
    }

    /// Runs `body` against a group's node, then processes what it produced.
    public func withGroup<T>(_ id: GroupID, _ body: (RaftNode) throws -> T) rethrows -> T? {
        guard let g = groups[id] else { return nil }
        defer {
            markDirty(g)
            scheduleProcess()
        }
        return try body(g.node)
    }

    /// The link to `peer` dropped, or it went silent: followers of groups it leads stand for
    /// election at once, quiet leaders of groups it is in heartbeat again
    /// (`RaftNode.peerUnreachable`).
    ///
    /// `quietOnly` (a silence, not a dropped link): only quiet groups, which hear nothing else.
    /// A busy group's own timers and check-quorum judge its leader; a whole node's silence under
    /// load (its loop behind, a slow fsync) must not unseat every leader it has at once.
    public func peerUnreachable(_ peer: NodeID, quietOnly: Bool = false) {
        for g in groups.values where (!quietOnly || g.node.quiesced)
            && (g.node.leader == peer || (g.node.role == .leader && g.node.membership.members.contains(peer)))
        {
            g.node.peerUnreachable(peer)
            markDirty(g)
        }
        scheduleProcess()
    }

    private func tick() {
        guard !closed else { return }
        if !peers.isEmpty { checkLiveness() }
        var kept = 0
        for i in ticking.indices {
            let g = ticking[i]
            guard !g.node.quiesced, groups[g.id] === g else {
                g.ticking = false
                continue
            }
            g.node.tick()
            markDirty(g)
            ticking[kept] = g
            kept += 1
        }
        ticking.removeLast(ticking.count - kept)
        scheduleProcess()
    }

    private func markDirty(_ g: Group) {
        if !g.ticking {
            g.ticking = true
            ticking.append(g)
        }
        guard !g.dirty else { return }
        g.dirty = true
        dirty.append(g)
    }

    // MARK: the cycle

    private func scheduleProcess() {
        guard !processScheduled, !closed else { return }
        processScheduled = true
        loop.assumeIsolated().execute { [self] in
            processScheduled = false
            process()
        }
    }

    /// Takes every group's Ready, persists them all with one sync, then sends, applies and
    /// advances each.
    private func process() {
        var round: [(Group, Ready)] = []
        var early: [(GroupID, Message)] = []
        var needsSync = false
        let candidates = dirty
        dirty.removeAll(keepingCapacity: true)
        for g in candidates {
            // A group in flight stays dirty: what it got meanwhile is taken after `finish`.
            if g.inFlight {
                dirty.append(g)
                continue
            }
            g.dirty = false
            guard g.node.hasReady, groups[g.id] === g else { continue }
            var ready = g.node.ready()
            g.inFlight = true
            wal.save(g.id, hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
            // What a message may promise (a vote, an append acknowledged) must be on disk before
            // it is sent. A new commit index alone promises nothing: it is written with the next
            // sync, and a restart that lost it learns it again.
            if !ready.entries.isEmpty || ready.snapshot != nil { needsSync = true }
            var termChanged = false
            if let hs = ready.hardState, hs.term != g.writtenTerm || hs.vote != g.writtenVote {
                g.writtenTerm = hs.term
                g.writtenVote = hs.vote
                needsSync = true
                termChanged = true
            }
            // A leader's appends and heartbeats promise nothing about its own disk, so they go
            // now, while its fsync runs (Raft thesis 10.2.1): the followers write in parallel
            // and a commit round costs one fsync's time instead of two. Safe because the leader
            // counts its own copy towards a majority only in `advance`, after the sync; and not
            // done in a Ready that changes its term or vote, which must be durable first.
            if !termChanged, g.node.role == .leader {
                var late: [Message] = []
                for m in ready.messages {
                    switch m.kind {
                    case .append, .heartbeat, .snapshot: early.append((g.id, m))
                    default: late.append(m)
                    }
                }
                ready.messages = late
            }
            round.append((g, ready))
        }
        guard !round.isEmpty else { return }
        if !early.isEmpty { sender?.send(early) }
        if needsSync {
            wal.sync { [self] in finish(round) }
        } else {
            finish(round)
        }
    }

    private func finish(_ round: [(Group, Ready)]) {
        // A group removed while its round was in flight (a deleted queue; a joining metadata
        // group replaced by the one a discovering pod 0 founds) says and applies nothing more.
        let round = round.filter { g, _ in
            if groups[g.id] === g { return true }
            g.inFlight = false
            return false
        }
        var out: [(GroupID, Message)] = []
        for (g, ready) in round {
            for m in ready.messages { out.append((g.id, m)) }
        }
        if !out.isEmpty { sender?.send(out) }
        for (g, ready) in round {
            if let change = ready.leaderChanged, change.leader != g.lastLeader || change.role != g.lastRole {
                g.lastLeader = change.leader
                g.lastRole = change.role
                g.delegate?.leaderChanged(change.leader, role: change.role, term: g.node.term, group: g.id)
            }
            if ready.snapshot != nil || !ready.committed.isEmpty {
                g.delegate?.committed(ready.committed, snapshot: ready.snapshot, group: g.id)
            }
            g.node.advance(ready)
            g.inFlight = false
            markDirty(g)
        }
        scheduleProcess()
    }

    /// Persists a snapshot the state machine took at `index` and lets the log before it go.
    public func compact(_ id: GroupID, upTo index: LogIndex, data: [UInt8]) {
        guard let g = groups[id], index <= g.node.appliedIndex, index > (g.node.latestSnapshot?.index ?? 0) else { return }
        g.node.compact(upTo: index, data: data)
        if let snap = g.node.latestSnapshot { wal.saveSnapshot(id, snap) }
    }
}

extension RaftNode {
    /// The next single-server change that moves this group's membership towards `wanted` (a
    /// leader asks; nil when there is none): a member no longer wanted is removed (never the
    /// last voter), a learner that has the log up to the commit index becomes a voter, a wanted
    /// node not yet a member joins as a learner. Any two consecutive configurations share a
    /// majority (Raft's single-server changes).
    func nextMembershipChange(toward wanted: Set<NodeID>) -> ConfChange? {
        let m = membership
        if let gone = m.members.subtracting(wanted).sorted().first, !(m.voters.count == 1 && m.voters.contains(gone)) {
            return .remove(gone)
        }
        if let learner = m.learners.sorted().first(where: { (matchIndexes[$0] ?? 0) >= commitIndex }) { return .addVoter(learner) }
        if let new = wanted.subtracting(m.members).sorted().first { return .addLearner(new) }
        return nil
    }
}

/// The WAL's recovered state of one group, as the Raft core reads it at start.
struct WALGroupStorage: RaftStorage {
    let state: RaftWAL.GroupState
    func initialState() -> (HardState, Snapshot?, [Entry]) { (state.hardState, state.snapshot, state.entries) }
}
