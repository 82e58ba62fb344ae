import AMQPProtocol
import Logging
import NIOCore

/// A replicated queue's snapshots: what a later leader needs of each message not settled.
extension ReplicatedQueue {
    /// Sequence number, then each message not settled with what a later leader needs of it.
    func snapshotData() -> [UInt8] {
        let (nextSeq, ready) = queue.replicaContents
        var all = ready
        all.append(contentsOf: handedOut.values)
        // Not settled either: their removal is logged once their targets confirm.
        all.append(contentsOf: deadLettering.values.map(\.entry))
        return Self.encodeSnapshot(nextSeq: nextSeq, entries: all) { $0.redelivered || handedOut[$0.seq] != nil }
    }

    static func encodeSnapshot(nextSeq: UInt64, entries: [QueueEntry], redelivered: (QueueEntry) -> Bool) -> [UInt8] {
        let all = entries.sorted { $0.seq < $1.seq }
        var b = ByteBuffer()
        b.writeInteger(UInt8(1))
        b.writeInteger(nextSeq)
        b.writeInteger(UInt32(all.count))
        for e in all {
            b.writeInteger(e.seq)
            b.writeInteger(UInt8(redelivered(e) ? 1 : 0))
            b.writeInteger(e.deliveryCount)
            b.writeInteger(e.expiresAt)
            e.message.write(into: &b)
        }
        return Array(b.readableBytesView)
    }

    func snapshot() {
        entriesSinceSnapshot = 0
        bytesSinceSnapshot = 0
        manager.log?.compact(group: group, upTo: appliedIndex, data: snapshotData())
    }

    /// Replaces the state with a snapshot's (at start, or one the leader sent).
    func restore(_ data: [UInt8], index: UInt64) {
        appliedIndex = index
        entriesSinceSnapshot = 0
        bytesSinceSnapshot = 0
        var b = ByteBuffer(bytes: data)
        guard b.readableBytes > 0 else {
            // The group's first snapshot: an empty queue.
            queue.restoreReplica(nextSeq: 0, entries: [])
            return
        }
        guard b.readInteger(as: UInt8.self) == 1, let nextSeq = b.readInteger(as: UInt64.self), let n = b.readInteger(as: UInt32.self) else {
            return manager.broker.logger.error("\(queue.resourceDescription): unreadable snapshot at \(index) ignored")
        }
        var entries: [QueueEntry] = []
        entries.reserveCapacity(Int(n))
        for _ in 0..<n {
            guard let seq = b.readInteger(as: UInt64.self), let flags = b.readInteger(as: UInt8.self),
                let count = b.readInteger(as: UInt32.self), let expiresAt = b.readInteger(as: Int64.self),
                let message = try? Message.read(from: &b)
            else {
                return manager.broker.logger.error("\(queue.resourceDescription): unreadable snapshot at \(index) ignored")
            }
            var e = QueueEntry(message: message, redelivered: flags & 1 != 0, seq: seq, expiresAt: expiresAt, priority: UInt8(seq >> 56))
            e.deliveryCount = count
            entries.append(e)
        }
        handedOut.removeAll()
        queue.restoreReplica(nextSeq: nextSeq, entries: entries)
    }
}
