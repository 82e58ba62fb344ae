public import AMQPProtocol
import NIOCore

/// A subscription of a channel to a queue (`basic.consume`).
public final class Consumer {
    public let tag: String
    public unowned(unsafe) let channel: ChannelSession
    public unowned(unsafe) let queue: MessageQueue
    public let noAck: Bool
    public let exclusive: Bool
    /// Per-consumer prefetch (`basic.qos` with global=false, fixed at consume time); 0 = unlimited.
    public let prefetchCount: Int
    public let arguments: FieldTable
    /// Messages delivered to this consumer and not yet settled.
    @exclusivity(unchecked) public internal(set) var unacked = 0
    /// The head of this consumer's basic.deliver frames (ids and tag), encoded once.
    let deliverPrefix: ByteBuffer
    /// `x-priority`: consumers of higher priority get messages first.
    public let priority: Int

    init(
        tag: String, channel: ChannelSession, queue: MessageQueue, noAck: Bool, exclusive: Bool,
        prefetchCount: Int, arguments: FieldTable
    ) {
        self.tag = tag
        self.channel = channel
        self.queue = queue
        self.noAck = noAck
        self.exclusive = exclusive
        self.prefetchCount = prefetchCount
        self.arguments = arguments
        self.deliverPrefix = ByteBuffer.amqpDeliverPrefix(consumerTag: tag)
        self.priority = Int(arguments["x-priority"]?.integerValue ?? 0)
    }

    /// The queue went away: its channel forgets this consumer and tells a client that
    /// understands `consumer_cancel_notify`.
    public func cancelledByBroker() {
        channel.consumerCancelledByBroker(self)
    }

    /// True when a message may be delivered to this consumer now. Auto-ack consumers ignore
    /// prefetch, as in RabbitMQ.
    var hasRoom: Bool {
        guard channel.acceptsDeliveries else { return false }
        if noAck { return true }
        if prefetchCount > 0 && unacked >= prefetchCount { return false }
        return channel.globalPrefetchHasRoom
    }
}
