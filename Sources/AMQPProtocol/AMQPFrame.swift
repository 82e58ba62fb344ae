public import NIOCore

/// The 8 bytes a client sends first: `AMQP` followed by protocol id and version.
public struct AMQPProtocolHeader: Sendable, Hashable {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    /// `AMQP 0 0 9 1`, the only header Warren speaks.
    public static let amqp091 = AMQPProtocolHeader(bytes: (0x41, 0x4D, 0x51, 0x50, 0, 0, 9, 1))

    public init(bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) {
        self.bytes = bytes
    }

    public var isAMQP091: Bool { self == .amqp091 }

    public static func == (a: Self, b: Self) -> Bool {
        a.bytes.0 == b.bytes.0 && a.bytes.1 == b.bytes.1 && a.bytes.2 == b.bytes.2 && a.bytes.3 == b.bytes.3
            && a.bytes.4 == b.bytes.4 && a.bytes.5 == b.bytes.5 && a.bytes.6 == b.bytes.6 && a.bytes.7 == b.bytes.7
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.0)
        hasher.combine(bytes.4)
        hasher.combine(bytes.5)
        hasher.combine(bytes.6)
        hasher.combine(bytes.7)
    }
}

/// A content header frame's payload: the class, the body size that follows, and properties.
public struct ContentHeader: Sendable, Hashable {
    public var classID: UInt16
    public var bodySize: UInt64
    public var properties: BasicProperties
    /// The property section exactly as received (flags included), when this header came off the
    /// wire. A broker that forwards a message unchanged writes these bytes back instead of
    /// encoding the properties again. Not part of equality.
    public var encodedProperties: ByteBuffer?

    @inlinable
    public init(classID: UInt16 = 60, bodySize: UInt64, properties: BasicProperties = .empty, encodedProperties: ByteBuffer? = nil) {
        self.classID = classID
        self.bodySize = bodySize
        self.properties = properties
        self.encodedProperties = encodedProperties
    }

    public static func == (a: ContentHeader, b: ContentHeader) -> Bool {
        a.classID == b.classID && a.bodySize == b.bodySize && a.properties == b.properties
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(classID)
        hasher.combine(bodySize)
        hasher.combine(properties)
    }
}

/// One AMQP frame, or the protocol header that opens a connection.
public enum AMQPFrame: Sendable, Hashable {
    case protocolHeader(AMQPProtocolHeader)
    case method(channel: UInt16, AMQPMethod)
    case header(channel: UInt16, ContentHeader)
    /// A body fragment: a slice of the received bytes, never copied by the decoder.
    case body(channel: UInt16, ByteBuffer)
    case heartbeat

    public var channel: UInt16 {
        switch self {
        case .protocolHeader, .heartbeat: return 0
        case .method(let c, _), .header(let c, _), .body(let c, _): return c
        }
    }
}

/// Frame type octets and overhead.
public enum AMQPFrameType {
    public static let method: UInt8 = 1
    public static let header: UInt8 = 2
    public static let body: UInt8 = 3
    public static let heartbeat: UInt8 = 8
    public static let end: UInt8 = 0xCE
    /// Bytes around a payload: type (1), channel (2), size (4), end (1).
    public static let overhead = 8
}
