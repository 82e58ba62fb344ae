import AMQPProtocol
public import NIOCore

/// Where replicated queues' logs live: one Raft group per queue (the node's `QueueGroups`).
/// Called on the broker loop; what the groups commit comes back through `ReplicatedQueues`.
public protocol ReplicaLog: AnyObject {
    /// Creates this node's member of a group (or reopens it after a restart). `campaign`: the
    /// member that should lead first (the queue's declaring home) stands at once. `join`: a
    /// member added later, which starts empty and gets the state from the leader (the founding
    /// members start the group together from one empty state). `initial`: a queue that exists
    /// already (a policy made it mirrored): this node, its home, founds the group alone with
    /// that state, and the others join as `join` members do.
    func open(group: UInt64, members: [String], campaign: Bool, join: Bool, initial: [UInt8]?)
    /// The members the group should have: its leader changes the Raft membership towards them.
    func setMembers(group: UInt64, members: [String])
    /// Hands the group's leadership to `node` if this node leads it.
    func transferLeadership(group: UInt64, to node: String)
    /// The queue was deleted: the group goes, with its log.
    func close(group: UInt64)
    /// This node is no longer one of the group's `members` (shrink, delete_member): its member
    /// goes, with its log. A member that leads the group first removes itself through Raft, so
    /// that the others are left with a configuration they can elect in (two members of which
    /// the leader leaves would otherwise keep one that needs both).
    func leave(group: UInt64, members: [String])
    /// Appends one batch per group to the groups this node leads; a group not led here fails
    /// its batch (`ReplicatedQueues.proposalsFailed`).
    func propose(_ batches: [(group: UInt64, data: [UInt8])])
    /// A snapshot of the group's state at `index` (applied here): the log before it may go.
    func compact(group: UInt64, upTo index: UInt64, data: [UInt8])
}

/// One entry of a replicated queue's log: a batch of commands from one proposer (one per group
/// and turn of the broker loop). The leader decides and logs; every member applies the same
/// commands in the same order, so they hold the same messages numbered the same way.
///
/// Header: proposer (this process's random id), serial (its batch number), command count.
/// Commands: enqueue (arrival time, message), and lists of sequence numbers: removed (acked,
/// dropped, dead-lettered, expired, purged), returned (requeued: delivery count + 1) and
/// delivered (handed out: a later leader delivers them as redelivered).
enum ReplicaCommand {
    case enqueue(at: Int64, message: Message)
    case removed([UInt64])
    case returned([UInt64])
    case delivered([UInt64])

    static let headerSize = 20

    func write(into b: inout ByteBuffer) {
        switch self {
        case .enqueue(let at, let message):
            b.writeInteger(UInt8(1))
            b.writeInteger(at)
            message.write(into: &b)
        case .removed(let seqs): Self.write(2, seqs, into: &b)
        case .returned(let seqs): Self.write(3, seqs, into: &b)
        case .delivered(let seqs): Self.write(4, seqs, into: &b)
        }
    }

    private static func write(_ kind: UInt8, _ seqs: [UInt64], into b: inout ByteBuffer) {
        b.writeInteger(kind)
        b.writeInteger(UInt32(seqs.count))
        for s in seqs { b.writeInteger(s) }
    }

    static func read(_ b: inout ByteBuffer) throws(AMQPError) -> ReplicaCommand {
        guard let kind = b.readInteger(as: UInt8.self) else { throw .frameError("replica command: truncated") }
        switch kind {
        case 1:
            guard let at = b.readInteger(as: Int64.self) else { throw .frameError("replica command: truncated") }
            return .enqueue(at: at, message: try Message.read(from: &b))
        case 2, 3, 4:
            guard let n = b.readInteger(as: UInt32.self), b.readableBytes >= Int(n) * 8 else { throw .frameError("replica command: truncated") }
            var seqs: [UInt64] = []
            seqs.reserveCapacity(Int(n))
            for _ in 0..<n { seqs.append(b.readInteger(as: UInt64.self)!) }
            return kind == 2 ? .removed(seqs) : kind == 3 ? .returned(seqs) : .delivered(seqs)
        default:
            throw .frameError("replica command: unknown kind \(kind)")
        }
    }
}

/// A member's Raft state, as `quorum_status` shows it (RabbitMQ's columns).
public struct ReplicaStatus: Sendable {
    /// leader, follower, candidate (pre-candidate counts as candidate), or "" before any.
    public var role = ""
    public var term: UInt64 = 0
    public var logIndex: UInt64 = 0
    public var commitIndex: UInt64 = 0
    public var snapshotIndex: UInt64 = 0
    /// Voters and learners of the group as this member knows them.
    public var voters: [String] = []
    public var learners: [String] = []
    /// The group is idle and has stopped heartbeating (Raft quiescence): it costs nothing
    /// until something is proposed or a member goes silent.
    public var quiet = false
    public init() {}
}

/// An entry committed in a replicated queue's group, as the broker applies it: nil data for
/// the entries Raft itself adds (a new leader's first entry, membership changes).
public struct ReplicaEntry: Sendable {
    public var index: UInt64
    public var term: UInt64
    public var data: [UInt8]?
    public init(index: UInt64, term: UInt64, data: [UInt8]?) {
        self.index = index
        self.term = term
        self.data = data
    }
}

/// This node's replicated queues (broker loop): batches their proposals (one per group and
/// turn of the loop), hands committed entries and leadership changes from the groups to them,
/// and times out what waited too long. Pure: the node gives it the log and a way to run
/// `flush()` at the end of the loop's turn.
public final class ReplicatedQueues {
    unowned(unsafe) let broker: Broker
    public var log: (any ReplicaLog)?
    /// Asks for `flush()` once the current turn of the broker loop is over.
    public var scheduleFlush: (() -> Void)?
    /// This process among the proposers of every group's log (restarts get a new one).
    let proposer: UInt64
    var nextSerial: UInt64 = 1
    var byGroup: [UInt64: ReplicatedQueue] = [:]
    private var dirty: [ReplicatedQueue] = []
    private var flushPending = false
    /// How long a publish may wait for its group to commit it (or for a leader) before it is
    /// nacked.
    public var timeout: Int64 = 5000
    /// A group snapshots after this many log entries (batches) or bytes of log since its last
    /// snapshot, and not before the log since is twice the size of the queue's messages.
    public var snapshotEntries = 8192
    public var snapshotBytes = 32 << 20

    init(broker: Broker) {
        self.broker = broker
        var g = SystemRandomNumberGenerator()
        var p: UInt64 = 0
        while p == 0 { p = g.next() }
        proposer = p
    }

    var now: Int64 { broker.clock.nowMilliseconds() }

    func register(_ r: ReplicatedQueue) { byGroup[r.group] = r }

    func unregister(_ r: ReplicatedQueue) {
        if byGroup[r.group] === r { byGroup[r.group] = nil }
    }

    func markDirty(_ r: ReplicatedQueue) {
        dirty.append(r)
        guard !flushPending else { return }
        flushPending = true
        if let schedule = scheduleFlush { schedule() } else { flush() }
    }

    /// Sends every group's batch of this turn to the log, together.
    public func flush() {
        flushPending = false
        guard !dirty.isEmpty else { return }
        let queues = dirty
        dirty.removeAll(keepingCapacity: true)
        var batches: [(group: UInt64, data: [UInt8])] = []
        for r in queues {
            guard let data = r.takeBatch() else { continue }
            batches.append((r.group, data))
        }
        if !batches.isEmpty { log?.propose(batches) }
    }

    // MARK: from the groups

    /// A group committed entries (after installing `snapshot`, if any).
    public func applied(group: UInt64, snapshot: (index: UInt64, data: [UInt8])?, entries: [ReplicaEntry]) {
        guard let r = byGroup[group] else { return }
        if let snapshot { r.restore(snapshot.data, index: snapshot.index) }
        for e in entries { r.apply(e) }
        broker.clusterQueues?.announceConfirms()
    }

    /// This node's member of `group` leads now (in `term`) or no longer does.
    public func roleChanged(group: UInt64, leads: Bool, term: UInt64) {
        byGroup[group]?.roleChanged(leads: leads, term: term)
    }

    /// The Raft state of this node's member of `group`.
    public func statusChanged(group: UInt64, _ status: ReplicaStatus) {
        byGroup[group]?.statusChanged(status)
    }

    /// Batches a group refused (this node does not lead it).
    public func proposalsFailed(_ failed: [(group: UInt64, serial: UInt64)]) {
        for f in failed { byGroup[f.group]?.proposalFailed(f.serial) }
        broker.clusterQueues?.announceConfirms()
    }

    /// Every second: what waited too long fails; leaders not yet recorded ask again.
    public func tick() {
        let t = now
        for r in byGroup.values { r.tick(now: t) }
        broker.clusterQueues?.announceConfirms()
        spreadLeadersIfSettled(now: t)
    }

    /// Since when every node of the cluster has been up (automatic spreading), and the last
    /// round of it.
    var wholeSince: Int64?
    var lastSpreading: Int64 = 0
    /// The moves of the last round and until when the next waits for them to be recorded.
    var spreadingUnderway: (moves: [LeaderMove], until: Int64) = ([], 0)

    /// The session with `node` is up: consumers of queues it leads that lost their link to it
    /// attach again.
    func peerUp(_ node: String) {
        for r in byGroup.values where r.queue.homeNode == node { r.attachDetached() }
        for r in nonMembers.values where r.queue.homeNode == node { r.attachDetached() }
    }

    /// Replicated queues this node is not a member of (it still has consumers of them).
    var nonMembers: [ObjectIdentifier: ReplicatedQueue] = [:]
    /// Replicas per node among every replicated queue (placement of new ones).
    var memberCounts: [String: Int] = [:]

    /// `nodes`, those holding the fewest replicas first (by name on ties).
    func fewestReplicas(among nodes: some Sequence<String>) -> [String] {
        nodes.sorted { (memberCounts[$0] ?? 0, $0) < (memberCounts[$1] ?? 0, $1) }
    }

    /// The global parameter that turns off membership healing ("off"); on otherwise.
    public static let healingParameter = "warren-replica-healing"

    /// A node joined or left the cluster (`forgetNode`): each replicated queue below its target
    /// size takes members again, those holding the fewest replicas first; a node that left
    /// leaves every group. Applied by every node in log order, in the same order of queues, so
    /// every node makes the same changes. Off with the global parameter `healingParameter`.
    func clusterChanged(left: String?) {
        let healing = broker.globalParameters[Self.healingParameter]?.stringValue != "off"
        if !healing && left == nil { return }
        let nodes = Set(broker.clusterNodes.keys)
        let all = broker.vhosts.values.sorted { $0.name < $1.name }.flatMap { v in
            v.queues.values.sorted { $0.name < $1.name }.compactMap(\.replicated)
        }
        for r in all {
            var members = r.members
            if let left { members.removeAll { $0 == left } }
            let target = r.placement.target(in: nodes)
            if healing && members.count < target {
                let more = fewestReplicas(among: nodes.filter { !members.contains($0) && r.placement.allows($0) })
                members += more.prefix(target - members.count)
            }
            if members != r.members && !members.isEmpty { r.membersChanged(members) }
        }
    }
}

extension Broker {
    /// Turns on replicated queues (a node in a cluster).
    public func enableReplicatedQueues() -> ReplicatedQueues {
        if let r = replicatedQueues { return r }
        let r = ReplicatedQueues(broker: self)
        replicatedQueues = r
        return r
    }
}
