import AMQPProtocol
import Logging
import NIOCore

/// A queue whose messages a Raft group replicates over several nodes (a quorum queue in a
/// cluster; docs/replicated-queues.md). It exists on every node that has the queue, as what
/// channels there use (`QueueContents`); on its members it also drives the replica.
///
/// The leader decides, the log records, every member applies. Only the group's leader serves
/// the queue: it proposes each publish and applies it when committed (so a confirm means a
/// majority has it on disk), hands messages out, and logs what becomes of them (removed,
/// returned, delivered) as lists of sequence numbers, batched per turn of the broker loop. The
/// other members apply the same entries in the same order and hold the same messages, numbered
/// the same way. Which messages are handed out to whom is the leader's alone (not logged): a
/// new leader hands out again everything not settled, marked redelivered when the log says it
/// was delivered before.
///
/// Where it is served. The metadata records each new leader (`queueLeader`), and every node's
/// channels send publishes to, and attach their consumers to, the node recorded there
/// (`MessageQueue.homeNode`). A leader serves once Raft made it leader and it has applied an
/// entry of its own term (so it has everything committed before); it then asks the metadata
/// to record it. A node whose leadership ended stops serving at once: what it had handed out
/// goes back among its ready messages, its proposals not yet committed are nacked (the next
/// leader may still commit them: published, nacked, delivered anyway), and acks of its
/// deliveries are ignored from then on (they are delivered again).
///
/// Consumers are not cancelled when the leader moves: each node detaches its consumers from
/// the old leader and attaches them to the new one when it applies the new record, or when
/// its link to the leader is back.
public final class ReplicatedQueue: QueueContents {
    unowned(unsafe) let queue: MessageQueue
    unowned(unsafe) let manager: ReplicatedQueues
    /// The queue's Raft group (`groupID`).
    public let group: UInt64
    /// Its members as the metadata lists them (the group's leader moves the Raft membership
    /// towards this list, one member at a time).
    public private(set) var members: [String]
    public private(set) var isMember: Bool
    /// This member's Raft state as last reported (quorum_status).
    public private(set) var status = ReplicaStatus()

    // MARK: every node

    /// The term of the leadership the metadata records.
    public internal(set) var leaderTerm: UInt64
    /// This node's consumers of the queue, and the node each is attached to ("": none, it
    /// waits for a leader or for the link to it).
    var consumers: [Consumer] = []
    var attachedTo: [ObjectIdentifier: String] = [:]

    // MARK: members

    /// Raft made this member leader in `raftTerm`.
    public private(set) var leads = false
    public private(set) var raftTerm: UInt64 = 0
    /// Leader with everything committed applied: it hands out messages and takes publishes.
    public private(set) var serving = false
    /// Messages this leader handed out and not yet settled, by sequence number.
    var handedOut: [UInt64: QueueEntry] = [:]
    /// Messages this leader dead-letters at least once, until their targets confirm them (then
    /// their removal is logged), with when to try again after a failure.
    var deadLettering: [UInt64: (entry: QueueEntry, reason: DeadLetterReason, retryAt: Int64?)] = [:]
    /// This turn's batch: enqueues as they come, the lists added when it is taken.
    private var out = ByteBuffer()
    private var outCount: UInt32 = 0
    private var outCompletions: [(Bool) -> Void] = []
    private var removedSeqs: [UInt64] = []
    private var returnedSeqs: [UInt64] = []
    private var deliveredSeqs: [UInt64] = []
    private var dirty = false
    /// Confirms waiting for their batch to be applied, by its serial.
    private var pending: [UInt64: (deadline: Int64, completions: [(Bool) -> Void])] = [:]
    /// Publishes that came while this node is the recorded leader but not serving (an
    /// election): proposed once it serves, nacked if that takes too long.
    var held: [(message: Message, completion: ((Bool) -> Void)?, deadline: Int64)] = []
    /// basic.get and purge waiting for this node to serve.
    var waiters: [(deadline: Int64, run: (Bool) -> Void)] = []
    public internal(set) var appliedIndex: UInt64 = 0
    var entriesSinceSnapshot = 0
    var bytesSinceSnapshot = 0
    private var lastAnnounced: Int64 = 0

    /// How many members it should have, and which (its arguments or its policy).
    public internal(set) var placement: ReplicaPlacement
    /// A queue that existed before it was replicated (`MessageQueue.becomeReplicated`): its
    /// home's store still has its messages until the group has them on disk.
    var storeToRelease = false

    init(
        queue: MessageQueue, members: [String], placement: ReplicaPlacement, leaderTerm: UInt64, manager: ReplicatedQueues,
        converting initial: [UInt8]? = nil, converted: Bool = false
    ) {
        self.queue = queue
        self.manager = manager
        self.placement = placement
        self.group = Self.groupID(vhost: queue.vhost.name, name: queue.name, incarnation: queue.incarnation)
        self.members = members
        self.leaderTerm = leaderTerm
        let me = manager.broker.nodeName
        self.isMember = members.contains(me)
        for m in members { manager.memberCounts[m, default: 0] += 1 }
        if isMember {
            manager.register(self)
            // A converted queue: its home founds the group with the contents; the others join.
            let join = converted && initial == nil
            manager.log?.open(group: group, members: members, campaign: queue.homeNode == me && leaderTerm == 0, join: join, initial: initial)
        } else {
            manager.nonMembers[ObjectIdentifier(self)] = self
        }
    }

    var me: String { manager.broker.nodeName }

    /// The group of a queue: the same on every node, different for every queue and incarnation
    /// (one definitions import makes many queues at one log position). Never 0, the metadata's.
    static func groupID(vhost: String, name: String, incarnation: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        for b in vhost.utf8 { mix(b) }
        mix(0)
        for b in name.utf8 { mix(b) }
        mix(0)
        for i in 0..<8 { mix(UInt8(truncatingIfNeeded: incarnation >> (8 * i))) }
        return h == 0 ? 1 : h
    }
    /// The session of this leader's own deliveries (`Delivery.session`): acks from an earlier
    /// leadership do not match it.
    var epoch: UInt64 { raftTerm }

    /// The metadata changed its members: a node added joins the group (empty: the leader sends
    /// it the state), a node removed leaves it and forgets the messages.
    func membersChanged(_ new: [String]) {
        guard new != members, !new.isEmpty else { return }
        for m in members { manager.memberCounts[m, default: 1] -= 1 }
        for m in new { manager.memberCounts[m, default: 0] += 1 }
        let was = isMember
        members = new
        isMember = new.contains(me)
        if isMember && !was {
            manager.nonMembers[ObjectIdentifier(self)] = nil
            manager.register(self)
            appliedIndex = 0
            queue.restoreReplica(nextSeq: 0, entries: [])
            manager.log?.open(group: group, members: new, campaign: false, join: true, initial: nil)
            manager.broker.logger.info("\(queue.resourceDescription): this node joins its group", metadata: ["members": "\(new)"])
        } else if was && !isMember {
            failAll()
            leads = false
            manager.unregister(self)
            manager.log?.leave(group: group, members: new)
            manager.nonMembers[ObjectIdentifier(self)] = self
            appliedIndex = 0
            queue.restoreReplica(nextSeq: 0, entries: [])
            manager.broker.logger.info("\(queue.resourceDescription): this node left its group", metadata: ["members": "\(new)"])
        }
        if isMember { manager.log?.setMembers(group: group, members: new) }
    }

    /// A mirroring policy in force now asks for other members (ha-mode or ha-params changed):
    /// members still allowed stay, the leader first, up to the new size; nodes holding the
    /// fewest replicas fill the rest. Every node computes the same list from the metadata.
    func placementChanged(_ p: ReplicaPlacement) {
        placement = p
        let nodes = Set(manager.broker.clusterNodes.keys)
        let target = p.target(in: nodes)
        let allowed = members.filter { p.allows($0) }
        var new = Array((allowed.filter { $0 == queue.homeNode } + allowed.filter { $0 != queue.homeNode }).prefix(target))
        if new.count < target {
            new += manager.fewestReplicas(among: nodes.filter { !new.contains($0) && p.allows($0) }).prefix(target - new.count)
        }
        if !new.isEmpty && Set(new) != Set(members) { membersChanged(new) }
    }

    /// Raft's state of this member, as the group reported it.
    func statusChanged(_ s: ReplicaStatus) { status = s }

    /// Asks the group to hand leadership to `node` (this node leads it).
    public func transferLeadership(to node: String) {
        manager.log?.transferLeadership(group: group, to: node)
    }

    /// The leader an operator asked for (transfer_leadership, rebalance), until it is recorded.
    public internal(set) var wantedLeader: String?

    /// The metadata asks for `node` to lead: the member that leads now hands over, or the one
    /// that leads next does, as soon as it serves.
    func leaderWanted(_ node: String) {
        guard members.contains(node), queue.homeNode != node || !serving else { return }
        wantedLeader = node
        if serving && node != me { transferLeadership(to: node) }
    }

    /// The queue was deleted: its group goes. Returns this node's consumers that were waiting
    /// for a leader (the others are cancelled with the queue's own).
    func close() -> [Consumer] {
        for m in members { manager.memberCounts[m, default: 1] -= 1 }
        manager.nonMembers[ObjectIdentifier(self)] = nil
        if isMember {
            manager.unregister(self)
            manager.log?.close(group: group)
        }
        failAll()
        let waiting = consumers.filter { attachedTo[ObjectIdentifier($0)] == "" }
        consumers.removeAll()
        attachedTo.removeAll()
        return waiting
    }

    // MARK: publishing (the recorded leader)

    /// Proposes a message routed here (this node is the recorded leader), or passes it on to
    /// the leader recorded since; `completion` hears whether the group committed it. False when
    /// it is refused at once (x-overflow reject-publish, the leader unreachable), and then
    /// `completion` is not called.
    func publish(_ m: Message, completion: ((Bool) -> Void)?) -> Bool {
        guard serving else {
            let home = queue.homeNode
            if home != me && !home.isEmpty {
                return manager.broker.clusterQueues?.forward(m, vhost: queue.vhost.name, queue: queue.name, to: home, completion: completion) ?? false
            }
            // An election: it waits (bounded) for this node to serve or another to be recorded.
            held.append((m, completion, manager.now + manager.timeout))
            return true
        }
        let s = queue.settings
        if s.overflow != .dropHead, s.maxLength != nil || s.maxLengthBytes != nil, queue.isFull(adding: m.bodySize) { return false }
        // (The completion first: the batch may be taken as soon as the command is in it.)
        if let completion { outCompletions.append(completion) }
        append(.enqueue(at: manager.now, message: m))
        return true
    }

    private func append(_ c: ReplicaCommand) {
        write(c)
        markDirty()
    }

    private func write(_ c: ReplicaCommand) {
        if outCount == 0 {
            out.clear()
            out.writeRepeatingByte(0, count: ReplicaCommand.headerSize)
        }
        c.write(into: &out)
        outCount += 1
    }

    private func markDirty() {
        guard !dirty else { return }
        dirty = true
        manager.markDirty(self)
    }

    /// This turn's batch for the log (nil: nothing, or no longer leader).
    func takeBatch() -> [UInt8]? {
        dirty = false
        guard serving else {
            dropOutput()
            return nil
        }
        if !deliveredSeqs.isEmpty {
            write(.delivered(deliveredSeqs))
            deliveredSeqs.removeAll(keepingCapacity: true)
        }
        if !returnedSeqs.isEmpty {
            write(.returned(returnedSeqs))
            returnedSeqs.removeAll(keepingCapacity: true)
        }
        if !removedSeqs.isEmpty {
            write(.removed(removedSeqs))
            removedSeqs.removeAll(keepingCapacity: true)
        }
        guard outCount > 0 else { return nil }
        let serial = manager.nextSerial
        manager.nextSerial += 1
        let at = out.readerIndex
        out.setInteger(manager.proposer, at: at)
        out.setInteger(serial, at: at + 8)
        out.setInteger(outCount, at: at + 16)
        let data = Array(out.readableBytesView)
        out.clear()
        outCount = 0
        if !outCompletions.isEmpty {
            pending[serial] = (manager.now + manager.timeout, outCompletions)
            outCompletions = []
        }
        return data
    }

    private func dropOutput() {
        out.clear()
        outCount = 0
        removedSeqs.removeAll()
        returnedSeqs.removeAll()
        deliveredSeqs.removeAll()
        let failed = outCompletions
        outCompletions = []
        for c in failed { c(false) }
    }

    // MARK: what the leader's queue does (MessageQueue calls these)

    /// Handed out to a consumer or basic.get, to be acked.
    func checkedOut(_ e: QueueEntry) {
        guard serving else { return }
        handedOut[e.seq] = e
        deliveredSeqs.append(e.seq)
        markDirty()
    }

    /// Gone for good (acked, dropped, dead-lettered, expired, purged, delivered without ack).
    func removed(_ seq: UInt64) {
        guard serving else { return }
        handedOut[seq] = nil
        removedSeqs.append(seq)
        markDirty()
    }

    /// Coming back (before the queue decides which of them it keeps).
    func returning(_ entries: [QueueEntry]) {
        for e in entries { handedOut[e.seq] = nil }
    }

    /// Back among the ready messages, with a delivery more counted.
    func returned(_ entries: [QueueEntry]) {
        guard serving, !entries.isEmpty else { return }
        for e in entries { returnedSeqs.append(e.seq) }
        markDirty()
    }

    // MARK: at-least-once dead-lettering (the leader)

    /// Whether this leader dead-letters at least once (`QueueSettings.deadLetterAtLeastOnce`).
    var deadLettersAtLeastOnce: Bool { serving && queue.settings.deadLetterAtLeastOnce }

    /// `e` left the queue for `reason`: it is dead-lettered, and forgotten (its removal logged)
    /// only once every target has it. Until then it stays in the log, so a leader that takes
    /// over before that has it again (and dead-letters it again, or delivers it: at least once).
    func deadLetterAtLeastOnce(_ e: QueueEntry, _ reason: DeadLetterReason) {
        // A rejected delivery is no longer handed out (else a leadership that ends would put
        // it back twice, and a snapshot would hold it twice).
        handedOut[e.seq] = nil
        deadLettering[e.seq] = (e, reason, nil)
        attemptDeadLetter(e.seq)
    }

    private func attemptDeadLetter(_ seq: UInt64) {
        guard let d = deadLettering[seq] else { return }
        let term = raftTerm
        queue.vhost.deadLetter(d.entry.message, from: queue, reason: d.reason) { [self] ok in
            // A leadership that ended meanwhile put it back already.
            guard serving, raftTerm == term, let d = deadLettering[seq] else { return }
            if ok {
                deadLettering[seq] = nil
                queue.forgetDeadLettered(d.entry)
            } else {
                // Unroutable, refused or unreachable: kept, and tried again (RabbitMQ retries too).
                if deadLettering[seq]?.retryAt == nil {
                    manager.broker.logger.debug("\(queue.resourceDescription): dead-lettering not confirmed; tried again in 2 s")
                }
                deadLettering[seq]!.retryAt = manager.now + 2000
            }
        }
    }

    // MARK: from the group

    /// A committed entry (in log order).
    func apply(_ e: ReplicaEntry) {
        guard e.index > appliedIndex else { return }
        appliedIndex = e.index
        if storeToRelease {
            // An entry applied here was synced to the WAL after the group's first snapshot was
            // written: the messages are on disk in the group now, and the store's copy goes.
            storeToRelease = false
            queue.releaseStore()
        }
        if let data = e.data {
            applyBatch(data)
            bytesSinceSnapshot += data.count
        }
        if leads && !serving && e.term == raftTerm { startServing() }
        entriesSinceSnapshot += 1
        // A snapshot copies the whole queue and writes a file: taken once the log since the last
        // one is long (entries or bytes), and at least twice the snapshot's own size, so that
        // its cost per message stays small however deep the queue is.
        if entriesSinceSnapshot >= manager.snapshotEntries || bytesSinceSnapshot >= manager.snapshotBytes,
            bytesSinceSnapshot >= 2 * (queue.messageBytes + 64 * (queue.messageCount + handedOut.count))
        {
            snapshot()
        }
    }

    private func applyBatch(_ data: [UInt8]) {
        var b = ByteBuffer(bytes: data)
        guard let proposer = b.readInteger(as: UInt64.self), let serial = b.readInteger(as: UInt64.self),
            let count = b.readInteger(as: UInt32.self)
        else {
            return manager.broker.logger.error("\(queue.resourceDescription): malformed log entry \(appliedIndex) skipped")
        }
        // A member applies the settlements it proposed itself when it made them; the others'
        // (another leader's, or this node's before a restart) are applied here.
        let mine = proposer == manager.proposer
        for _ in 0..<count {
            let c: ReplicaCommand
            do throws(AMQPError) {
                c = try ReplicaCommand.read(&b)
            } catch {
                manager.broker.logger.error("\(queue.resourceDescription): malformed log entry \(appliedIndex): \(error)")
                break
            }
            switch c {
            case .enqueue(let at, let message):
                if serving {
                    _ = queue.enqueue(message, at: at, committed: true)
                } else {
                    queue.replicaAppend(message, at: at)
                }
            case .removed(let seqs):
                guard !mine else { continue }
                if serving {
                    for s in seqs where handedOut.removeValue(forKey: s) != nil { queue.forgetDelivered() }
                }
                queue.replicaRemove(seqs)
            case .returned(let seqs):
                if !mine { queue.replicaMark(seqs, returned: true) }
            case .delivered(let seqs):
                if !mine { queue.replicaMark(seqs, returned: false) }
            }
        }
        if mine, let p = pending.removeValue(forKey: serial) {
            for c in p.completions { c(true) }
        }
    }

    /// Raft's view of this member changed: it leads in `term`, or no longer leads.
    func roleChanged(leads now: Bool, term: UInt64) {
        if now {
            if leads && term == raftTerm { return }
            if serving { stopServing() }
            leads = true
            raftTerm = term
            // It serves once it applies an entry of this term (`apply`).
        } else if leads {
            leads = false
            raftTerm = term
            stopServing()
        }
    }

    private func startServing() {
        serving = true
        manager.broker.logger.info("\(queue.resourceDescription): this node leads its group now", metadata: ["term": "\(raftTerm)"])
        announce()
        if let wanted = wantedLeader, wanted != me, members.contains(wanted) { transferLeadership(to: wanted) }
        if queue.hasDeadlines { manager.broker.watch(queue) }
        let waiting = held
        held.removeAll()
        for h in waiting where !publish(h.message, completion: h.completion) { h.completion?(false) }
        let w = waiters
        waiters.removeAll()
        for x in w { x.run(true) }
        queue.dispatch()
    }

    /// Leadership ended (or the queue went): see the type's comment.
    private func stopServing() {
        let was = serving
        serving = false
        if !deadLettering.isEmpty {
            // Their removal was never logged: the next leader has them, and so must this node.
            queue.putBack(deadLettering.values.map(\.entry))
            deadLettering.removeAll()
        }
        if !handedOut.isEmpty {
            let back = handedOut.values.map {
                var e = $0
                e.redelivered = true
                return e
            }
            handedOut.removeAll()
            queue.takeBack(back)
        }
        manager.broker.clusterQueues?.forgetDeliveries(of: queue)
        dropOutput()
        let p = pending
        pending.removeAll()
        if !p.isEmpty {
            manager.broker.logger.warning(
                "\(queue.resourceDescription): leadership ended with publishes not yet committed: they are nacked (the next leader may still have them)",
                metadata: ["batches": "\(p.count)"])
        }
        for (_, x) in p.sorted(by: { $0.key < $1.key }) { for c in x.completions { c(false) } }
        if was { manager.broker.logger.info("\(queue.resourceDescription): this node no longer leads its group", metadata: ["term": "\(raftTerm)"]) }
    }

    func failAll() {
        stopServing()
        let h = held
        held.removeAll()
        for x in h { x.completion?(false) }
        let w = waiters
        waiters.removeAll()
        for x in w { x.run(false) }
    }

    /// Asks the metadata to record this node as the leader.
    private func announce() {
        lastAnnounced = manager.now
        manager.broker.metadataLog.propose(
            .queueLeader(vhost: queue.vhost.name, name: queue.name, incarnation: queue.incarnation, node: me, term: raftTerm)
        ) { _ in }
    }

    /// The batch `serial` was refused by the group (this node did not lead it any more).
    func proposalFailed(_ serial: UInt64) {
        guard let p = pending.removeValue(forKey: serial) else { return }
        manager.broker.logger.warning("\(queue.resourceDescription): its group refused a batch (this node no longer leads it): its publishes are nacked")
        for c in p.completions { c(false) }
    }

    func tick(now: Int64) {
        if !pending.isEmpty {
            for (serial, p) in pending where p.deadline <= now {
                pending[serial] = nil
                manager.broker.logger.warning("\(queue.resourceDescription): publishes not committed in time (no majority of its members?): nacked")
                for c in p.completions { c(false) }
            }
        }
        if !held.isEmpty {
            if let first = held.first, first.deadline <= now {
                manager.broker.logger.warning("\(queue.resourceDescription): no leader elected in time: publishes waiting for one are nacked")
            }
            while let first = held.first, first.deadline <= now {
                held.removeFirst()
                first.completion?(false)
            }
        }
        if !waiters.isEmpty {
            while let first = waiters.first, first.deadline <= now {
                waiters.removeFirst()
                first.run(false)
            }
        }
        if serving && !deadLettering.isEmpty {
            for (seq, d) in deadLettering where (d.retryAt ?? .max) <= now {
                deadLettering[seq]!.retryAt = nil
                attemptDeadLetter(seq)
            }
        }
        // A record that did not commit (no metadata majority a moment ago) is asked for again.
        if serving && (leaderTerm < raftTerm || queue.homeNode != me) && now - lastAnnounced >= 2000 { announce() }
    }
}
