public import WarrenCore

/// The numbers a Prometheus scrape reports, taken on the broker's loop in one go; the node's
/// exporter turns them into metrics off the loop.
public struct MetricsSnapshot: Sendable {
    public struct Queue: Sendable {
        public var vhost: String
        public var name: String
        public var ready: Int
        public var unacked: Int
        public var readyBytes: Int
        public var consumers: Int
        public var published: UInt64
        public var delivered: UInt64
        public var acknowledged: UInt64
        public var redelivered: UInt64
    }

    public var connections = 0
    public var channels = 0
    public var consumers = 0
    public var queues = 0
    public var ready = 0
    public var unacked = 0
    public var stats = BrokerStats()
    public var alarms: Set<String> = []
    /// This node's federation links by state ("starting", "running", "error").
    public var federationLinks: [String: Int] = [:]
    /// Filled only for `/metrics/per-object`.
    public var perQueue: [Queue] = []

    public init() {}

    public static func take(_ broker: Broker, perObject: Bool) -> MetricsSnapshot {
        let taker = MetricsSnapshotTaker(broker, perObject: perObject)
        while !taker.step(queues: .max) {}
        return taker.snapshot
    }
}

/// Takes a snapshot on the broker's loop a few thousand queues at a time (the node's
/// Prometheus shell calls `step` once per turn of the loop), so a scrape of 100,000 queues does
/// not hold AMQP traffic. Queues deleted between steps are left out.
public final class MetricsSnapshotTaker {
    public private(set) var snapshot = MetricsSnapshot()
    private let perObject: Bool
    private var pending: [MessageQueue]

    public init(_ broker: Broker, perObject: Bool) {
        self.perObject = perObject
        snapshot.connections = broker.connections.count
        snapshot.channels = broker.connections.values.reduce(0) { $0 + $1.channelCount }
        snapshot.stats = broker.stats
        snapshot.alarms = broker.localAlarms
        for l in broker.federationLinks.values { snapshot.federationLinks[l.state.rawValue, default: 0] += 1 }
        pending = broker.vhosts.values.flatMap { Array($0.queues.values) }
        if perObject { snapshot.perQueue.reserveCapacity(pending.count) }
    }

    /// Reads up to `queues` more queues; true when all are read.
    public func step(queues: Int) -> Bool {
        var n = queues
        while n > 0, let q = pending.popLast() {
            n -= 1
            guard !q.isDeleted else { continue }
            snapshot.queues += 1
            snapshot.consumers += q.consumerCount
            snapshot.ready += q.messageCount
            snapshot.unacked += q.unackedCount
            if perObject {
                snapshot.perQueue.append(
                    MetricsSnapshot.Queue(
                        vhost: q.vhost.name, name: q.name, ready: q.messageCount, unacked: q.unackedCount, readyBytes: q.messageBytes,
                        consumers: q.consumerCount, published: q.publishedCount, delivered: q.deliveredCount,
                        acknowledged: q.ackedCount, redelivered: q.redeliveredCount))
            }
        }
        return pending.isEmpty
    }
}
