public import AMQPProtocol
public import NIOCore

/// Publish frames encoded once: the method frame and the content header for a fixed body size.
/// A publisher that sends many messages of one shape writes these bytes and a body per message.
public struct PublishTemplate: Sendable {
    public let channel: UInt16
    public let bodySize: Int
    let frames: ByteBuffer

    public init(channel: UInt16, exchange: String, routingKey: String, properties: BasicProperties = .empty, bodySize: Int, mandatory: Bool = false) {
        var b = ByteBuffer()
        b.writeAMQPMethodFrame(channel: channel, .basicPublish(BasicPublish(exchange: exchange, routingKey: routingKey, mandatory: mandatory)))
        b.writeAMQPHeaderFrame(channel: channel, ContentHeader(bodySize: UInt64(bodySize), properties: properties))
        self.channel = channel
        self.bodySize = bodySize
        self.frames = b
    }
}

/// A channel as seen from its connection's event loop: calls run at once, with no task hop and
/// no promise. Obtained from `AMQPClientChannel.onEventLoop`; using it off the loop traps.
public struct AMQPLoopChannel {
    let channel: AMQPClientChannel

    var handler: ClientHandler { channel.connection.handler.value }

    /// Publishes a message whose body `writeBody` writes in place (exactly `template.bodySize`
    /// bytes). Returns the confirm sequence number, or 0 outside confirm mode.
    @discardableResult
    public func publish(_ template: PublishTemplate, writeBody: (inout ByteBuffer) -> Void) throws -> UInt64 {
        try handler.publish(channel: channel.number, template: template, writeBody: writeBody)
    }

    /// Publishes a message with any properties. Returns the confirm sequence number, or 0
    /// outside confirm mode.
    @discardableResult
    public func publish(exchange: String, routingKey: String, properties: BasicProperties, body: ByteBuffer, mandatory: Bool = false) throws -> UInt64 {
        try handler.publish(channel: channel.number, BasicPublish(exchange: exchange, routingKey: routingKey, mandatory: mandatory), properties: properties, body: body)
    }

    public func nack(_ deliveryTag: UInt64, multiple: Bool = false, requeue: Bool = true) {
        _ = handler.cast(channel: channel.number, .basicNack(BasicNack(deliveryTag: deliveryTag, multiple: multiple, requeue: requeue)))
    }

    /// True while the connection is open.
    public var isOpen: Bool { handler.phase == .open }

    public func ack(_ deliveryTag: UInt64, multiple: Bool = false) {
        _ = handler.cast(channel: channel.number, .basicAck(BasicAck(deliveryTag: deliveryTag, multiple: multiple)))
    }

    /// Publishes sent in confirm mode and not yet confirmed.
    public var unconfirmedCount: Int { handler.unconfirmedCount(channel: channel.number) }

    /// False while the socket's send buffer is over its high water mark.
    public var isWritable: Bool { handler.isWritable }

    /// Calls `listener` on the event loop whenever the socket's writability changes.
    public func onWritabilityChange(_ listener: @escaping @Sendable (Bool) -> Void) {
        handler.writabilityListeners.append(listener)
    }
}
