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
    /// Filled only for `/metrics/per-object`.
    public var perQueue: [Queue] = []

    public init() {}

    public static func take(_ broker: Broker, perObject: Bool) -> MetricsSnapshot {
        var s = MetricsSnapshot()
        s.connections = broker.connections.count
        s.channels = broker.connections.values.reduce(0) { $0 + $1.channelCount }
        s.stats = broker.stats
        s.alarms = broker.activeAlarms
        for v in broker.vhosts.values {
            for q in v.queues.values {
                s.queues += 1
                s.consumers += q.consumerCount
                s.ready += q.messageCount
                s.unacked += q.unackedCount
                if perObject {
                    s.perQueue.append(
                        Queue(
                            vhost: v.name, name: q.name, ready: q.messageCount, unacked: q.unackedCount, readyBytes: q.messageBytes,
                            consumers: q.consumerCount, published: q.publishedCount, delivered: q.deliveredCount,
                            acknowledged: q.ackedCount, redelivered: q.redeliveredCount))
                }
            }
        }
        return s
    }
}
