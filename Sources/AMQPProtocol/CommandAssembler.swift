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
    @usableFromInline
    enum State: Sendable {
        case idle
        case awaitingHeader(AMQPMethod)
        case awaitingBody(AMQPMethod, ContentHeader, collected: ByteBuffer?, remaining: UInt64)
    }

    @usableFromInline
    var state: State = .idle

    /// The largest message body accepted.
    public var maxBodySize: UInt64

    public init(maxBodySize: UInt64 = 16 * 1024 * 1024) {
        self.maxBodySize = maxBodySize
    }

    /// True while a content-bearing command is waiting for its header or body.
    public var isAssembling: Bool {
        if case .idle = state { return false }
        return true
    }

    /// Forgets a half-received command (used when the channel closes).
    public mutating func reset() { self.state = .idle }

    /// Feeds a method frame; returns the command when it is complete (it is, unless it carries content).
    @inlinable
    public mutating func method(_ method: AMQPMethod) throws(AMQPError) -> AMQPCommand? {
        switch self.state {
        case .idle:
            if method.hasContent {
                self.state = .awaitingHeader(method)
                return nil
            }
            return AMQPCommand(method: method)
        case .awaitingHeader(let pending):
            throw AMQPError(
                .unexpectedFrame,
                "expected content header for class \(pending.classID), got non content header frame instead",
                classID: pending.classID, methodID: pending.methodID)
        case .awaitingBody(let pending, _, _, _):
            throw AMQPError(
                .unexpectedFrame, "expected content body, got non content body frame instead",
                classID: pending.classID, methodID: pending.methodID)
        }
    }

    @inlinable
    public mutating func header(_ header: ContentHeader) throws(AMQPError) -> AMQPCommand? {
        guard case .awaitingHeader(let method) = self.state else {
            throw self.unexpectedNonMethod()
        }
        guard header.classID == method.classID else {
            throw AMQPError(
                .unexpectedFrame,
                "expected content header for class \(method.classID), got one for class \(header.classID) instead",
                classID: method.classID, methodID: method.methodID)
        }
        guard header.bodySize <= self.maxBodySize else {
            self.state = .idle
            throw AMQPError(
                .preconditionFailed,
                "message size \(header.bodySize) is larger than configured max size \(self.maxBodySize)",
                classID: method.classID, methodID: method.methodID)
        }
        if header.bodySize == 0 {
            self.state = .idle
            return AMQPCommand(method: method, header: header)
        }
        self.state = .awaitingBody(method, header, collected: nil, remaining: header.bodySize)
        return nil
    }

    @inlinable
    public mutating func body(_ fragment: ByteBuffer) throws(AMQPError) -> AMQPCommand? {
        guard case .awaitingBody(let method, let header, var collected, let remaining) = self.state else {
            throw self.unexpectedNonMethod()
        }
        let size = UInt64(fragment.readableBytes)
        guard size <= remaining else {
            throw AMQPError(
                .unexpectedFrame,
                "content body frame of \(size) bytes exceeds the \(remaining) bytes left of the declared body size",
                classID: method.classID, methodID: method.methodID)
        }
        if size == remaining && collected == nil {
            // The common case: the whole body in one frame, kept as a slice.
            self.state = .idle
            return AMQPCommand(method: method, header: header, body: fragment)
        }
        // Avoid holding a CoW reference in `state` while appending.
        self.state = .idle
        if collected == nil {
            var b = ByteBufferAllocator().buffer(capacity: Int(header.bodySize))
            b.writeImmutableBuffer(fragment)
            collected = b
        } else {
            collected!.writeImmutableBuffer(fragment)
        }
        if size == remaining {
            return AMQPCommand(method: method, header: header, body: collected!)
        }
        self.state = .awaitingBody(method, header, collected: collected, remaining: remaining - size)
        return nil
    }

    @usableFromInline
    func unexpectedNonMethod() -> AMQPError {
        switch self.state {
        case .idle:
            return .unexpectedFrame("expected method frame, got non method frame instead")
        case .awaitingHeader(let m):
            return AMQPError(
                .unexpectedFrame, "expected content header for class \(m.classID), got non content header frame instead",
                classID: m.classID, methodID: m.methodID)
        case .awaitingBody(let m, _, _, _):
            return AMQPError(
                .unexpectedFrame, "expected content body, got non content body frame instead",
                classID: m.classID, methodID: m.methodID)
        }
    }
}
