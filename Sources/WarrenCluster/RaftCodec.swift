public import NIOCore
public import Raft

/// Raft messages on the wire between nodes: big-endian, one tag per kind. Entries and
/// configuration changes are written as in the WAL.
public enum RaftCodec {
    public static func write(_ m: Message, group: GroupID, into b: inout ByteBuffer) {
        b.writeInteger(group)
        b.writeInteger(m.from)
        b.writeInteger(m.to)
        b.writeInteger(m.term)
        switch m.kind {
        case .preVote(let lastIndex, let lastTerm):
            b.writeInteger(UInt8(1))
            b.writeInteger(lastIndex)
            b.writeInteger(lastTerm)
        case .preVoteResponse(let granted):
            b.writeInteger(UInt8(2))
            b.writeInteger(UInt8(granted ? 1 : 0))
        case .vote(let lastIndex, let lastTerm, let transfer):
            b.writeInteger(UInt8(3))
            b.writeInteger(lastIndex)
            b.writeInteger(lastTerm)
            b.writeInteger(UInt8(transfer ? 1 : 0))
        case .voteResponse(let granted):
            b.writeInteger(UInt8(4))
            b.writeInteger(UInt8(granted ? 1 : 0))
        case .append(let prevIndex, let prevTerm, let entries, let commit):
            b.writeInteger(UInt8(5))
            b.writeInteger(prevIndex)
            b.writeInteger(prevTerm)
            b.writeInteger(commit)
            b.writeInteger(UInt32(entries.count))
            for e in entries { RaftWAL.write(e, into: &b) }
        case .appendResponse(let reject, let index, let hintIndex, let hintTerm):
            b.writeInteger(UInt8(6))
            b.writeInteger(UInt8(reject ? 1 : 0))
            b.writeInteger(index)
            b.writeInteger(hintIndex)
            b.writeInteger(hintTerm)
        case .heartbeat(let commit, let context):
            b.writeInteger(UInt8(7))
            b.writeInteger(commit)
            b.writeInteger(context)
        case .heartbeatResponse(let context):
            b.writeInteger(UInt8(8))
            b.writeInteger(context)
        case .snapshot(let s):
            b.writeInteger(UInt8(9))
            b.writeInteger(s.index)
            b.writeInteger(s.term)
            RaftWAL.write(s.membership, into: &b)
            b.writeInteger(UInt32(s.data.count))
            b.writeBytes(s.data)
        case .timeoutNow:
            b.writeInteger(UInt8(10))
        case .quiesce(let commit):
            b.writeInteger(UInt8(11))
            b.writeInteger(commit)
        }
    }

    public static func read(_ b: inout ByteBuffer) -> (GroupID, Message)? {
        guard let group = b.readInteger(as: UInt64.self), let from = b.readInteger(as: UInt64.self), let to = b.readInteger(as: UInt64.self),
            let term = b.readInteger(as: UInt64.self), let tag = b.readInteger(as: UInt8.self)
        else { return nil }
        func u64() -> UInt64? { b.readInteger(as: UInt64.self) }
        func flag() -> Bool? { b.readInteger(as: UInt8.self).map { $0 != 0 } }
        let kind: Message.Kind
        switch tag {
        case 1:
            guard let i = u64(), let t = u64() else { return nil }
            kind = .preVote(lastIndex: i, lastTerm: t)
        case 2:
            guard let g = flag() else { return nil }
            kind = .preVoteResponse(granted: g)
        case 3:
            guard let i = u64(), let t = u64(), let tr = flag() else { return nil }
            kind = .vote(lastIndex: i, lastTerm: t, transfer: tr)
        case 4:
            guard let g = flag() else { return nil }
            kind = .voteResponse(granted: g)
        case 5:
            guard let pi = u64(), let pt = u64(), let c = u64(), let n = b.readInteger(as: UInt32.self) else { return nil }
            var entries: [Entry] = []
            entries.reserveCapacity(Int(min(n, 65536)))
            for _ in 0..<n {
                guard let e = RaftWAL.readEntry(&b) else { return nil }
                entries.append(e)
            }
            kind = .append(prevIndex: pi, prevTerm: pt, entries: entries, commit: c)
        case 6:
            guard let r = flag(), let i = u64(), let hi = u64(), let ht = u64() else { return nil }
            kind = .appendResponse(reject: r, index: i, hintIndex: hi, hintTerm: ht)
        case 7:
            guard let c = u64(), let ctx = u64() else { return nil }
            kind = .heartbeat(commit: c, context: ctx)
        case 8:
            guard let ctx = u64() else { return nil }
            kind = .heartbeatResponse(context: ctx)
        case 9:
            guard let i = u64(), let t = u64(), let m = RaftWAL.readMembership(&b), let n = b.readInteger(as: UInt32.self),
                let data = b.readBytes(length: Int(n))
            else { return nil }
            kind = .snapshot(Snapshot(index: i, term: t, membership: m, data: data))
        case 10: kind = .timeoutNow
        case 11:
            guard let c = u64() else { return nil }
            kind = .quiesce(commit: c)
        default: return nil
        }
        return (group, Message(from: from, to: to, term: term, kind: kind))
    }
}
