public import NIOCore

/// Decodes AMQP frames from a byte stream, one per call.
///
/// The size of a frame is checked against `maxFrameSize` from its 7-byte header, before its
/// payload is buffered, so an oversized or hostile length never causes an allocation. Body
/// payloads are returned as slices of the input (no copy). Errors are `AMQPError`s carrying the
/// reply code the connection must close with (501 FRAME_ERROR for malformed framing).
public struct AMQPFrameDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = AMQPFrame

    /// The largest frame accepted, header and end octet included (AMQP's `frame_max`).
    public var maxFrameSize: UInt32
    /// True until the 8-byte protocol header has been read (servers start this way).
    public var expectsProtocolHeader: Bool

    public init(maxFrameSize: UInt32 = 131_072, expectsProtocolHeader: Bool = false) {
        self.maxFrameSize = maxFrameSize
        self.expectsProtocolHeader = expectsProtocolHeader
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> AMQPFrame? {
        try self.next(&buffer)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> AMQPFrame? {
        try self.next(&buffer)
    }

    /// Returns the next complete frame and consumes its bytes, or nil (consuming nothing) when
    /// more bytes are needed.
    @inlinable
    public mutating func next(_ buffer: inout ByteBuffer) throws(AMQPError) -> AMQPFrame? {
        if self.expectsProtocolHeader {
            guard buffer.readableBytes >= 8 else {
                // A peer that does not start with "AMQP" is answered as soon as we can tell.
                if let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), first != 0x41 {
                    self.expectsProtocolHeader = false
                    return .protocolHeader(AMQPProtocolHeader(bytes: (first, 0, 0, 0, 0, 0, 0, 0)))
                }
                return nil
            }
            let b = buffer.readBytes(length: 8)!
            self.expectsProtocolHeader = false
            return .protocolHeader(AMQPProtocolHeader(bytes: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7])))
        }
        guard let (type, channel, size) = buffer.getMultipleIntegers(at: buffer.readerIndex, as: (UInt8, UInt16, UInt32).self)
        else { return nil }
        // frame_max bounds the whole frame (payload + 8 bytes), but RabbitMQ accepts payloads up
        // to frame_max itself (its FRAME_SIZE_FUDGE), and clients (rabbitpy, amqpstorm) send body
        // frames of exactly frame_max bytes; so only a payload beyond frame_max is refused. The
        // text names frame_max - 8 as the maximum, as RabbitMQ's `{frame_too_large,S,M}` does.
        if self.maxFrameSize != 0 && size > self.maxFrameSize {
            let limit = self.maxFrameSize - min(self.maxFrameSize, UInt32(AMQPFrameType.overhead))
            throw .frameError("type \(type), frame size \(size) is larger than the negotiated maximum \(limit)")
        }
        let total = Int(size) + AMQPFrameType.overhead
        guard buffer.readableBytes >= total else { return nil }
        guard buffer.getInteger(at: buffer.readerIndex + total - 1, as: UInt8.self) == AMQPFrameType.end else {
            let found = buffer.getInteger(at: buffer.readerIndex + total - 1, as: UInt8.self) ?? 0
            throw .frameError("type \(type), invalid frame end marker \(found)")
        }
        buffer.moveReaderIndex(forwardBy: 7)
        var payload = buffer.readSlice(length: Int(size))!
        buffer.moveReaderIndex(forwardBy: 1)
        switch type {
        case AMQPFrameType.method:
            return .method(channel: channel, try AMQPMethod.decode(from: &payload))
        case AMQPFrameType.header:
            let classID = try payload.amqpReadUInt16()
            _ = try payload.amqpReadUInt16()  // weight, unused
            let bodySize = try payload.amqpReadUInt64()
            let encoded = payload
            let properties = try BasicProperties(decodingFrom: &payload)
            let raw = encoded.getSlice(at: encoded.readerIndex, length: payload.readerIndex - encoded.readerIndex)
            return .header(
                channel: channel,
                ContentHeader(classID: classID, bodySize: bodySize, properties: properties, encodedProperties: raw))
        case AMQPFrameType.body:
            return .body(channel: channel, payload)
        case AMQPFrameType.heartbeat:
            guard channel == 0 else {
                throw .unexpectedFrame("heartbeat frame on channel \(channel)")
            }
            return .heartbeat
        default:
            throw .frameError("unknown frame type \(type)")
        }
    }
}
