public import NIOCore
public import Raft
public import WarrenCore

/// The Raft groups of this node's replicated queues (one per queue it is a member of), hosted
/// by the node's `RaftHost` beside the metadata group: one WAL and one fsync per round for all
/// of them, one batch of messages per peer.
///
/// Lives on two loops like `MetadataGroup`: the broker loop proposes (one hop per turn for
/// every group's batch) and applies; the cluster loop runs the groups. What the groups commit
/// and their leadership changes cross back in one hop per turn of the cluster loop, in the
/// order they happened.
public final class QueueGroups: ReplicaLog, RaftGroupDelegate, @unchecked Sendable {
    unowned let cluster: ClusterNode
    let brokerLoop: any EventLoop
    let clusterLoop: any EventLoop
    let me: NodeID
    let electionTicks: Int
    /// (Made by `ClusterNode.start`; used on the cluster loop only, after it.)
    var host: RaftHost { cluster.host }
    /// The broker's side (broker loop only).
    let queues: ReplicatedQueues

    private enum Event {
        case committed(GroupID, snapshot: (UInt64, [UInt8])?, [ReplicaEntry])
        case role(GroupID, leads: Bool, term: Term)
        case status(GroupID, ReplicaStatus)
    }

    // cluster loop
    private var events: [Event] = []
    private var hopScheduled = false
    /// The members each group should have (the metadata's list), by group.
    private var wanted: [GroupID: Set<NodeID>] = [:]
    private var reconcileTask: RepeatedTask?
    private var reconcileRounds = 0
    /// Groups whose membership may have to move towards `wanted` (wanted changed, leadership
    /// gained, a learner not yet promoted): the others are not looked at each round.
    private var unreconciled: Set<GroupID> = []
    /// What the broker side was last told of each group (commit index, membership, quiet): its
    /// status is sent again when any changed (every 2 s at most), not on every commit.
    private var told: [GroupID: (commit: LogIndex, membership: Membership, quiet: Bool)] = [:]

    public init(cluster: ClusterNode, queues: ReplicatedQueues, brokerLoop: any EventLoop) {
        self.cluster = cluster
        self.queues = queues
        self.brokerLoop = brokerLoop
        self.clusterLoop = cluster.loop
        self.me = cluster.me
        self.electionTicks = cluster.settings.electionTicks
    }

    // MARK: ReplicaLog (broker loop)

    public func open(group: UInt64, members: [String], campaign: Bool, join: Bool, initial: [UInt8]?) {
        let voters = Set(members.map { ClusterNodeID.of($0) })
        clusterLoop.execute { [self] in
            // Back before it finished leaving (grow right after shrink): that member goes, and
            // this one joins afresh like any member added later.
            if leaving[group] != nil { drop(group) }
            wanted[group] = voters
            unreconciled.insert(group)
            startReconciling()
            guard host.node(group) == nil else { return }
            var config = RaftConfiguration(id: me)
            // Longer than the metadata group's: under heavy load a queue's heartbeats may wait
            // behind its own traffic, and a needless election costs a redelivery of what was
            // in flight. A crash is noticed sooner anyway: its links drop (`peerUnreachable`).
            config.electionTicks = max(electionTicks, 20)
            config.heartbeatTicks = 2
            // An idle queue's group goes quiet after 3 rounds (300 ms) with nothing to send:
            // thousands of idle queues cost no heartbeats. The host's pings notice a paused or
            // cut-off node for them (`RaftHost.silenceLimit`).
            config.quiesceAfterRounds = 3
            config.seed = group ^ me ^ UInt64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds)
            if let initial, !host.wal.groups.contains(group) {
                // An existing queue made replicated: its home founds the group alone with the
                // queue's contents (a group of one elects itself), and the leader adds the
                // other members as it adds any (learners that get the snapshot, then voters).
                host.bootstrap(group, voters: [me], data: initial, configuration: config, delegate: self)
            } else if host.wal.groups.contains(group) || join {
                // A member restarting: its log as the WAL kept it (it stands in elections as
                // any member does, when it hears no leader). A member added later starts
                // empty: the leader adds it as a learner and sends it a snapshot and the log.
                host.addGroup(group, configuration: config, delegate: self)
            } else {
                // Every member starts the group from the same empty state at index 1, so the
                // first leader's log matches each of theirs there. The declaring node stands
                // at once, so the queue has a leader within a round trip.
                host.bootstrap(group, voters: voters, data: [], configuration: config, delegate: self)
                if campaign { _ = host.withGroup(group) { $0.campaign() } }
            }
        }
    }

    public func close(group: UInt64) {
        clusterLoop.execute { [self] in drop(group) }
    }

    public func leave(group: UInt64, members: [String]) {
        let ids = Set(members.map { ClusterNodeID.of($0) })
        clusterLoop.execute { [self] in
            // A follower goes at once: the leader removes it from the configuration, and the
            // rest keep a majority of both. The leader stays until it has committed its own
            // removal (it then steps down, `RaftNode.committedAdvanced`), so the members left
            // are a configuration of their own; 10 s at most, then it goes anyway (it cannot
            // reach them, or lost the leadership: whoever leads next removes it).
            guard wanted[group] != nil, let n = host.node(group), n.role == .leader, !ids.isEmpty, !ids.contains(me) else {
                drop(group)
                return
            }
            wanted[group] = ids
            leaving[group] = .now() + .seconds(10)
            unreconciled.insert(group)
            startReconciling()
            reconcile()
        }
    }

    /// Groups this node leaves while leading them, until when they may stay (see `leave`).
    /// Their commits and role changes are not passed on: the broker no longer has the queue
    /// as a member.
    private var leaving: [GroupID: NIODeadline] = [:]

    private func drop(_ group: GroupID) {
        wanted[group] = nil
        told[group] = nil
        leaving[group] = nil
        transfers[group] = nil
        unreconciled.remove(group)
        host.removeGroup(group)
    }

    /// Leaving groups whose leader has stepped down (its removal committed) or whose time is up.
    private func finishLeaving() {
        let now = NIODeadline.now()
        for (group, deadline) in leaving {
            if let n = host.node(group), n.role == .leader, deadline > now { continue }
            drop(group)
        }
    }

    public func setMembers(group: UInt64, members: [String]) {
        let ids = Set(members.map { ClusterNodeID.of($0) })
        clusterLoop.execute { [self] in
            guard wanted[group] != nil else { return }
            wanted[group] = ids
            unreconciled.insert(group)
            // The metadata took our leader out of the group (shrink, delete_member): its node
            // closes its member as soon as it applies that, without removing itself from the
            // Raft configuration first. A quiet group's followers would wait for it forever
            // (their timers are stopped and its links stay up), so they stop following it and
            // stand now; the remaining members are a majority of the old configuration, and
            // the one elected removes the departed member from the Raft configuration.
            _ = host.withGroup(group) { n in
                if n.role != .leader && n.leader != 0 && !ids.contains(n.leader) { n.peerUnreachable(n.leader) }
            }
        }
    }

    public func transferLeadership(group: UInt64, to node: String) {
        let target = ClusterNodeID.of(node)
        clusterLoop.execute { [self] in
            // Asked again each round until the target is a voter that leads, or 10 s passed
            // (a member just added is a learner until it has the log).
            transfers[group] = (target, .now() + .seconds(10))
            reconcile()
        }
    }

    /// Leadership handovers asked for and not yet done, by group.
    private var transfers: [GroupID: (target: NodeID, deadline: NIODeadline)] = [:]

    private func pursueTransfers() {
        for (group, t) in transfers {
            guard let n = host.node(group), t.deadline > .now(), n.leader != t.target else {
                transfers[group] = nil
                continue
            }
            guard n.role == .leader, n.membership.voters.contains(t.target), n.transferee == 0 else { continue }
            _ = host.withGroup(group) { n -> Bool in (try? n.transferLeadership(to: t.target)) != nil }
        }
    }

    private func startReconciling() {
        guard reconcileTask == nil else { return }
        reconcileTask = clusterLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { [weak self] _ in
            self?.reconcile()
        }
    }

    /// Each group this node leads moves its Raft membership one step towards the metadata's
    /// list (`RaftNode.nextMembershipChange`), one change at a time per group.
    private func reconcile() {
        reconcileRounds += 1
        if reconcileRounds % 4 == 0 { tellStatus() }
        if !transfers.isEmpty { pursueTransfers() }
        if !leaving.isEmpty { finishLeaving() }
        for group in unreconciled {
            // Not leading: whoever leads does it (and leadership gained here adds it again).
            guard let want = wanted[group], let node = host.node(group), node.role == .leader else {
                unreconciled.remove(group)
                continue
            }
            guard let change = node.nextMembershipChange(toward: want) else {
                // Done once it is exactly the wanted voters; a learner still catching up is
                // looked at again next round.
                if node.membership.voters == want && node.membership.learners.isEmpty { unreconciled.remove(group) }
                continue
            }
            _ = host.withGroup(group) { n -> Bool in (try? n.proposeConfChange(change)) != nil }
        }
    }

    private func tellStatus() {
        for group in wanted.keys {
            guard let n = host.node(group) else { continue }
            if let t = told[group], t.commit == n.commitIndex, t.membership == n.membership, t.quiet == n.quiesced { continue }
            told[group] = (n.commitIndex, n.membership, n.quiesced)
            if let s = status(of: group) { push(.status(group, s)) }
        }
    }

    /// The node name of a member (from the cluster's registry).
    private func name(_ id: NodeID) -> String {
        if id == me { return cluster.settings.nodeName }
        return cluster.registry.keys.first { ClusterNodeID.of($0) == id } ?? "\(id)"
    }

    private func status(of group: GroupID) -> ReplicaStatus? {
        guard let n = host.node(group) else { return nil }
        var s = ReplicaStatus()
        switch n.role {
        case .leader: s.role = "leader"
        case .follower: s.role = "follower"
        default: s.role = "candidate"
        }
        s.term = n.term
        s.logIndex = n.lastIndex
        s.commitIndex = n.commitIndex
        s.snapshotIndex = n.latestSnapshot?.index ?? 0
        s.voters = n.membership.voters.map(name).sorted()
        s.learners = n.membership.learners.map(name).sorted()
        s.quiet = n.quiesced
        return s
    }

    public func propose(_ batches: [(group: UInt64, data: [UInt8])]) {
        clusterLoop.execute { [self] in
            var failed: [(group: UInt64, serial: UInt64)] = []
            for (group, data) in batches {
                let ok = host.withGroup(group) { node -> Bool in (try? node.propose(data)) != nil } ?? false
                if !ok { failed.append((group, Self.serial(of: data))) }
            }
            guard !failed.isEmpty else { return }
            let queues = self.queues
            brokerLoop.execute { queues.proposalsFailed(failed) }
        }
    }

    public func compact(group: UInt64, upTo index: UInt64, data: [UInt8]) {
        clusterLoop.execute { [self] in host.compact(group, upTo: index, data: data) }
    }

    static func serial(of data: [UInt8]) -> UInt64 {
        guard data.count >= 16 else { return 0 }
        var s: UInt64 = 0
        for i in 8..<16 { s = s << 8 | UInt64(data[i]) }
        return s
    }

    // MARK: RaftGroupDelegate (cluster loop)

    public func committed(_ entries: [Entry], snapshot: Snapshot?, group: GroupID) {
        guard leaving[group] == nil else { return }
        var out: [ReplicaEntry] = []
        out.reserveCapacity(entries.count)
        for e in entries {
            if case .normal(let data) = e.payload {
                out.append(ReplicaEntry(index: e.index, term: e.term, data: data))
            } else {
                out.append(ReplicaEntry(index: e.index, term: e.term, data: nil))
            }
        }
        push(.committed(group, snapshot: snapshot.map { ($0.index, $0.data) }, out))
    }

    public func leaderChanged(_ leader: NodeID, role: RaftNode.Role, term: Term, group: GroupID) {
        // Leaving: the broker no longer has it; once it has stepped down, the next reconcile
        // round drops it (`finishLeaving`).
        if leaving[group] != nil { return }
        if role == .leader { unreconciled.insert(group) }
        push(.role(group, leads: role == .leader, term: term))
        if let s = status(of: group) { push(.status(group, s)) }
    }

    private func push(_ e: Event) {
        events.append(e)
        guard !hopScheduled else { return }
        hopScheduled = true
        clusterLoop.execute { [self] in
            hopScheduled = false
            let batch = events
            events.removeAll()
            let queues = self.queues
            brokerLoop.execute {
                for e in batch {
                    switch e {
                    case .committed(let g, let snapshot, let entries): queues.applied(group: g, snapshot: snapshot, entries: entries)
                    case .role(let g, let leads, let term): queues.roleChanged(group: g, leads: leads, term: term)
                    case .status(let g, let s): queues.statusChanged(group: g, s)
                    }
                }
            }
        }
    }
}
