public import AMQPProtocol
public import NIOCore

/// A message delivered to a consumer or fetched with basic.get.
public struct AMQPDelivery: Sendable {
    public var consumerTag: String
    public var deliveryTag: UInt64
    public var redelivered: Bool
    public var exchange: String
    public var routingKey: String
    public var properties: BasicProperties
    public var body: ByteBuffer
    /// Messages left in the queue (basic.get only).
    public var messageCount: UInt32?

    public var bodyString: String { String(buffer: body) }
}

/// A mandatory message the broker could not route (basic.return).
public struct AMQPReturnedMessage: Sendable {
    public var replyCode: UInt16
    public var replyText: String
    public var exchange: String
    public var routingKey: String
    public var properties: BasicProperties
    public var body: ByteBuffer
}

/// A subscription made with `basicConsume`. The stream ends when the consumer is cancelled
/// (by us or the broker) or the channel closes.
public struct AMQPConsumer: Sendable {
    public let tag: String
    public let deliveries: AsyncStream<AMQPDelivery>
}
