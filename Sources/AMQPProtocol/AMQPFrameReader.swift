public import NIOCore

/// Accumulates received bytes and yields whole frames, for handlers that decode inline instead
/// of through a `ByteToMessageHandler` (no per-frame pipeline hop).
///
/// When a read ends inside a frame, only the leftover bytes are copied forward: bodies already
/// handed out as slices keep the old storage, and appending to it would copy all of it.
public struct AMQPFrameReader: Sendable {
    public var decoder: AMQPFrameDecoder
    private var pending = ByteBuffer()

    public init(decoder: AMQPFrameDecoder) {
        self.decoder = decoder
    }

    /// Bytes received but not yet part of a whole frame.
    public var bufferedBytes: Int { pending.readableBytes }

    public mutating func append(_ bytes: ByteBuffer) {
        if pending.readableBytes == 0 {
            pending = bytes
        } else {
            var merged = ByteBufferAllocator().buffer(capacity: pending.readableBytes + bytes.readableBytes)
            merged.writeImmutableBuffer(pending)
            merged.writeImmutableBuffer(bytes)
            pending = merged
        }
    }

    /// The next whole frame, or nil when more bytes are needed.
    public mutating func next() throws(AMQPError) -> AMQPFrame? {
        guard pending.readableBytes > 0 else { return nil }
        let frame = try decoder.next(&pending)
        if pending.readableBytes == 0 { pending = ByteBuffer() }  // let go of the read buffer
        return frame
    }

    /// Drops whatever is buffered (the connection is closing).
    public mutating func discard() {
        pending = ByteBuffer()
    }
}
