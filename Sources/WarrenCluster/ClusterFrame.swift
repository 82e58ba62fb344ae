import Crypto
public import NIOCore

/// Frames between nodes on the cluster port: `u32 length, u8 type, payload`, big-endian. The
/// handshake comes first (hello, challenge, proof, welcome); after it, batches of Raft messages
/// and the cluster's own requests (joins, forwarded proposals, node status).
public enum ClusterFrame: Equatable, Sendable {
    /// Client to server: who I am, and a fresh nonce.
    case hello(version: UInt16, node: String, address: String, nonce: [UInt8])
    /// Server to client: who I am, my nonce, and proof that I know the secret.
    case challenge(node: String, nonce: [UInt8], mac: [UInt8])
    /// Client to server: proof that I know the secret.
    case proof(mac: [UInt8])
    case welcome
    /// Either side: no, and why (logged by both).
    case refused(String)
    /// Raft messages of any groups, encoded by `RaftCodec`.
    case raft([ByteBuffer])
    /// A request or answer of the cluster layer (`ClusterMessage`).
    case app(ByteBuffer)
    /// A batch of queue traffic (`ClusterQueues`), on a node pair's data link.
    case data(ByteBuffer)

    public static let protocolVersion: UInt16 = 1
    static let maxFrame = 512 * 1024 * 1024

    public func write(into b: inout ByteBuffer) {
        let start = b.writerIndex
        b.writeInteger(UInt32(0))
        switch self {
        case .hello(let version, let node, let address, let nonce):
            b.writeInteger(UInt8(1))
            b.writeInteger(version)
            Self.writeString(node, into: &b)
            Self.writeString(address, into: &b)
            Self.writeBytes(nonce, into: &b)
        case .challenge(let node, let nonce, let mac):
            b.writeInteger(UInt8(2))
            Self.writeString(node, into: &b)
            Self.writeBytes(nonce, into: &b)
            Self.writeBytes(mac, into: &b)
        case .proof(let mac):
            b.writeInteger(UInt8(3))
            Self.writeBytes(mac, into: &b)
        case .welcome:
            b.writeInteger(UInt8(4))
        case .refused(let why):
            b.writeInteger(UInt8(5))
            Self.writeString(why, into: &b)
        case .raft(let messages):
            b.writeInteger(UInt8(6))
            b.writeInteger(UInt32(messages.count))
            for var m in messages {
                b.writeInteger(UInt32(m.readableBytes))
                b.writeBuffer(&m)
            }
        case .app(var payload):
            b.writeInteger(UInt8(7))
            b.writeBuffer(&payload)
        case .data(var payload):
            b.writeInteger(UInt8(8))
            b.writeBuffer(&payload)
        }
        b.setInteger(UInt32(b.writerIndex - start - 4), at: start)
    }

    public enum Parse {
        case frame(ClusterFrame)
        case incomplete
        case invalid(String)
    }

    /// Takes one frame off the front of `b` when it is all there.
    public static func read(_ b: inout ByteBuffer) -> Parse {
        guard let length = b.getInteger(at: b.readerIndex, as: UInt32.self) else { return .incomplete }
        guard length >= 1, Int(length) <= maxFrame else { return .invalid("frame length \(length)") }
        guard b.readableBytes >= 4 + Int(length) else { return .incomplete }
        b.moveReaderIndex(forwardBy: 4)
        var p = b.readSlice(length: Int(length))!
        let type = p.readInteger(as: UInt8.self)!
        switch type {
        case 1:
            guard let v = p.readInteger(as: UInt16.self), let node = readString(&p), let address = readString(&p), let nonce = readBytes(&p)
            else { return .invalid("malformed hello") }
            return .frame(.hello(version: v, node: node, address: address, nonce: nonce))
        case 2:
            guard let node = readString(&p), let nonce = readBytes(&p), let mac = readBytes(&p) else { return .invalid("malformed challenge") }
            return .frame(.challenge(node: node, nonce: nonce, mac: mac))
        case 3:
            guard let mac = readBytes(&p) else { return .invalid("malformed proof") }
            return .frame(.proof(mac: mac))
        case 4: return .frame(.welcome)
        case 5: return .frame(.refused(readString(&p) ?? "?"))
        case 6:
            guard let n = p.readInteger(as: UInt32.self) else { return .invalid("malformed raft batch") }
            var out: [ByteBuffer] = []
            for _ in 0..<n {
                guard let len = p.readInteger(as: UInt32.self), let m = p.readSlice(length: Int(len)) else { return .invalid("malformed raft batch") }
                out.append(m)
            }
            return .frame(.raft(out))
        case 7: return .frame(.app(p))
        case 8: return .frame(.data(p))
        default: return .invalid("unknown frame type \(type)")
        }
    }

    static func writeString(_ s: String, into b: inout ByteBuffer) {
        b.writeInteger(UInt32(s.utf8.count))
        b.writeString(s)
    }

    static func readString(_ b: inout ByteBuffer) -> String? {
        guard let n = b.readInteger(as: UInt32.self), n < 1 << 24 else { return nil }
        return b.readString(length: Int(n))
    }

    static func writeBytes(_ v: [UInt8], into b: inout ByteBuffer) {
        b.writeInteger(UInt32(v.count))
        b.writeBytes(v)
    }

    static func readBytes(_ b: inout ByteBuffer) -> [UInt8]? {
        guard let n = b.readInteger(as: UInt32.self), n < 1 << 24 else { return nil }
        return b.readBytes(length: Int(n))
    }
}

/// The shared-secret handshake (as RabbitMQ's Erlang cookie, but the secret never crosses the
/// wire): each side proves it knows the secret with an HMAC over both nonces and both names, so
/// a node with the wrong secret learns nothing and is refused, and a recorded handshake cannot
/// be replayed.
public struct ClusterSecret: Sendable {
    let secret: [UInt8]

    public init(_ secret: String) {
        self.secret = Array(secret.utf8)
    }

    static func nonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    func mac(_ role: String, _ a: [UInt8], _ b: [UInt8], client: String, server: String) -> [UInt8] {
        var h = HMAC<SHA256>(key: SymmetricKey(data: secret))
        h.update(data: Array(role.utf8))
        h.update(data: a)
        h.update(data: b)
        h.update(data: Array(client.utf8))
        h.update(data: [0])
        h.update(data: Array(server.utf8))
        return Array(h.finalize())
    }

    /// What the server sends to prove it knows the secret.
    func serverMAC(clientNonce: [UInt8], serverNonce: [UInt8], client: String, server: String) -> [UInt8] {
        mac("server", clientNonce, serverNonce, client: client, server: server)
    }

    /// What the client sends to prove it knows the secret.
    func clientMAC(clientNonce: [UInt8], serverNonce: [UInt8], client: String, server: String) -> [UInt8] {
        mac("client", serverNonce, clientNonce, client: client, server: server)
    }

    /// Constant-time comparison of two MACs.
    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
