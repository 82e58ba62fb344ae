import DequeModule
import Foundation
public import Logging
public import NIOCore
public import Raft
public import WarrenCore

/// The cluster's definitions as a Raft group (group 0 on every member): the broker's
/// `MetadataLog`. Commands proposed on any node are ordered by the group's leader, written to a
/// majority's WAL, and applied by every node's broker in log order.
///
/// It lives on two loops. On the broker loop: proposals (numbered, their completions kept until
/// their command is applied or their time is up), applying committed commands to the broker,
/// snapshots of the broker's state. On the cluster loop: the Raft group (via `RaftHost`), and
/// handing proposals to the leader: into this node's log when it leads, forwarded to the leader
/// otherwise. Work crosses between the loops in batches: one hop per turn of the sending loop,
/// whatever the number of proposals or entries in it.
///
/// A proposal is never sent twice to the same term's leader. If an entry of a newer term is
/// applied and the proposal is not among what was applied, it was not committed and never will
/// be (entries of a term all precede those of later terms in the log), so it is sent again to
/// the new leader. A proposal not applied within `timeout` fails with `notCommitted`.
public final class MetadataGroup: MetadataLog, RaftGroupDelegate, @unchecked Sendable {
    public static let groupID: GroupID = 0

    let brokerLoop: any EventLoop
    let clusterLoop: any EventLoop
    public let me: NodeID
    /// Distinguishes this run of the process from earlier ones (proposal ids restart at 1).
    let incarnation: UInt64
    let timeout: TimeAmount
    let logger: Logger

    // MARK: broker loop

    let broker: Broker
    struct Pending {
        var completion: (MetadataOutcome) -> Void
        var deadline: NIODeadline
        var what: String
    }
    private var pending: [UInt64: Pending] = [:]
    private var nextSerial: UInt64 = 1
    private var outgoing: [MetadataEnvelope] = []
    private var hopScheduled = false
    /// Proposals held until this node's restart command is applied (nil: open). Commands of this
    /// node must not be ordered before it: it deletes what the node held before.
    private var gated: [(command: MetadataCommand, completion: (MetadataOutcome) -> Void, deadline: NIODeadline)]? = []
    /// The last log position applied to the broker.
    public private(set) var appliedIndex: LogIndex = 0
    private var appliedSinceSnapshot = 0
    /// A snapshot is taken after this many applied entries, or half the number of objects in
    /// the state if larger (so snapshots of a large state stay rare).
    public var snapshotEvery = 8192
    /// Entries in the local log at start: once applied that far, storage no replayed queue took
    /// back belongs to deleted queues.
    var startLastIndex: LogIndex = 0
    private var storageSettled = false
    /// Called on the broker loop after each applied batch.
    public var onApplied: ((LogIndex) -> Void)?
    /// What the broker side knows of the leader (for error texts and the status API).
    public private(set) var leaderKnown = false
    private var sweepTask: RepeatedTask?

    // MARK: cluster loop

    public internal(set) var host: RaftHost?
    /// Sends proposals to the leader if the link to it is up now; false keeps them here.
    public var forward: ((NodeID, [MetadataEnvelope], Term) -> Bool)?
    /// Notified of leadership changes (membership management, status).
    public var onLeaderChange: ((NodeID, RaftNode.Role, Term) -> Void)?
    private var unsent: Deque<MetadataEnvelope> = []
    private var inFlight: [UInt64: (term: Term, envelope: MetadataEnvelope)] = [:]

    public init(
        broker: Broker, brokerLoop: any EventLoop, clusterLoop: any EventLoop, me: NodeID, timeout: TimeAmount = .seconds(5),
        logger: Logger
    ) {
        self.broker = broker
        self.brokerLoop = brokerLoop
        self.clusterLoop = clusterLoop
        self.me = me
        var g = SystemRandomNumberGenerator()
        self.incarnation = g.next()
        self.timeout = timeout
        self.logger = logger
    }

    /// Starts the timeout sweep (broker loop).
    public func start() {
        brokerLoop.preconditionInEventLoop()
        let bound = NIOLoopBound(self, eventLoop: brokerLoop)
        sweepTask = brokerLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
            bound.value.sweep()
        }
    }

    public func stop() {
        sweepTask?.cancel()
        sweepTask = nil
    }

    // MARK: proposing (broker loop)

    public func propose(_ command: MetadataCommand, completion: @escaping (MetadataOutcome) -> Void) {
        if gated != nil {
            gated!.append((command, completion, .now() + timeout))
            return
        }
        submit(command, completion: completion)
    }

    /// Proposes this node's restart command ahead of everything else; the gate opens when it is
    /// applied (or could not be, in which case it is tried again).
    public func proposeRestart() {
        submit(.nodeRestarted(broker.nodeName)) { [self] outcome in
            if case .notCommitted(let why) = outcome {
                logger.warning("cluster: this node's restart is not yet recorded; definition changes wait for it", metadata: ["reason": "\(why)"])
                proposeRestart()
                return
            }
            openGate()
        }
    }

    /// Lets proposals through without a restart command (a node that starts a new cluster).
    public func openGate() {
        guard let held = gated else { return }
        gated = nil
        for h in held { submit(h.command, completion: h.completion) }
    }

    private func submit(_ command: MetadataCommand, completion: @escaping (MetadataOutcome) -> Void) {
        let serial = nextSerial
        nextSerial += 1
        pending[serial] = Pending(completion: completion, deadline: .now() + timeout, what: command.name)
        outgoing.append(MetadataEnvelope(id: ProposalID(node: me, incarnation: incarnation, serial: serial), command: command.bytes))
        guard !hopScheduled else { return }
        hopScheduled = true
        // Everything proposed during this turn of the broker loop crosses in one hop.
        brokerLoop.assumeIsolated().execute { [self] in
            hopScheduled = false
            let batch = outgoing
            outgoing = []
            clusterLoop.execute { self.received(batch) }
        }
    }

    /// Fails what waited too long, with the truth about it: the cluster loop says, for each,
    /// whether it never left this node (taken back: it can never be applied, "was not made")
    /// or was handed to a leader (it may still be committed). What it no longer holds was
    /// committed meanwhile, and its apply step, on its way here, completes it.
    private func sweep() {
        let now = NIODeadline.now()
        // Held behind this node's restart record, which the cluster has not taken yet: never
        // proposed, so certainly not made.
        if let held = gated, held.contains(where: { $0.deadline <= now }) {
            gated = held.filter { $0.deadline > now }
            for h in held where h.deadline <= now {
                let why = "node \(broker.nodeName) has restarted and the cluster's metadata store has not yet recorded it (a majority of the cluster's nodes must be running and connected): the change (\(h.command.name)) was not made"
                logger.warning("cluster: metadata change not committed", metadata: ["change": "\(h.command.name)", "reason": "\(why)"])
                h.completion(.notCommitted(why))
            }
        }
        var expired: [UInt64] = []
        for (serial, p) in pending where p.deadline <= now {
            expired.append(serial)
            pending[serial]!.deadline = .distantFuture  // asked once
        }
        guard !expired.isEmpty else { return }
        // Still in this loop's hop buffer: never left.
        let set = Set(expired)
        var notMade = Set(outgoing.filter { set.contains($0.id.serial) }.map(\.id.serial))
        outgoing.removeAll { notMade.contains($0.id.serial) }
        let rest = expired.filter { !notMade.contains($0) }
        clusterLoop.execute {
            let verdicts = self.cancel(rest)
            self.brokerLoop.execute {
                for (serial, made) in verdicts where !made { notMade.insert(serial) }
                let uncertain = Set(verdicts.filter(\.value).map(\.key))
                self.fail(notMade: notMade, uncertain: uncertain)
            }
        }
    }

    private func fail(notMade: Set<UInt64>, uncertain: Set<UInt64>) {
        let seconds = timeout.nanoseconds / 1_000_000_000
        for serial in notMade.union(uncertain).sorted() {
            guard let p = pending.removeValue(forKey: serial) else { continue }
            let why =
                uncertain.contains(serial)
                ? "the change (\(p.what)) was handed to the cluster's metadata leader but not committed within \(seconds) s; it may still take effect: check before retrying"
                : leaderKnown
                    ? "the change (\(p.what)) could not reach the cluster's metadata leader within \(seconds) s (a majority of the cluster's nodes must be running and connected): the change was not made"
                    : "the cluster's metadata store has no leader that node \(broker.nodeName) can reach (a majority of the cluster's nodes must be running and connected): the change (\(p.what)) was not made"
            logger.warning("cluster: metadata change not committed", metadata: ["change": "\(p.what)", "reason": "\(why)"])
            p.completion(.notCommitted(why))
        }
    }

    // MARK: to the leader (cluster loop)

    private func received(_ batch: [MetadataEnvelope]) {
        unsent.append(contentsOf: batch)
        submitUnsent()
    }

    /// Takes back what has not left this node; says of each serial whether it was handed to a
    /// leader (true) or taken back (false). Serials it holds in neither were committed.
    private func cancel(_ serials: [UInt64]) -> [UInt64: Bool] {
        var verdicts: [UInt64: Bool] = [:]
        for s in serials where inFlight.removeValue(forKey: s) != nil { verdicts[s] = true }
        let set = Set(serials)
        for e in unsent where set.contains(e.id.serial) && e.id.node == me && e.id.incarnation == incarnation { verdicts[e.id.serial] = false }
        unsent.removeAll { set.contains($0.id.serial) && $0.id.node == me && $0.id.incarnation == incarnation }
        return verdicts
    }

    /// Hands what waits to the leader, if there is one.
    func submitUnsent() {
        guard !unsent.isEmpty, let host, let node = host.node(Self.groupID), node.leader != 0 else { return }
        let batch = Array(unsent)
        let term = node.term
        if node.leader == me {
            guard propose(batch, term: term) else { return }
        } else {
            // Only over a link that is up now: a forward queued for a link that is down could
            // arrive after its proposer had given up on it (and told its client so).
            guard forward?(node.leader, batch, term) == true else { return }
        }
        unsent.removeAll()
        for e in batch where e.id.node == me && e.id.incarnation == incarnation { inFlight[e.id.serial] = (term, e) }
    }

    /// Appends to this node's log if it still leads in `term`.
    @discardableResult
    func propose(_ envelopes: [MetadataEnvelope], term: Term) -> Bool {
        guard let host else { return false }
        let ok = host.withGroup(Self.groupID) { node -> Bool in
            guard node.role == .leader, node.term == term else { return false }
            do {
                for entry in MetadataEntry.entries(envelopes) { try node.propose(entry) }
                return true
            } catch {
                return false
            }
        }
        return ok ?? false
    }

    /// Proposals another node forwarded: appended only by the leader of the term they were
    /// sent in (otherwise dropped; their proposer sends them again once a newer term commits).
    public func receiveForwarded(_ envelopes: [MetadataEnvelope], term: Term) {
        propose(envelopes, term: term)
    }

    public func leaderChanged(_ leader: NodeID, role: RaftNode.Role, term: Term, group: GroupID) {
        logger.info(
            "cluster: metadata leader \(leader == 0 ? "unknown" : leader == me ? "is this node" : "changed")",
            metadata: ["leader": "\(leader)", "term": "\(term)", "role": "\(role)"])
        let known = leader != 0
        brokerLoop.execute { self.leaderKnown = known }
        onLeaderChange?(leader, role, term)
        submitUnsent()
    }

    // MARK: applying

    enum Applied: Sendable {
        case commands(LogIndex, [MetadataEnvelope])
        case other(LogIndex)
    }

    /// Committed entries (cluster loop): what this node proposed is no longer in flight; what
    /// it proposed in an older term than an applied entry's is sent again; the rest goes to the
    /// broker loop in one hop.
    public func committed(_ entries: [Entry], snapshot: Snapshot?, group: GroupID) {
        var list: [Applied] = []
        list.reserveCapacity(entries.count)
        var newest: Term = snapshot?.term ?? 0
        for e in entries {
            newest = max(newest, e.term)
            guard case .normal(let bytes) = e.payload else {
                list.append(.other(e.index))
                continue
            }
            guard let envelopes = MetadataEntry.decode(bytes) else {
                logger.error("cluster: a metadata log entry does not decode; skipped", metadata: ["index": "\(e.index)"])
                list.append(.other(e.index))
                continue
            }
            for env in envelopes where env.id.node == me && env.id.incarnation == incarnation { inFlight[env.id.serial] = nil }
            list.append(.commands(e.index, envelopes))
        }
        let stale = inFlight.filter { $0.value.term < newest }.sorted { $0.key < $1.key }
        if !stale.isEmpty {
            for (serial, v) in stale {
                inFlight[serial] = nil
                unsent.append(v.envelope)
            }
            submitUnsent()
        }
        let data = snapshot.map { ($0.index, $0.data) }
        brokerLoop.execute { self.apply(data, list) }
    }

    /// Applies a snapshot and committed entries to the broker (broker loop).
    private func apply(_ snapshot: (LogIndex, [UInt8])?, _ list: [Applied]) {
        if let (index, data) = snapshot, index > appliedIndex {
            if let doc = JSONValue(jsonText: String(decoding: data, as: UTF8.self)) {
                do throws(AdminError) {
                    try broker.installState(doc)
                } catch {
                    logger.error("cluster: a metadata snapshot could not be installed fully", metadata: ["index": "\(index)", "error": "\(error)"])
                }
            } else {
                logger.error("cluster: a metadata snapshot does not decode", metadata: ["index": "\(index)"])
            }
            if appliedIndex > 0 {
                logger.notice("cluster: metadata snapshot installed (this node was behind the leader's compacted log)", metadata: ["index": "\(index)"])
            }
            appliedIndex = index
            appliedSinceSnapshot = 0
        }
        for item in list {
            switch item {
            case .other(let index):
                appliedIndex = max(appliedIndex, index)
            case .commands(let index, let envelopes):
                guard index > appliedIndex else { continue }
                for (k, env) in envelopes.enumerated() {
                    let outcome: MetadataOutcome
                    if let command = MetadataCommand(bytes: env.command) {
                        outcome = broker.apply(command, index: index << 16 | UInt64(k))
                    } else {
                        logger.error("cluster: a metadata command does not decode; skipped (a newer Warren wrote it?)", metadata: ["index": "\(index)"])
                        outcome = .notCommitted("the command could not be read back from the log")
                    }
                    if env.id.node == me && env.id.incarnation == incarnation, let p = pending.removeValue(forKey: env.id.serial) {
                        p.completion(outcome)
                    }
                    broker.settleApplied(outcome)
                }
                appliedIndex = index
            }
            appliedSinceSnapshot += 1
        }
        if !storageSettled && appliedIndex >= startLastIndex {
            storageSettled = true
            broker.dropUnclaimedStorage()
        }
        maybeSnapshot()
        onApplied?(appliedIndex)
    }

    /// The broker's state as of `appliedIndex`, handed to the Raft group, which drops the log
    /// before it.
    private func maybeSnapshot() {
        // A snapshot costs the size of the state; taking one after half as many entries keeps
        // that cost constant per entry, and a log of nothing but declarations (one object per
        // entry) still gets compacted.
        guard appliedSinceSnapshot >= max(snapshotEvery, broker.objectCount / 2) else { return }
        appliedSinceSnapshot = 0
        let index = appliedIndex
        let started = ContinuousClock.now
        // The state is read here, on the broker loop (it is the loop's); turning it into text
        // is most of the work (seconds for 100,000 bindings) and needs nothing of the loop, so
        // it runs on a thread of its own while the loop serves its clients.
        let state = broker.stateSnapshot()
        let built = ContinuousClock.now - started
        let logger = self.logger
        let clusterLoop = self.clusterLoop
        DispatchQueue.global(qos: .utility).async {
            let data = Array(state.jsonText.utf8)
            logger.info(
                "cluster: metadata snapshot taken",
                metadata: [
                    "index": "\(index)", "bytes": "\(data.count)", "on_loop": "\(built)", "total": "\(ContinuousClock.now - started)",
                ])
            clusterLoop.execute { self.host?.compact(Self.groupID, upTo: index, data: data) }
        }
    }
}

extension Broker {
    /// Objects in the shared state (to size snapshot intervals).
    public var objectCount: Int {
        var n = users.count + vhosts.count
        for v in vhosts.values { n += v.queues.count + v.exchanges.count }
        return n
    }
}
