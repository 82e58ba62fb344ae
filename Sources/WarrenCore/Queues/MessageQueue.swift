public import AMQPProtocol
import DequeModule

/// Identifies a client connection within a broker (exclusive queues name their owner by it).
public typealias ConnectionID = UInt64

/// A message sitting in a queue, or delivered from it and not yet settled.
public struct QueueEntry {
    public let message: Message
    public var redelivered: Bool
    /// The queue's arrival order; requeued messages go back to their place by it.
    public let seq: UInt64
}

/// A queue: its ready messages in order, its consumers, and the count of messages delivered
/// but not yet acknowledged (those entries live on the channels that received them).
///
/// Invariant: while `ready` is not empty, no consumer can take a message. Every event that gives
/// a consumer room (ack, new consumer, qos, flow, writability) calls `dispatch()`.
public final class MessageQueue {
    public let name: String
    public unowned(unsafe) let vhost: VirtualHost
    public let durable: Bool
    public let autoDelete: Bool
    /// The connection that owns an exclusive queue; nil for shared queues.
    public let exclusiveOwner: ConnectionID?
    public let arguments: FieldTable

    /// Bindings with this queue as their destination.
    public internal(set) var bindings: Set<Binding> = []

    @exclusivity(unchecked) private var ready = Deque<QueueEntry>()
    @exclusivity(unchecked) private var readyBytes = 0
    @exclusivity(unchecked) public private(set) var unackedCount = 0
    public private(set) var consumers: [Consumer] = []
    @exclusivity(unchecked) private var roundRobin = 0
    private var hadConsumer = false
    @exclusivity(unchecked) private var nextSeq: UInt64 = 0
    public private(set) var isDeleted = false

    /// Connections whose reading this queue paused (flow control), by identity.
    private var pausedPublishers: [ObjectIdentifier: AMQPConnection] = [:]

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

    init(
        name: String, vhost: VirtualHost, durable: Bool, autoDelete: Bool, exclusiveOwner: ConnectionID?,
        arguments: FieldTable
    ) {
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.autoDelete = autoDelete
        self.exclusiveOwner = exclusiveOwner
        self.arguments = arguments
    }

    /// Messages ready for delivery.
    public var messageCount: Int { ready.count }
    /// Bytes of body held by ready messages.
    public var messageBytes: Int { readyBytes }
    public var consumerCount: Int { consumers.count }
    public var isExclusive: Bool { exclusiveOwner != nil }
    /// True when a consumer holds the queue exclusively.
    public var hasExclusiveConsumer: Bool { consumers.first?.exclusive ?? false }

    /// `queue 'name' in vhost 'v'`, as RabbitMQ names a queue in its reply texts.
    public var resourceDescription: String { "queue '\(name)' in vhost '\(vhost.name)'" }

    // MARK: messages in

    /// Takes a routed message: straight to a consumer when one has room, else to the back.
    public func enqueue(_ message: Message) {
        let entry = QueueEntry(message: message, redelivered: false, seq: nextSeq)
        nextSeq &+= 1
        publishedCount &+= 1
        if ready.isEmpty, let consumer = nextConsumerWithRoom() {
            deliver(entry, to: consumer)
            return
        }
        readyBytes += message.bodySize
        ready.append(entry)
    }

    /// Puts delivered messages back in their original places, marked redelivered.
    public func requeue(_ entries: [QueueEntry]) {
        guard !entries.isEmpty else { return }
        unackedCount -= entries.count
        guard !isDeleted else { return }
        var sorted = entries.sorted { $0.seq < $1.seq }
        for i in sorted.indices {
            sorted[i].redelivered = true
            readyBytes += sorted[i].message.bodySize
        }
        redeliveredCount &+= UInt64(sorted.count)
        if let first = ready.first, sorted.last!.seq > first.seq {
            // Rare: interleave with messages already back in the queue.
            var merged = Deque<QueueEntry>()
            merged.reserveCapacity(ready.count + sorted.count)
            var i = sorted.startIndex
            while let head = ready.first {
                if i < sorted.endIndex && sorted[i].seq < head.seq {
                    merged.append(sorted[i])
                    i += 1
                } else {
                    merged.append(ready.removeFirst())
                }
            }
            merged.append(contentsOf: sorted[i...])
            ready = merged
        } else {
            ready.prepend(contentsOf: sorted)
        }
        dispatch()
    }

    // MARK: flow control

    /// Whether a publisher that just enqueued here should pause: the backlog is over the high
    /// water mark because consumers' sockets cannot take more (RabbitMQ's credit flow has the
    /// same effect). A queue without consumers never pauses publishers, and neither does one a
    /// publisher also consumes from: that client may be blocked writing to us while we wait for
    /// it to read.
    func pressures(_ publisher: AMQPConnection) -> Bool {
        guard ready.count > Self.flowHighWater, !consumers.isEmpty else { return false }
        var heldBySocket = false
        for c in consumers {
            let conn = c.channel.connection
            if conn === publisher { return false }
            if !conn.isWritable { heldBySocket = true }
        }
        return heldBySocket
    }

    func pausePublisher(_ connection: AMQPConnection) {
        pausedPublishers[ObjectIdentifier(connection)] = connection
        connection.pauseReading(for: self)
    }

    func forgetPausedPublisher(_ connection: AMQPConnection) {
        pausedPublishers[ObjectIdentifier(connection)] = nil
    }

    private func releasePublishers() {
        let paused = pausedPublishers.values
        pausedPublishers.removeAll()
        for c in paused { c.resumeReading(for: self) }
    }

    // MARK: messages out

    /// Delivers ready messages while some consumer has room, round-robin across consumers.
    public func dispatch() {
        while !ready.isEmpty, let consumer = nextConsumerWithRoom() {
            let entry = ready.removeFirst()
            readyBytes -= entry.message.bodySize
            deliver(entry, to: consumer)
        }
        if !pausedPublishers.isEmpty && ready.count <= Self.flowLowWater { releasePublishers() }
    }

    private func deliver(_ entry: QueueEntry, to consumer: Consumer) {
        deliveredCount &+= 1
        if !consumer.noAck { unackedCount += 1 }
        consumer.channel.deliver(entry, from: self, to: consumer)
    }

    private func nextConsumerWithRoom() -> Consumer? {
        let n = consumers.count
        guard n > 0 else { return nil }
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
        guard let entry = ready.popFirst() else { return nil }
        readyBytes -= entry.message.bodySize
        deliveredCount &+= 1
        if !noAck { unackedCount += 1 }
        return entry
    }

    /// A delivered message was acknowledged.
    public func acknowledged(_ entry: QueueEntry) {
        unackedCount -= 1
        ackedCount &+= 1
    }

    /// A delivered message was rejected without requeue; it is dropped.
    public func rejected(_ entry: QueueEntry) {
        unackedCount -= 1
    }

    /// Drops every ready message; returns how many.
    @discardableResult
    public func purge() -> Int {
        let n = ready.count
        ready.removeAll()
        readyBytes = 0
        if !pausedPublishers.isEmpty { releasePublishers() }
        return n
    }

    // MARK: consumers

    func addConsumer(_ consumer: Consumer) {
        consumers.append(consumer)
        hadConsumer = true
        dispatch()
    }

    /// Removes a consumer. Returns true if this left an auto-delete queue without consumers, in
    /// which case the caller deletes the queue.
    func removeConsumer(_ consumer: Consumer) -> Bool {
        guard let i = consumers.firstIndex(where: { $0 === consumer }) else { return false }
        consumers.remove(at: i)
        if roundRobin > i { roundRobin -= 1 }
        if consumers.isEmpty && !pausedPublishers.isEmpty { releasePublishers() }
        return consumers.isEmpty && autoDelete && hadConsumer && !isDeleted
    }

    /// Marks the queue deleted, drops its messages and tells each consumer's channel. Called by
    /// the vhost, which also removes the bindings.
    func markDeleted() -> Int {
        let n = purge()
        isDeleted = true
        let cancelled = consumers
        consumers.removeAll()
        for c in cancelled { c.channel.consumerCancelledByBroker(c) }
        return n
    }
}
