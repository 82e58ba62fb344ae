/// Node-wide message counters since start, for the management API and Prometheus (RabbitMQ's
/// `rabbitmq_global_messages_*`). Plain integers bumped on the broker loop: the hot path pays an
/// increment, nothing more.
public struct BrokerStats: Sendable, Equatable {
    /// Messages received from publishers (basic.publish; tx publishes at commit).
    public var received: UInt64 = 0
    /// ...of which on channels in confirm mode.
    public var receivedConfirm: UInt64 = 0
    /// Routed to at least one queue.
    public var routed: UInt64 = 0
    /// Unroutable: returned to a mandatory publisher, or dropped.
    public var unroutableReturned: UInt64 = 0
    public var unroutableDropped: UInt64 = 0
    /// Publisher confirms (basic.ack) settled.
    public var confirmed: UInt64 = 0
    /// Deliveries to consumers, with and without acknowledgement, and basic.get answers.
    public var deliveredManualAck: UInt64 = 0
    public var deliveredAutoAck: UInt64 = 0
    public var getManualAck: UInt64 = 0
    public var getAutoAck: UInt64 = 0
    /// basic.get on an empty queue.
    public var getEmpty: UInt64 = 0
    /// Messages put back in their queue (nack/reject with requeue, channel or connection closed).
    public var redelivered: UInt64 = 0
    /// Deliveries acknowledged by consumers.
    public var acknowledged: UInt64 = 0
    /// Dead-lettered (expired, rejected, over a length limit).
    public var deadLettered: UInt64 = 0

    public init() {}

    /// Every delivery and get, as RabbitMQ's `deliver_get`.
    public var deliverGet: UInt64 { deliveredManualAck &+ deliveredAutoAck &+ getManualAck &+ getAutoAck }
}
