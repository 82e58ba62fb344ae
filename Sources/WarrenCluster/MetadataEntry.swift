public import NIOCore
public import Raft

/// Who proposed a metadata command: a node, in one run of its process (a restart forgets what
/// it proposed before), and the proposal's number in that run. The proposing node recognises
/// its own commands by it when they are applied, and answers the client then.
public struct ProposalID: Hashable, Sendable {
    public var node: NodeID
    public var incarnation: UInt64
    public var serial: UInt64
}

/// One proposed command, as it travels to the leader and sits in the log.
public struct MetadataEnvelope: Sendable {
    public var id: ProposalID
    /// `MetadataCommand.bytes`.
    public var command: [UInt8]

    public init(id: ProposalID, command: [UInt8]) {
        self.id = id
        self.command = command
    }
}

/// A log entry of the metadata group: several envelopes (everything proposed together goes in
/// one entry, so one append carries a burst of declarations). `u32 count`, then for each:
/// `u64 node, u64 incarnation, u64 serial, u32 length, command`.
enum MetadataEntry {
    /// Envelopes per entry at most (their position in the entry is part of a queue's
    /// incarnation: `index << 16 | position`).
    static let maxEnvelopes = 4096

    static func encode(_ envelopes: ArraySlice<MetadataEnvelope>) -> [UInt8] {
        var b = ByteBuffer()
        write(envelopes, into: &b)
        return Array(b.readableBytesView)
    }

    static func write(_ envelopes: ArraySlice<MetadataEnvelope>, into b: inout ByteBuffer) {
        b.writeInteger(UInt32(envelopes.count))
        for e in envelopes {
            b.writeInteger(e.id.node)
            b.writeInteger(e.id.incarnation)
            b.writeInteger(e.id.serial)
            b.writeInteger(UInt32(e.command.count))
            b.writeBytes(e.command)
        }
    }

    static func read(_ b: inout ByteBuffer) -> [MetadataEnvelope]? {
        guard let n = b.readInteger(as: UInt32.self), n <= maxEnvelopes * 16 else { return nil }
        var out: [MetadataEnvelope] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n {
            guard let node = b.readInteger(as: UInt64.self), let inc = b.readInteger(as: UInt64.self),
                let serial = b.readInteger(as: UInt64.self), let len = b.readInteger(as: UInt32.self),
                let command = b.readBytes(length: Int(len))
            else { return nil }
            out.append(MetadataEnvelope(id: ProposalID(node: node, incarnation: inc, serial: serial), command: command))
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> [MetadataEnvelope]? {
        var b = ByteBuffer(bytes: bytes)
        return read(&b)
    }

    /// `envelopes` cut into entries of at most `maxEnvelopes` and about `maxBytes`.
    static func entries(_ envelopes: [MetadataEnvelope], maxBytes: Int = 512 * 1024) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0
        while start < envelopes.count {
            var end = start
            var bytes = 0
            while end < envelopes.count, end - start < maxEnvelopes, end == start || bytes + envelopes[end].command.count <= maxBytes {
                bytes += envelopes[end].command.count + 28
                end += 1
            }
            out.append(encode(envelopes[start..<end]))
            start = end
        }
        return out
    }
}

/// Node ids in the Raft groups: a stable 64-bit hash of the node's name (FNV-1a), so every node
/// computes every other's without asking, and a node keeps its id across restarts.
public enum ClusterNodeID {
    public static func of(_ name: String) -> NodeID {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h == 0 ? 1 : h
    }
}
