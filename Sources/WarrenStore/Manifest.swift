import Foundation
import WarrenCore
import WarrenLog

/// The store's checkpoint, rewritten atomically (temp file, fsync, rename): which segments make
/// up the log, which were retired (deleted, or being deleted), the log position the
/// checkpoint describes, each durable queue's persisted messages and deliveries as of that
/// position, and the metadata snapshot. Recovery starts from it and replays the records after
/// `checkpoint`; message records are read from every live segment.
struct Manifest: Equatable, Sendable {
    struct QueueEntry: Equatable, Sendable {
        var id: StoreQueueID
        var live: [SeqSegmentMap.Run]
        var delivered: [Range<UInt64>]
        var nextSeq: UInt64
    }

    static let format = 1
    var lowestSegment: UInt32
    var retired: Set<UInt32>
    var checkpoint: UInt64
    var nextQueueID: StoreQueueID
    var queues: [QueueEntry]
    var metadata: JSONValue?

    /// Segments at or above `lowestSegment` that are not retired are expected to exist.
    func isRetired(_ segment: UInt32) -> Bool { segment < lowestSegment || retired.contains(segment) }

    // 64-bit numbers travel as their Int64 bit pattern (a sequence number's priority byte can
    // set the top bit).
    private static func int(_ v: UInt64) -> JSONValue { .int(Int64(bitPattern: v)) }
    private static func uint(_ v: JSONValue?) -> UInt64? { v?.intValue.map { UInt64(bitPattern: $0) } }

    func encoded() -> Data {
        let queues: [JSONValue] = self.queues.map { q in
            .object([
                "id": .int(Int64(q.id)),
                "live": .array(q.live.map { .array([Self.int($0.lo), Self.int($0.hi), .int(Int64($0.segment))]) }),
                "delivered": .array(q.delivered.map { .array([Self.int($0.lowerBound), Self.int($0.upperBound)]) }),
                "next_seq": Self.int(q.nextSeq),
            ])
        }
        let root: JSONValue = .object([
            "format": .int(Int64(Self.format)),
            "lowest_segment": .int(Int64(lowestSegment)),
            "retired": .array(retired.sorted().map { .int(Int64($0)) }),
            "checkpoint": Self.int(checkpoint),
            "next_queue_id": .int(Int64(nextQueueID)),
            "queues": .array(queues),
            "metadata": metadata ?? .null,
        ])
        return Data(root.jsonBytes)
    }

    static func decode(_ data: Data) throws(StoreError) -> Manifest {
        guard let object = try? JSONSerialization.jsonObject(with: data), case .object(let o) = JSONValue(foundation: object) else {
            throw StoreError("the manifest is not valid JSON")
        }
        guard o["format"]?.intValue == Int64(format) else { throw StoreError("the manifest has an unknown format") }
        guard let lowest = o["lowest_segment"]?.intValue, let checkpoint = uint(o["checkpoint"]), let next = o["next_queue_id"]?.intValue else {
            throw StoreError("the manifest lacks lowest_segment, checkpoint or next_queue_id")
        }
        var queues: [QueueEntry] = []
        for q in o["queues"]?.arrayValue ?? [] {
            guard let id = q["id"]?.intValue, let nextSeq = uint(q["next_seq"]) else { throw StoreError("the manifest has a malformed queue entry") }
            var live: [SeqSegmentMap.Run] = []
            for r in q["live"]?.arrayValue ?? [] {
                guard let a = r.arrayValue, a.count == 3, let lo = uint(a[0]), let hi = uint(a[1]), let seg = a[2].intValue, lo < hi else {
                    throw StoreError("the manifest has a malformed run for queue \(id)")
                }
                guard live.last.map({ lo >= $0.hi }) ?? true else { throw StoreError("the manifest's runs for queue \(id) are out of order") }
                live.append(SeqSegmentMap.Run(lo: lo, hi: hi, segment: UInt32(seg)))
            }
            var delivered: [Range<UInt64>] = []
            for r in q["delivered"]?.arrayValue ?? [] {
                guard let a = r.arrayValue, a.count == 2, let lo = uint(a[0]), let hi = uint(a[1]), lo < hi else {
                    throw StoreError("the manifest has a malformed range for queue \(id)")
                }
                delivered.append(lo..<hi)
            }
            queues.append(QueueEntry(id: StoreQueueID(id), live: live, delivered: delivered, nextSeq: nextSeq))
        }
        let metadata = o["metadata"].flatMap { $0 == .null ? nil : $0 }
        return Manifest(
            lowestSegment: UInt32(lowest), retired: Set((o["retired"]?.arrayValue ?? []).compactMap { $0.intValue.map(UInt32.init) }),
            checkpoint: checkpoint, nextQueueID: StoreQueueID(next), queues: queues, metadata: metadata)
    }
}
