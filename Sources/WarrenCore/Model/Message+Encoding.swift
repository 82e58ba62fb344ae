public import AMQPProtocol
public import NIOCore

/// A message as bytes: exchange and routing key (short strings), the property section and the
/// body (each with a 32-bit length). The one layout of a message outside AMQP frames: the
/// store's message records and the queue links between nodes both use it.
extension Message {
    public func write(into b: inout ByteBuffer) {
        b.amqpWriteShortString(exchange)
        b.amqpWriteShortString(routingKey)
        let lengthAt = b.writerIndex
        b.writeInteger(UInt32(0))
        if var raw = encodedProperties {
            b.writeBuffer(&raw)
        } else {
            properties.encode(into: &b)
        }
        b.setInteger(UInt32(b.writerIndex - lengthAt - 4), at: lengthAt)
        var body = self.body
        b.writeInteger(UInt32(body.readableBytes))
        b.writeBuffer(&body)
    }

    /// Reads one message; its body and property bytes are slices of `b` (no copy).
    public static func read(from b: inout ByteBuffer) throws(AMQPError) -> Message {
        let exchange = try b.amqpReadShortString()
        let routingKey = try b.amqpReadShortString()
        let n = try b.amqpReadUInt32()
        guard var props = b.readSlice(length: Int(n)) else { throw .malformed("truncated properties") }
        let raw = props
        let properties = try BasicProperties(decodingFrom: &props)
        let bodyLength = try b.amqpReadUInt32()
        guard let body = b.readSlice(length: Int(bodyLength)) else { throw .malformed("truncated body") }
        return Message(
            exchange: exchange, routingKey: routingKey, properties: properties, encodedProperties: raw.readableBytes == 0 ? nil : raw, body: body)
    }
}
