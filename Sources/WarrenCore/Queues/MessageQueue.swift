public import AMQPProtocol
import Logging

/// Identifies a client connection within a broker (exclusive queues name their owner by it).
public typealias ConnectionID = UInt64

/// A message sitting in a queue, or delivered from it and not yet settled.
public struct QueueEntry {
    public let message: Message
    public var redelivered: Bool
    /// The queue's arrival order; requeued messages go back to their place by it.
    public let seq: UInt64
    /// When the message expires, in milliseconds since the epoch; 0 for never. Kept across
    /// requeues: TTL counts from when the message entered the queue.
    public let expiresAt: Int64
    /// Priority level within the queue (0 for queues without `x-max-priority`).
    public let priority: UInt8
    /// The store keeps it until it leaves the queue (a persistent message on a durable queue).
    public var stored: Bool = false
    /// Quorum queues: how often it was delivered and came back (`x-delivery-count`).
    public var deliveryCount: UInt32 = 0
}

/// Why a message leaves a queue other than by an ack; RabbitMQ's `x-death` reasons.
public enum DeadLetterReason: String, Sendable {
    case rejected, expired, maxlen
    case deliveryLimit = "delivery_limit"
}

/// A queue: its ready messages, its consumers, and the count of messages delivered but not yet
/// acknowledged (those entries live on the channels that received them). Channels use it
/// through `QueueContents`; on a node that is not its home, through `RemoteQueue`.
///
/// Invariant: while messages are ready, no consumer can take one. Every event that gives a
/// consumer room (ack, new consumer, qos, flow, writability) calls `dispatch()`.
public final class MessageQueue {
    public let name: String
    public unowned(unsafe) let vhost: VirtualHost
    public let durable: Bool
    public let autoDelete: Bool
    /// The connection that owns an exclusive queue; nil for shared queues.
    public let exclusiveOwner: QueueOwner?
    /// The node that holds its messages. On the others it exists for its name, its bindings and
    /// the management view, and channels there reach its messages through `remote`
    /// (`RemoteQueue`, docs/cluster.md). For a replicated queue: its leader, as the metadata
    /// last recorded it ("" before any).
    public internal(set) var homeNode: String
    public let arguments: FieldTable
    public let type: QueueType
    /// Unique among every queue this process has had (management rates are kept by it).
    public let serial: UInt64
    /// From the arguments and the policies that apply; replaced when policies change.
    @exclusivity(unchecked) public internal(set) var settings: QueueSettings

    /// Bindings with this queue as their destination.
    public internal(set) var bindings: Set<Binding> = []

    @exclusivity(unchecked) private var ready: ReadyList
    @exclusivity(unchecked) public private(set) var unackedCount = 0
    @exclusivity(unchecked) public private(set) var consumers: [Consumer] = []
    @exclusivity(unchecked) private var roundRobin = 0
    /// Whether consumers have different `x-priority` values (the general dispatch path).
    @exclusivity(unchecked) private var consumerPriorities = false
    private var hadConsumer = false
    /// Numbers arrivals; a sequence number carries the priority level in its top byte.
    @exclusivity(unchecked) private var nextSeq: UInt64 = 0
    /// This queue's storage: where a durable queue's persistent messages are kept and where a
    /// long backlog's tail waits. Opened at declaration for durable queues, on first need for
    /// others; nil while the broker has no store.
    public internal(set) var storeQueue: (any StoreQueue)?
    public private(set) var isDeleted = false
    /// Its own rules asked for its deletion (auto-delete, x-expires); not yet applied.
    var deletionProposed = false
    /// Which creation of this name it is: the metadata log position of the command that made
    /// it (the same on every node). A queue deleted and declared again is another incarnation,
    /// so replaying the log never hands one incarnation's stored messages to another.
    public internal(set) var incarnation: UInt64 = 0
    /// Last use (declare, consume, get, last consumer gone), for `x-expires`.
    @exclusivity(unchecked) var lastUsed: Int64
    /// Holds messages with a deadline: the broker's tick looks at this queue.
    @exclusivity(unchecked) var hasDeadlines = false

    /// Connections (and other nodes' publish credit) this queue paused (flow control), by identity.
    @exclusivity(unchecked) private var pausedPublishers: [ObjectIdentifier: any PausablePublisher] = [:]

    /// Flow control: with more ready messages than this, and consumers held back by their
    /// sockets, publishers to the queue stop being read...
    public static let flowHighWater = 4096
    /// ...until the backlog is down to this.
    public static let flowLowWater = 1024

    // Counters for the management view.
    @exclusivity(unchecked) public private(set) var publishedCount: UInt64 = 0
    @exclusivity(unchecked) public private(set) var deliveredCount: UInt64 = 0
    @exclusivity(unchecked) public private(set) var redeliveredCount: UInt64 = 0
    @exclusivity(unchecked) public private(set) var ackedCount: UInt64 = 0
    public private(set) var deadLetteredCount: UInt64 = 0
    /// basic.get answers (part of `deliveredCount`), and basic.get on an empty queue.
    public private(set) var getCount: UInt64 = 0
    public private(set) var getEmptyCount: UInt64 = 0
    /// Deliveries and gets without acknowledgement (part of `deliveredCount`).
    public private(set) var noAckCount: UInt64 = 0

    init(
        name: String, vhost: VirtualHost, durable: Bool, autoDelete: Bool, exclusiveOwner: QueueOwner?,
        arguments: FieldTable, settings: QueueSettings, now: Int64, homeNode: String
    ) {
        self.homeNode = homeNode
        self.isLocal = homeNode == vhost.broker.nodeName
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.autoDelete = autoDelete
        self.exclusiveOwner = exclusiveOwner
        self.arguments = arguments
        self.type = QueueType(arguments: arguments)
        self.serial = vhost.broker.nextQueueSerial()
        self.settings = settings
        self.ready = ReadyList(maxPriority: settings.maxPriority)
        self.lastUsed = now
        self.hasDeadlines = settings.messageTTL != nil || settings.expires != nil
    }

    /// Messages ready for delivery.
    public var messageCount: Int { ready.count }
    /// Bytes of body held by ready messages.
    public var messageBytes: Int { ready.bytes }
    public var consumerCount: Int { consumers.count }
    public var isExclusive: Bool { exclusiveOwner != nil }
    /// Its messages live on this node (routing reads it on every publish). Fixed at creation,
    /// except for a replicated queue, whose leader may move.
    public internal(set) var isLocal: Bool
    /// For a queue replicated by a Raft group (quorum queues in a cluster): the group and this
    /// node's part in it. Nil for every other queue.
    public internal(set) var replicated: ReplicatedQueue?
    /// How channels here reach it when its messages live on another node.
    lazy var remote = RemoteQueue(queue: self)
    /// True when a consumer holds the queue exclusively.
    public var hasExclusiveConsumer: Bool { consumers.first?.exclusive ?? false }
    /// With `x-single-active-consumer`, the one consumer that receives messages.
    public var activeConsumer: Consumer? { settings.singleActiveConsumer ? consumers.first : nil }

    /// `queue 'name' in vhost 'v'`, as RabbitMQ names a queue in its reply texts.
    public var resourceDescription: String { "queue '\(name)' in vhost '\(vhost.name)'" }

    var now: Int64 { vhost.broker.clock.nowMilliseconds() }

    // MARK: messages in

    /// Takes a routed message: straight to a consumer when one has room, else to the back (in
    /// memory, or in the store when the backlog is long). A persistent message on a durable
    /// queue is staged in the store either way. Returns false when the queue refuses it
    /// (`x-overflow` reject-publish[-dlx] at the limit).
    @discardableResult
    public func enqueue(_ message: Message) -> Bool {
        // A replicated queue takes a message once its group committed it (`enqueueCommitted`).
        if let r = replicated { return r.publish(message, completion: nil) }
        return enqueue(message, at: nil, committed: false)
    }

    /// `at`: when it arrived (a replicated queue's leader stamps it in the log, so that every
    /// member computes the same expiry). `committed`: from a replicated queue's log, where the
    /// limits were checked when it was proposed, so it is never refused here.
    @inline(__always)
    func enqueue(_ message: Message, at: Int64?, committed: Bool) -> Bool {
        var expiresAt: Int64 = 0
        var now: Int64 = 0
        if settings.messageTTL != nil || message.properties.expiration != nil {
            now = at ?? self.now
            if let ttl = settings.messageTTL { expiresAt = now + ttl }
            if let e = message.properties.expiration, let ms = Int64(e), ms >= 0 {
                expiresAt = expiresAt == 0 ? now + ms : min(expiresAt, now + ms)
            }
            hasDeadlines = true
            vhost.broker.watch(self)
        }
        var priority: UInt8 = 0
        if let max = settings.maxPriority { priority = min(message.properties.priority ?? 0, max) }
        let seq = UInt64(priority) << 56 | nextSeq
        // A quorum queue keeps every message on disk, whatever its delivery mode.
        let persist = storeQueue?.durable == true && (message.isPersistent || type == .quorum)
        var entry = QueueEntry(message: message, redelivered: false, seq: seq, expiresAt: expiresAt, priority: priority, stored: persist)

        if ready.isEmpty, let consumer = nextConsumerWithRoom() {
            nextSeq &+= 1
            publishedCount &+= 1
            if persist { stage(entry, page: false) }
            deliver(entry, to: consumer)
            return true
        }
        // A message that expires now and found no consumer is gone (TTL 0, as RabbitMQ).
        if expiresAt != 0 && expiresAt <= now {
            nextSeq &+= 1
            publishedCount &+= 1
            entry.stored = false
            deadLetter(entry, .expired)
            return true
        }
        let limited = settings.maxLength != nil || settings.maxLengthBytes != nil
        if limited, !committed, settings.overflow != .dropHead, isFull(adding: message.bodySize) {
            entry.stored = false
            if settings.overflow == .rejectPublishDLX { deadLetter(entry, .maxlen) }
            return false
        }
        nextSeq &+= 1
        publishedCount &+= 1
        if shouldPage(level: Int(priority), persist: persist) {
            stage(entry, page: true)
            ready.addPaged(level: Int(priority), bytes: message.bodySize)
        } else {
            if persist { stage(entry, page: false) }
            ready.append(entry)
        }
        if limited { dropOverLimit() }
        return true
    }

    func isFull(adding bytes: Int) -> Bool {
        if let max = settings.maxLength, ready.count >= max { return true }
        if let max = settings.maxLengthBytes, ready.bytes + bytes > max { return true }
        return false
    }

    /// drop-head: the oldest messages go (dead-lettered as `maxlen`) until the queue fits.
    private func dropOverLimit() {
        guard settings.overflow == .dropHead else { return }
        while (settings.maxLength.map { ready.count > $0 } ?? false) || (settings.maxLengthBytes.map { ready.bytes > $0 } ?? false),
            let head = popHead()
        {
            deadLetter(head, .maxlen)
        }
    }

    // MARK: storage and paging

    /// Whether an arriving message goes to the store's tail instead of memory: always once the
    /// level has a paged tail (order), as soon as the window is full for a message the store
    /// keeps anyway, and for others when the backlog's bytes pass the limit, the queue is lazy,
    /// or memory is tight.
    @inline(__always)
    private func shouldPage(level: Int, persist: Bool) -> Bool {
        let broker = vhost.broker
        // A replicated queue's messages are in its group's log: they stay in memory.
        guard broker.messageStore != nil, replicated == nil else { return false }
        if ready.pagedTotal > 0 && ready.paged[level] > 0 { return true }
        let limits = broker.configuration
        let window = settings.lazy ? limits.lazyWindowMessages : limits.queueWindowMessages
        if ready.windowCount(level: level) >= window && (persist || settings.lazy) { return true }
        return ready.windowBytes >= limits.transientWindowBytes || broker.pagingActive
    }

    private func stage(_ entry: QueueEntry, page: Bool) {
        guard let store = vhost.broker.messageStore else { return }
        if storeQueue == nil { storeQueue = store.openQueue(id: nil, durable: false) }
        store.stage(entry.message, queue: storeQueue!, seq: entry.seq, expiresAt: entry.expiresAt, persist: entry.stored, page: page)
    }

    /// The next ready message, paging the head level's tail back in when its window is empty.
    @inline(__always)
    private func popHead() -> QueueEntry? {
        if ready.pagedTotal != 0 && ready.headNeedsPageIn { pageIn() }
        return ready.popFirst()
    }

    /// Reads the next batch of the head level's paged tail into its window.
    private func pageIn() {
        guard let level = ready.headLevel, vhost.broker.messageStore != nil, storeQueue != nil else {
            if let level = ready.headLevel { ready.forgetPaged(level: level) }
            return
        }
        let window = settings.lazy ? vhost.broker.configuration.lazyWindowMessages : vhost.broker.configuration.queueWindowMessages
        _ = pageIn(level: level, max: max(1, min(ready.paged[level], window / 2)))
    }

    /// Reads up to `max` paged messages of `level` back into memory. False when the store had
    /// none left to give (the count is forgotten, and the log says so).
    private func pageIn(level: Int, max: Int) -> Bool {
        guard let store = vhost.broker.messageStore, let handle = storeQueue else { return false }
        let batch = store.pageIn(handle, level: UInt8(level), max: max)
        if batch.isEmpty {
            vhost.broker.logger.error(
                "store has fewer messages than counted; forgetting them",
                metadata: ["queue": "\(name)", "vhost": "\(vhost.name)", "missing": "\(ready.paged[level])"])
            ready.forgetPaged(level: level)
            return false
        }
        ready.pagedIn(
            batch.map {
                QueueEntry(
                    message: $0.message, redelivered: $0.redelivered, seq: $0.seq, expiresAt: $0.expiresAt, priority: UInt8(level),
                    stored: $0.stored)
            }, level: level)
        return true
    }

    /// A message leaves the queue for good: the store forgets its copy.
    @inline(__always)
    private func forget(_ entry: QueueEntry) {
        if let r = replicated { return r.removed(entry.seq) }
        if entry.stored, let handle = storeQueue { vhost.broker.messageStore?.removed(handle, seq: entry.seq) }
    }

    /// Takes over what the store recovered for this queue after a restart: all of it paged.
    func attachRecovered(_ r: RecoveredQueue) {
        for (level, n) in r.pagedCounts where n > 0 {
            let l = min(Int(level), ready.maxPriority)
            ready.addPaged(level: l, bytes: r.pagedBytes[level] ?? 0, count: n)
        }
        nextSeq = max(nextSeq, r.nextSeq)
    }

    /// Puts delivered messages back in their original places, marked redelivered. Those whose
    /// TTL ran out meanwhile are dead-lettered as expired, as RabbitMQ does.
    public func requeue(_ entries: [QueueEntry]) {
        guard !entries.isEmpty else { return }
        unackedCount -= entries.count
        guard !isDeleted else { return }
        replicated?.returning(entries)
        var back: [QueueEntry] = []
        back.reserveCapacity(entries.count)
        let now = hasDeadlines ? self.now : 0
        for var e in entries {
            if e.expiresAt != 0 && e.expiresAt <= now {
                deadLetter(e, .expired)
                continue
            }
            if type == .quorum {
                // Every return counts (nack, reject, recover, a closed channel), as rabbit_fifo
                // counts them; past the limit the message is dead-lettered or dropped.
                e.deliveryCount &+= 1
                if let limit = settings.deliveryLimit, Int64(e.deliveryCount) > limit {
                    deadLetter(e, .deliveryLimit)
                    continue
                }
            }
            e.redelivered = true
            back.append(e)
        }
        redeliveredCount &+= UInt64(back.count)
        vhost.broker.stats.redelivered &+= UInt64(back.count)
        replicated?.returned(back)
        ready.requeue(back)
        dispatch()
    }

    // MARK: flow control

    /// Whether a publisher that just enqueued here should pause: the backlog is over the high
    /// water mark because consumers' sockets cannot take more (RabbitMQ's credit flow has the
    /// same effect). A queue without consumers never pauses publishers, and neither does one a
    /// publisher also consumes from: that client may be blocked writing to us while we wait for
    /// it to read.
    /// A consumer on another node counts as held back while its node's window is full.
    func pressures(_ publisher: AMQPConnection?) -> Bool {
        guard ready.count > Self.flowHighWater, !consumers.isEmpty else { return false }
        var heldBySocket = false
        for c in consumers {
            guard let channel = c.channel else {
                if c.proxy!.isHeld { heldBySocket = true }
                continue
            }
            let conn = channel.connection
            if conn === publisher { return false }
            if conn.deliveriesBlocked { heldBySocket = true }
        }
        return heldBySocket
    }

    func pausePublisher(_ publisher: any PausablePublisher) {
        pausedPublishers[ObjectIdentifier(publisher)] = publisher
        publisher.pauseReading(for: self)
    }

    private func releasePublishers() {
        let paused = pausedPublishers.values
        pausedPublishers.removeAll()
        for c in paused { c.resumeReading(for: self) }
    }

    // MARK: messages out

    /// Delivers ready messages while some consumer has room; never delivers an expired one.
    public func dispatch() {
        // Only a replicated queue's serving leader hands messages out.
        if let r = replicated, !r.serving { return }
        while !ready.isEmpty, let consumer = nextConsumerWithRoom() {
            guard let entry = popHead() else { break }
            if entry.expiresAt != 0 && entry.expiresAt <= now {
                deadLetter(entry, .expired)
                continue
            }
            deliver(entry, to: consumer)
        }
        if !pausedPublishers.isEmpty && ready.count <= Self.flowLowWater { releasePublishers() }
    }

    private func deliver(_ entry: QueueEntry, to consumer: Consumer) {
        deliveredCount &+= 1
        if entry.stored, let handle = storeQueue { vhost.broker.messageStore?.delivered(handle, seq: entry.seq) }
        if consumer.noAck {
            noAckCount &+= 1
            vhost.broker.stats.deliveredAutoAck &+= 1
            forget(entry)
        } else {
            vhost.broker.stats.deliveredManualAck &+= 1
            unackedCount += 1
            replicated?.checkedOut(entry)
        }
        if let channel = consumer.channel {
            channel.deliver(entry, from: self, to: consumer, message: onWire(entry, always: false), session: replicated?.epoch ?? 0)
        } else {
            vhost.broker.clusterQueues?.deliver(entry, from: self, to: consumer, message: onWire(entry, always: false))
        }
    }

    /// The message as a consumer receives it: a quorum queue's redeliveries carry
    /// `x-delivery-count` (RabbitMQ 3.10 adds it to consumer deliveries once the count is above
    /// 0, and to every basic.get answer). The queue keeps the message without it.
    @inline(__always)
    func onWire(_ entry: QueueEntry, always: Bool) -> Message {
        guard type == .quorum, always || entry.deliveryCount > 0 else { return entry.message }
        return entry.message.withHeader("x-delivery-count", .int64(Int64(entry.deliveryCount)))
    }

    /// The consumer the next message goes to: with a single active consumer, the first; with
    /// consumer priorities, round-robin among the highest-priority consumers that have room;
    /// otherwise round-robin among all.
    private func nextConsumerWithRoom() -> Consumer? {
        let n = consumers.count
        guard n > 0 else { return nil }
        if settings.singleActiveConsumer {
            let c = consumers[0]
            return c.hasRoom ? c : nil
        }
        if consumerPriorities {
            var start = 0
            while start < n {
                let p = consumers[start].priority
                var end = start + 1
                while end < n && consumers[end].priority == p { end += 1 }
                let size = end - start
                for k in 0..<size {
                    let i = start + (roundRobin + k) % size
                    if consumers[i].hasRoom {
                        roundRobin = (roundRobin + k + 1) % size
                        return consumers[i]
                    }
                }
                start = end
            }
            return nil
        }
        var i = roundRobin < n ? roundRobin : 0
        for _ in 0..<n {
            let c = consumers[i]
            i = i + 1 == n ? 0 : i + 1
            if c.hasRoom {
                roundRobin = i
                return c
            }
        }
        return nil
    }

    /// Takes the head message for `basic.get`; counted as unacked unless `noAck`.
    public func get(noAck: Bool) -> QueueEntry? {
        lastUsed = now
        while let entry = popHead() {
            if entry.expiresAt != 0 && entry.expiresAt <= lastUsed {
                deadLetter(entry, .expired)
                continue
            }
            deliveredCount &+= 1
            getCount &+= 1
            if entry.stored, let handle = storeQueue { vhost.broker.messageStore?.delivered(handle, seq: entry.seq) }
            if noAck {
                noAckCount &+= 1
                vhost.broker.stats.getAutoAck &+= 1
                forget(entry)
            } else {
                vhost.broker.stats.getManualAck &+= 1
                unackedCount += 1
                replicated?.checkedOut(entry)
            }
            return entry
        }
        getEmptyCount &+= 1
        vhost.broker.stats.getEmpty &+= 1
        return nil
    }

    /// A delivered message was acknowledged.
    public func acknowledged(_ entry: QueueEntry) {
        unackedCount -= 1
        ackedCount &+= 1
        vhost.broker.stats.acknowledged &+= 1
        forget(entry)
    }

    /// A delivered message was rejected without requeue: dead-lettered if the queue has a
    /// dead-letter exchange, else dropped.
    public func rejected(_ entry: QueueEntry) {
        unackedCount -= 1
        if isDeleted {
            forget(entry)
        } else {
            deadLetter(entry, .rejected)
        }
    }

    /// Drops every ready message, in memory and paged; returns how many.
    @discardableResult
    public func purge() -> Int {
        let n = ready.count
        for e in ready.removeWindow() { forget(e) }
        if ready.pagedTotal > 0 {
            _ = ready.dropAllPaged()
            if let handle = storeQueue { vhost.broker.messageStore?.dropPaged(handle) }
        }
        if !pausedPublishers.isEmpty { releasePublishers() }
        return n
    }

    // MARK: time

    /// Dead-letters expired messages at the head; true when the queue itself has expired
    /// (`x-expires`: unused, with no consumers, for that long).
    func tick(now: Int64) -> Bool {
        // A replicated queue's leader decides expiries and logs them; the others wait for it.
        if let r = replicated, !r.serving { return false }
        if !ready.isEmpty {
            // A queue TTL expires the paged tail too, in order: look at its head.
            if settings.messageTTL != nil && ready.headNeedsPageIn { pageIn() }
            for e in ready.popExpiredHeads(now: now) { deadLetter(e, .expired) }
        }
        if let expires = settings.expires, consumers.isEmpty, now - lastUsed >= expires { return true }
        return false
    }

    // MARK: dead-lettering

    private func deadLetter(_ entry: QueueEntry, _ reason: DeadLetterReason) {
        deadLetteredCount &+= 1
        vhost.broker.stats.deadLettered &+= 1
        // At-least-once: the replica keeps it until the targets confirm, then forgets it.
        if let r = replicated, r.deadLettersAtLeastOnce { return r.deadLetterAtLeastOnce(entry, reason) }
        vhost.deadLetter(entry.message, from: self, reason: reason)
        forget(entry)
    }

    /// A message dead-lettered at least once, now confirmed by its targets.
    func forgetDeadLettered(_ entry: QueueEntry) { forget(entry) }

    /// Messages taken out for dead-lettering and not confirmed, back among the ready ones (a
    /// leadership that ended: the log still has them).
    func putBack(_ entries: [QueueEntry]) {
        guard !entries.isEmpty else { return }
        ready.requeue(entries)
    }

    // MARK: settings

    /// New settings from a policy change; limits apply to what is already queued, at once.
    func apply(_ new: QueueSettings) {
        let old = settings
        settings = new
        hasDeadlines = hasDeadlines || new.messageTTL != nil || new.expires != nil
        if hasDeadlines { vhost.broker.watch(self) }
        if new.maxLength != old.maxLength || new.maxLengthBytes != old.maxLengthBytes { dropOverLimit() }
    }

    // MARK: consumers

    func addConsumer(_ consumer: Consumer) {
        // Keep consumers in priority order (stable: equal priorities in arrival order).
        if let i = consumers.firstIndex(where: { $0.priority < consumer.priority }) {
            consumers.insert(consumer, at: i)
        } else {
            consumers.append(consumer)
        }
        consumerPriorities = consumers.contains { $0.priority != consumers[0].priority }
        hadConsumer = true
        lastUsed = now
        dispatch()
    }

    /// Removes a consumer. Returns true if this left an auto-delete queue without consumers, in
    /// which case the caller deletes the queue.
    func removeConsumer(_ consumer: Consumer) -> Bool {
        guard let i = consumers.firstIndex(where: { $0 === consumer }) else { return false }
        consumers.remove(at: i)
        if roundRobin > i { roundRobin -= 1 }
        consumerPriorities = consumers.contains { $0.priority != consumers[0].priority }
        if consumers.isEmpty {
            lastUsed = now
            if !pausedPublishers.isEmpty { releasePublishers() }
        } else if settings.singleActiveConsumer && i == 0 {
            // Failover: the next consumer in line becomes the active one.
            dispatch()
        }
        return consumers.isEmpty && autoDelete && hadConsumer && !isDeleted
    }

    /// Marks the queue deleted and drops its messages. Its consumers are returned, already
    /// detached: the caller tells their channels (`Consumer.cancelledByBroker`) once its own
    /// reply is out, since RabbitMQ sends queue.delete-ok before basic.cancel. Called by the
    /// vhost, which also removes the bindings.
    func markDeleted() -> (messages: Int, cancelled: [Consumer]) {
        let n = purge()
        isDeleted = true
        if let handle = storeQueue {
            vhost.broker.messageStore?.dropQueue(handle)
            storeQueue = nil
        }
        let cancelled = consumers
        consumers.removeAll()
        return (n, cancelled)
    }
}

extension MessageQueue: FlowSource {
    func forgetPausedPublisher(_ publisher: any PausablePublisher) {
        pausedPublishers[ObjectIdentifier(publisher)] = nil
    }

    var flowDescription: String { resourceDescription }
}

// MARK: a replicated queue's member (here for the ready list; `ReplicatedQueue` drives it)

extension MessageQueue {
    /// A member that does not lead takes a committed message: to the back, numbered and timed
    /// as its leader numbered and timed it (both count every committed message once).
    func replicaAppend(_ message: Message, at: Int64) {
        var expiresAt: Int64 = 0
        if let ttl = settings.messageTTL { expiresAt = at + ttl }
        if let e = message.properties.expiration, let ms = Int64(e), ms >= 0 {
            expiresAt = expiresAt == 0 ? at + ms : min(expiresAt, at + ms)
        }
        if expiresAt != 0 && !hasDeadlines {
            hasDeadlines = true
            vhost.broker.watch(self)
        }
        var priority: UInt8 = 0
        if let max = settings.maxPriority { priority = min(message.properties.priority ?? 0, max) }
        let seq = UInt64(priority) << 56 | nextSeq
        nextSeq &+= 1
        publishedCount &+= 1
        ready.append(QueueEntry(message: message, redelivered: false, seq: seq, expiresAt: expiresAt, priority: priority))
    }

    /// Messages the leader settled for good (acked, dropped, dead-lettered, expired, purged).
    func replicaRemove(_ seqs: [UInt64]) {
        for s in seqs { _ = ready.remove(seq: s) }
    }

    /// Messages the leader handed out (`returned`: and got back): a later leader delivers them
    /// as redelivered, with the delivery count the leader had.
    func replicaMark(_ seqs: [UInt64], returned: Bool) {
        for s in seqs {
            ready.update(seq: s) {
                $0.redelivered = true
                if returned { $0.deliveryCount &+= 1 }
            }
        }
    }

    /// A leader that stops leading: what it had handed out goes back among the ready messages
    /// (no delivery is counted: the next leader delivers them again, marked redelivered).
    func takeBack(_ entries: [QueueEntry]) {
        guard !entries.isEmpty else { return }
        unackedCount -= entries.count
        ready.requeue(entries)
    }

    /// A delivery the log says is settled while this leader still counted it as handed out.
    func forgetDelivered() { unackedCount -= 1 }

    /// Everything ready, and the next sequence number: a replica's snapshot (with the leader's
    /// handed-out messages, which the caller adds).
    var replicaContents: (nextSeq: UInt64, entries: [QueueEntry]) { (nextSeq, ready.allEntries) }

    /// Replaces the contents with a snapshot's.
    func restoreReplica(nextSeq: UInt64, entries: [QueueEntry]) {
        ready = ReadyList(maxPriority: settings.maxPriority)
        for e in entries.sorted(by: { $0.seq < $1.seq }) { ready.append(e) }
        self.nextSeq = nextSeq
        unackedCount = 0
    }

    // MARK: becoming replicated (a mirroring policy applied to an existing queue)

    /// Makes this existing queue replicated (every node, applying the policy change): its home
    /// founds the group with the queue's contents as its first snapshot (every paged message
    /// read back, and the messages other nodes' consumers hold taken back as redelivered); the
    /// other members join and get that snapshot from it. This node's consumers of the queue
    /// stay where they are attached; deliveries made before are settled as
    /// `ReplicatedQueue.settle` says.
    func becomeReplicated(placement: ReplicaPlacement, manager: ReplicatedQueues) {
        let broker = vhost.broker
        let members = broker.placeReplicas(home: homeNode, placement: placement)
        var initial: [UInt8]?
        if isLocal {
            pageInAll()
            var entries = ready.allEntries
            for var e in broker.clusterQueues?.takeDeliveries(of: self) ?? [] {
                e.redelivered = true
                entries.append(e)
            }
            initial = ReplicatedQueue.encodeSnapshot(nextSeq: nextSeq, entries: entries) { $0.redelivered }
        }
        let r = ReplicatedQueue(
            queue: self, members: members, placement: placement, leaderTerm: 0, manager: manager, converting: initial, converted: true)
        r.storeToRelease = storeQueue != nil
        replicated = r
        for conn in broker.connections.values {
            for ch in conn.channels.values {
                for c in ch.consumers.values where c.queue === self { r.adopt(c) }
            }
        }
        broker.logger.info(
            "\(resourceDescription): a mirroring policy applies: it is replicated from now on", metadata: ["members": "\(members)"])
    }

    /// Every paged message back in memory (a replicated queue keeps its messages there).
    private func pageInAll() {
        guard ready.pagedTotal > 0, vhost.broker.messageStore != nil, storeQueue != nil else { return }
        for level in ready.paged.indices {
            while ready.paged[level] > 0, pageIn(level: level, max: ready.paged[level]) {}
        }
    }

    /// The store's copy of a queue that became replicated goes (its group has the messages on
    /// disk now).
    func releaseStore() {
        guard let handle = storeQueue else { return }
        vhost.broker.messageStore?.dropQueue(handle)
        storeQueue = nil
    }

    /// Consumers of other nodes leave (the queue's leader moved: their nodes attach them to the
    /// new one).
    func dropProxies() -> [Consumer] {
        let gone = consumers.filter { $0.channel == nil }
        guard !gone.isEmpty else { return [] }
        consumers.removeAll { $0.channel == nil }
        roundRobin = 0
        consumerPriorities = consumers.contains { $0.priority != consumers[0].priority }
        return gone
    }
}
