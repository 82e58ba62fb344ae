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
    }

    // cluster loop
    private var events: [Event] = []
    private var hopScheduled = false

    public init(cluster: ClusterNode, queues: ReplicatedQueues, brokerLoop: any EventLoop) {
        self.cluster = cluster
        self.queues = queues
        self.brokerLoop = brokerLoop
        self.clusterLoop = cluster.loop
        self.me = cluster.me
        self.electionTicks = cluster.settings.electionTicks
    }

    // MARK: ReplicaLog (broker loop)

    public func open(group: UInt64, members: [String], campaign: Bool) {
        let voters = Set(members.map { ClusterNodeID.of($0) })
        clusterLoop.execute { [self] in
            guard host.node(group) == nil else { return }
            var config = RaftConfiguration(id: me)
            config.electionTicks = electionTicks
            config.seed = group ^ me ^ UInt64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds)
            if host.wal.groups.contains(group) {
                // A member restarting: its log as the WAL kept it (it stands in elections as
                // any member does, when it hears no leader).
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
        clusterLoop.execute { [self] in host.removeGroup(group) }
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
        push(.role(group, leads: role == .leader, term: term))
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
                    }
                }
            }
        }
    }
}
