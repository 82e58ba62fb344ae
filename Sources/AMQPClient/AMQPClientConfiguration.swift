public import AMQPProtocol
public import NIOSSL

/// Where and how to connect.
public struct AMQPClientConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String
    public var virtualHost: String
    /// Seconds; nil accepts the server's proposal, 0 turns heartbeats off.
    public var heartbeat: UInt16?
    /// Largest frame we accept; the smaller of this and the server's limit is used.
    public var frameMax: UInt32
    /// "PLAIN" or "AMQPLAIN".
    public var mechanism: String
    /// Shown by the broker as the connection's name.
    public var connectionName: String?
    /// Set for AMQPS: the TLS client context (trust roots, client certificate).
    public var tls: NIOSSLContext?
    /// The name the server's certificate must carry (default: `host` when it is a name).
    public var tlsServerName: String?
    /// Sent as the SASL response as is, with `mechanism`, even when the server does not offer
    /// that mechanism (a node's own clients use one it never offers).
    public var saslResponse: [UInt8]?
    /// Seconds the server has to complete the handshake (connection.open-ok) once the socket is
    /// up; nil waits as long as it takes.
    public var handshakeTimeoutSeconds: Double?

    public init(
        host: String = "127.0.0.1", port: Int = 5672, username: String = "guest", password: String = "guest",
        virtualHost: String = "/", heartbeat: UInt16? = 0, frameMax: UInt32 = 131_072, mechanism: String = "PLAIN",
        connectionName: String? = nil
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.virtualHost = virtualHost
        self.heartbeat = heartbeat
        self.frameMax = frameMax
        self.mechanism = mechanism
        self.connectionName = connectionName
    }

    /// Parses `amqp://user:pass@host:port/vhost` (the vhost percent-decoded; `/` when absent).
    public init(url: String) throws(AMQPClientError) {
        self.init()
        let secure = url.hasPrefix("amqps://")
        guard secure || url.hasPrefix("amqp://") else { throw .invalidURL(url) }
        if secure {
            port = 5671
            do {
                tls = try NIOSSLContext(configuration: .makeClientConfiguration())
            } catch {
                throw .invalidURL("\(url) (TLS: \(error))")
            }
        }
        var rest = Substring(url.dropFirst(secure ? "amqps://".count : "amqp://".count))
        var vhostPart: Substring?
        if let slash = rest.firstIndex(of: "/") {
            vhostPart = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var hostPart = rest
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPart = rest[rest.index(after: at)...]
            let parts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            username = Self.percentDecode(parts[0])
            if parts.count > 1 { password = Self.percentDecode(parts[1]) }
        }
        if let colon = hostPart.lastIndex(of: ":") {
            guard let p = Int(hostPart[hostPart.index(after: colon)...]) else { throw .invalidURL(url) }
            port = p
            hostPart = hostPart[..<colon]
        }
        if !hostPart.isEmpty { host = String(hostPart) }
        if let vhostPart, !vhostPart.isEmpty { virtualHost = Self.percentDecode(vhostPart) }
    }

    static func percentDecode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var i = s.utf8.startIndex
        let u = s.utf8
        while i < u.endIndex {
            let c = u[i]
            if c == UInt8(ascii: "%"), let j = u.index(i, offsetBy: 2, limitedBy: u.endIndex), j < u.endIndex,
                let v = UInt8(String(decoding: u[u.index(after: i)...j], as: UTF8.self), radix: 16)
            {
                bytes.append(v)
                i = u.index(after: j)
            } else {
                bytes.append(c)
                i = u.index(after: i)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Why a client operation failed.
public enum AMQPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server closed the connection (with its reason, when it gave one).
    case connectionClosed(AMQPError?)
    /// The server closed the channel.
    case channelClosed(AMQPError)
    /// The server answered our protocol header with its own: it does not speak 0-9-1.
    case protocolVersionMismatch
    /// The server did something the protocol does not allow.
    case protocolViolation(String)
    /// Publishes the server refused under confirms.
    case nacked([UInt64])
    case invalidURL(String)
    /// No channel number is free.
    case tooManyChannels
    /// The socket failed (TLS handshake, reset), with the transport's error.
    case transportFailed(String)

    public var description: String {
        switch self {
        case .connectionClosed(let e): return "connection closed" + (e.map { ": \($0.code.rawValue) \($0.text)" } ?? "")
        case .channelClosed(let e): return "channel closed: \(e.code.rawValue) \(e.text)"
        case .protocolVersionMismatch: return "the server does not speak AMQP 0-9-1"
        case .protocolViolation(let s): return "protocol violation: \(s)"
        case .nacked(let tags): return "publishes nacked by the broker: \(tags)"
        case .invalidURL(let u): return "invalid AMQP URL '\(u)'"
        case .tooManyChannels: return "no free channel number"
        case .transportFailed(let why): return "connection failed: \(why)"
        }
    }

    /// The reply code, when the server gave one.
    public var replyCode: UInt16? {
        switch self {
        case .connectionClosed(let e): return e?.code.rawValue
        case .channelClosed(let e): return e.code.rawValue
        default: return nil
        }
    }
}
