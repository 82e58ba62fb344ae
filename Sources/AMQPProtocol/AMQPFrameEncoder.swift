public import NIOCore

extension ByteBuffer {
    /// Writes a method frame. The size field is patched after the arguments are encoded, so the
    /// method is encoded exactly once, straight into this buffer.
    @inlinable
    public mutating func writeAMQPMethodFrame(channel: UInt16, _ method: AMQPMethod) {
        self.writeMultipleIntegers(AMQPFrameType.method, channel, UInt32(0))
        let start = self.writerIndex
        method.encode(into: &self)
        self.setInteger(UInt32(self.writerIndex - start), at: start - 4)
        self.writeInteger(AMQPFrameType.end)
    }

    @inlinable
    public mutating func writeAMQPHeaderFrame(channel: UInt16, _ header: ContentHeader) {
        self.writeMultipleIntegers(AMQPFrameType.header, channel, UInt32(0))
        let start = self.writerIndex
        self.writeMultipleIntegers(header.classID, UInt16(0), header.bodySize)
        header.properties.encode(into: &self)
        self.setInteger(UInt32(self.writerIndex - start), at: start - 4)
        self.writeInteger(AMQPFrameType.end)
    }

    /// Writes a content header frame whose property section is already encoded (flags included),
    /// as kept by a broker that forwards properties untouched.
    @inlinable
    public mutating func writeAMQPHeaderFrame(channel: UInt16, classID: UInt16 = 60, bodySize: UInt64, encodedProperties: ByteBuffer) {
        let size = UInt32(12 + encodedProperties.readableBytes)
        self.writeMultipleIntegers(AMQPFrameType.header, channel, size, classID, UInt16(0), bodySize)
        self.writeImmutableBuffer(encodedProperties)
        self.writeInteger(AMQPFrameType.end)
    }

    /// Writes one body frame holding `payload`; the caller keeps it within frame_max.
    @inlinable
    public mutating func writeAMQPBodyFrame(channel: UInt16, _ payload: ByteBuffer) {
        self.writeMultipleIntegers(AMQPFrameType.body, channel, UInt32(payload.readableBytes))
        self.writeImmutableBuffer(payload)
        self.writeInteger(AMQPFrameType.end)
    }

    /// Writes a body as as many body frames as `maxFrameSize` requires (none for an empty body).
    @inlinable
    public mutating func writeAMQPBodyFrames(channel: UInt16, _ body: ByteBuffer, maxFrameSize: UInt32) {
        let maxPayload = maxFrameSize == 0 ? Int(UInt32.max) : Int(maxFrameSize) - AMQPFrameType.overhead
        if body.readableBytes <= maxPayload {
            if body.readableBytes > 0 { self.writeAMQPBodyFrame(channel: channel, body) }
            return
        }
        var rest = body
        while rest.readableBytes > 0 {
            let chunk = rest.readSlice(length: min(maxPayload, rest.readableBytes))!
            self.writeAMQPBodyFrame(channel: channel, chunk)
        }
    }

    @inlinable
    public mutating func writeAMQPHeartbeatFrame() {
        self.writeMultipleIntegers(AMQPFrameType.heartbeat, UInt16(0), UInt32(0), AMQPFrameType.end)
    }

    @inlinable
    public mutating func writeAMQPProtocolHeader(_ header: AMQPProtocolHeader = .amqp091) {
        let b = header.bytes
        self.writeMultipleIntegers(b.0, b.1, b.2, b.3, b.4, b.5, b.6, b.7)
    }

    /// Writes a whole command: the method frame, then for content-bearing methods the header
    /// frame and the body split to fit `maxFrameSize`.
    @inlinable
    public mutating func writeAMQPCommand(
        channel: UInt16,
        _ method: AMQPMethod,
        properties: BasicProperties = .empty,
        body: ByteBuffer? = nil,
        maxFrameSize: UInt32
    ) {
        self.writeAMQPMethodFrame(channel: channel, method)
        guard let body else { return }
        self.writeAMQPHeaderFrame(
            channel: channel,
            ContentHeader(classID: method.classID, bodySize: UInt64(body.readableBytes), properties: properties)
        )
        self.writeAMQPBodyFrames(channel: channel, body, maxFrameSize: maxFrameSize)
    }

    /// Writes any frame value.
    @inlinable
    public mutating func writeAMQPFrame(_ frame: AMQPFrame) {
        switch frame {
        case .protocolHeader(let h): self.writeAMQPProtocolHeader(h)
        case .method(let channel, let m): self.writeAMQPMethodFrame(channel: channel, m)
        case .header(let channel, let h): self.writeAMQPHeaderFrame(channel: channel, h)
        case .body(let channel, let b): self.writeAMQPBodyFrame(channel: channel, b)
        case .heartbeat: self.writeAMQPHeartbeatFrame()
        }
    }
}

/// A `MessageToByteEncoder` for pipelines that pass `AMQPFrame` values.
public struct AMQPFrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = AMQPFrame
    public init() {}
    public func encode(data: AMQPFrame, out: inout ByteBuffer) throws {
        out.writeAMQPFrame(data)
    }
}
