public import NIOCore

/// A complete AMQP command: a method and, for content-bearing methods, its header and body.
public struct AMQPCommand: Sendable {
    public var method: AMQPMethod
    public var header: ContentHeader?
    /// The assembled body; a slice of the received bytes when it arrived in one frame.
    public var body: ByteBuffer

    @inlinable
    public init(method: AMQPMethod, header: ContentHeader? = nil, body: ByteBuffer = ByteBuffer()) {
        self.method = method
        self.header = header
        self.body = body
    }
}

/// Assembles one channel's frames into commands: method, then header, then body frames.
///
/// Pure: it sees frames only. Violations of the frame order are 505 UNEXPECTED_FRAME (hard), with
/// RabbitMQ's texts. A body larger than `maxBodySize` is refused at its header, before any body
/// byte is buffered, with 406 PRECONDITION_FAILED (soft), as RabbitMQ words it.
public struct CommandAssembler: Sendable {
    // The command being assembled. Kept in optionals rather than an enum with payloads so each
    // piece is moved in and taken out once (`Optional.take()`), not copied at every step.
    @usableFromInline var method: AMQPMethod?
    @usableFromInline var header: ContentHeader?
    @usableFromInline var collected: ByteBuffer?
    @usableFromInline var remaining: UInt64 = 0

    /// The largest message body accepted.
    public var maxBodySize: UInt64

    public init(maxBodySize: UInt64 = 16 * 1024 * 1024) {
        self.maxBodySize = maxBodySize
    }

    /// True while a content-bearing command is waiting for its header or body.
    public var isAssembling: Bool { method != nil }

    /// Forgets a half-received command (used when the channel closes).
    public mutating func reset() {
        method = nil
        header = nil
        collected = nil
    }

    /// Feeds a method frame; returns the command when it is complete (it is, unless it carries content).
    @inlinable
    public mutating func method(_ method: consuming AMQPMethod) throws(AMQPError) -> AMQPCommand? {
        if let pending = self.method {
            if header == nil {
                throw AMQPError(
                    .unexpectedFrame,
                    "expected content header for class \(pending.classID), got non content header frame instead",
                    classID: pending.classID, methodID: pending.methodID)
            }
            throw AMQPError(
                .unexpectedFrame, "expected content body, got non content body frame instead",
                classID: pending.classID, methodID: pending.methodID)
        }
        if method.hasContent {
            self.method = method
            return nil
        }
        return AMQPCommand(method: method)
    }

    @inlinable
    public mutating func header(_ header: consuming ContentHeader) throws(AMQPError) -> AMQPCommand? {
        guard let method = self.method, self.header == nil else { throw self.unexpectedNonMethod() }
        guard header.classID == method.classID else {
            throw AMQPError(
                .unexpectedFrame,
                "expected content header for class \(method.classID), got one for class \(header.classID) instead",
                classID: method.classID, methodID: method.methodID)
        }
        guard header.bodySize <= self.maxBodySize else {
            self.method = nil
            throw AMQPError(
                .preconditionFailed,
                "message size \(header.bodySize) is larger than configured max size \(self.maxBodySize)",
                classID: method.classID, methodID: method.methodID)
        }
        if header.bodySize == 0 {
            return AMQPCommand(method: self.method.take()!, header: header)
        }
        self.remaining = header.bodySize
        self.header = header
        return nil
    }

    @inlinable
    public mutating func body(_ fragment: consuming ByteBuffer) throws(AMQPError) -> AMQPCommand? {
        guard header != nil else { throw self.unexpectedNonMethod() }
        let size = UInt64(fragment.readableBytes)
        guard size <= remaining else {
            let m = method!
            throw AMQPError(
                .unexpectedFrame,
                "content body frame of \(size) bytes exceeds the \(remaining) bytes left of the declared body size",
                classID: m.classID, methodID: m.methodID)
        }
        remaining -= size
        if remaining == 0 && collected == nil {
            // The common case: the whole body in one frame, kept as a slice.
            return AMQPCommand(method: method.take()!, header: header.take(), body: fragment)
        }
        if collected == nil {
            var b = ByteBufferAllocator().buffer(capacity: Int(header!.bodySize))
            b.writeImmutableBuffer(fragment)
            collected = b
        } else {
            collected!.writeImmutableBuffer(fragment)
        }
        if remaining == 0 {
            return AMQPCommand(method: method.take()!, header: header.take(), body: collected.take()!)
        }
        return nil
    }

    @usableFromInline
    func unexpectedNonMethod() -> AMQPError {
        guard let m = method else {
            return .unexpectedFrame("expected method frame, got non method frame instead")
        }
        if header == nil {
            return AMQPError(
                .unexpectedFrame, "expected content header for class \(m.classID), got non content header frame instead",
                classID: m.classID, methodID: m.methodID)
        }
        return AMQPError(
            .unexpectedFrame, "expected content body, got non content body frame instead",
            classID: m.classID, methodID: m.methodID)
    }
}
