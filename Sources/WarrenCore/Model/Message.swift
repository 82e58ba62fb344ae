public import AMQPProtocol
public import NIOCore

/// A published message, shared by every queue it is routed to (fanout never copies it).
///
/// Immutable once built. The body is the slice the frame decoder produced; the encoded property
/// bytes are kept so a delivery writes them back without encoding the properties again.
public final class Message {
    public let exchange: String
    public let routingKey: String
    public let properties: BasicProperties
    /// The property section as received, when unchanged since; nil forces a re-encode.
    public let encodedProperties: ByteBuffer?
    public let body: ByteBuffer

    public init(
        exchange: String,
        routingKey: String,
        properties: BasicProperties,
        encodedProperties: ByteBuffer? = nil,
        body: ByteBuffer
    ) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.properties = properties
        self.encodedProperties = encodedProperties
        self.body = body
    }

    public var bodySize: Int { body.readableBytes }

    /// A copy with one header set (the body is shared, the properties re-encoded on delivery).
    func withHeader(_ key: String, _ value: FieldValue) -> Message {
        var p = properties
        var headers = p.headers ?? [:]
        headers[key] = value
        p.headers = headers
        return Message(exchange: exchange, routingKey: routingKey, properties: p, encodedProperties: nil, body: body)
    }

    /// The property bytes a delivery carries: as received, or encoded now when there are none
    /// kept (a message the broker built or changed).
    var encodedPropertiesForDelivery: ByteBuffer {
        if let e = encodedProperties { return e }
        var b = ByteBuffer()
        properties.encode(into: &b)
        return b
    }

    /// delivery_mode 2 marks a message persistent.
    public var isPersistent: Bool { properties.deliveryMode == 2 }
}
