public import NIOCore
public import Raft

/// What the cluster layer says between nodes, besides Raft's own messages (inside `app`
/// frames).
public enum ClusterMessage: Sendable {
    /// A node without a cluster asks to join: its name and the address it is reached at.
    case joinRequest(id: UInt64, name: String, address: String)
    case joinReply(id: UInt64, JoinAnswer)
    /// Proposals for the metadata group, for the leader of `term`.
    case forward(term: Term, [MetadataEnvelope])
    /// A node's status for the others' `/api/nodes` (JSON text), every few seconds.
    case status(String)
    /// An operator's request to be carried out by the leader (JSON), and its answer.
    case adminRequest(id: UInt64, String)
    case adminReply(id: UInt64, ok: Bool, String)

    public enum JoinAnswer: Sendable, Equatable {
        /// A learner now: the leader sends the log.
        case accepted(leaderName: String, leaderAddress: String)
        /// Ask the leader instead.
        case redirect(leaderName: String, leaderAddress: String)
        /// Not now (no leader yet, a membership change under way): ask again.
        case retry(String)
        case refused(String)
        /// The asked node is in no cluster either (it is looking for one): discovery counts it.
        case notMember
    }

    public func encode() -> ByteBuffer {
        var b = ByteBuffer()
        func str(_ s: String) {
            b.writeInteger(UInt32(s.utf8.count))
            b.writeString(s)
        }
        switch self {
        case .joinRequest(let id, let name, let address):
            b.writeInteger(UInt8(1))
            b.writeInteger(id)
            str(name)
            str(address)
        case .joinReply(let id, let answer):
            b.writeInteger(UInt8(2))
            b.writeInteger(id)
            switch answer {
            case .accepted(let n, let a):
                b.writeInteger(UInt8(1))
                str(n)
                str(a)
            case .redirect(let n, let a):
                b.writeInteger(UInt8(2))
                str(n)
                str(a)
            case .retry(let why):
                b.writeInteger(UInt8(3))
                str(why)
            case .refused(let why):
                b.writeInteger(UInt8(4))
                str(why)
            case .notMember:
                b.writeInteger(UInt8(5))
            }
        case .forward(let term, let envelopes):
            b.writeInteger(UInt8(3))
            b.writeInteger(term)
            MetadataEntry.write(envelopes[...], into: &b)
        case .status(let json):
            b.writeInteger(UInt8(4))
            str(json)
        case .adminRequest(let id, let json):
            b.writeInteger(UInt8(5))
            b.writeInteger(id)
            str(json)
        case .adminReply(let id, let ok, let json):
            b.writeInteger(UInt8(6))
            b.writeInteger(id)
            b.writeInteger(UInt8(ok ? 1 : 0))
            str(json)
        }
        return b
    }

    public static func decode(_ buffer: ByteBuffer) -> ClusterMessage? {
        var b = buffer
        func str() -> String? {
            guard let n = b.readInteger(as: UInt32.self), n < 1 << 28 else { return nil }
            return b.readString(length: Int(n))
        }
        guard let tag = b.readInteger(as: UInt8.self) else { return nil }
        switch tag {
        case 1:
            guard let id = b.readInteger(as: UInt64.self), let name = str(), let address = str() else { return nil }
            return .joinRequest(id: id, name: name, address: address)
        case 2:
            guard let id = b.readInteger(as: UInt64.self), let kind = b.readInteger(as: UInt8.self) else { return nil }
            switch kind {
            case 1:
                guard let n = str(), let a = str() else { return nil }
                return .joinReply(id: id, .accepted(leaderName: n, leaderAddress: a))
            case 2:
                guard let n = str(), let a = str() else { return nil }
                return .joinReply(id: id, .redirect(leaderName: n, leaderAddress: a))
            case 3: return str().map { .joinReply(id: id, .retry($0)) }
            case 4: return str().map { .joinReply(id: id, .refused($0)) }
            case 5: return .joinReply(id: id, .notMember)
            default: return nil
            }
        case 3:
            guard let term = b.readInteger(as: UInt64.self), let envelopes = MetadataEntry.read(&b) else { return nil }
            return .forward(term: term, envelopes)
        case 4: return str().map { .status($0) }
        case 5:
            guard let id = b.readInteger(as: UInt64.self), let json = str() else { return nil }
            return .adminRequest(id: id, json)
        case 6:
            guard let id = b.readInteger(as: UInt64.self), let ok = b.readInteger(as: UInt8.self), let json = str() else { return nil }
            return .adminReply(id: id, ok: ok != 0, json)
        default: return nil
        }
    }
}
