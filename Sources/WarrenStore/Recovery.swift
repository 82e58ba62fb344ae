import DequeModule
import Foundation
import Logging
import NIOCore
import WarrenCore
import WarrenLog

/// What recovery did, for the log and the tests.
public struct RecoveryReport: Sendable, Equatable {
    public var segmentsScanned = 0
    public var bytesScanned = 0
    public var records = 0
    public var messages = 0
    /// Bytes cut off the end of the last segment (a write the crash interrupted).
    public var tornTailBytes = 0
    public var tornTailSegment: UInt32?
    public var retiredFilesRemoved = 0
    public init() {}
}

/// Rebuilds the store from the manifest and the segments. Corruption that is not a torn tail
/// stops it with an error naming the file, the offset and the way out (`warren repair`).
struct Recovery {
    struct Result {
        var segments: [UInt32: FileMessageStore.Segment]
        var current: FileMessageStore.Segment
        var queues: [StoreQueueID: StoreQueueState]
        var nextQueueID: StoreQueueID
        var lowestSegment: UInt32
        var retired: Set<UInt32>
        var checkpoint: UInt64
        var metadata: RecoveredMetadata
        var isFresh: Bool
        var needsCheckpoint: Bool
        var report: RecoveryReport
    }

    let directory: String
    let segmentsDirectory: String
    let manifestPath: String
    let logger: Logger

    static func repairHint(_ directory: String) -> String {
        "run `warren repair --data-dir \((directory as NSString).deletingLastPathComponent)` to drop the damaged part (the messages in it are lost), or restore the data directory from a backup"
    }

    func run() throws(StoreError) -> Result {
        var report = RecoveryReport()
        let present = SegmentFile.list(segmentsDirectory)
        guard let manifestData = FileManager.default.contents(atPath: manifestPath) else {
            guard present.isEmpty else {
                throw StoreError(
                    "store '\(directory)' has segments but no MANIFEST; it was not written by this version or the file was removed. \(Self.repairHint(directory))"
                )
            }
            return try fresh()
        }
        let manifest: Manifest
        do throws(StoreError) {
            manifest = try Manifest.decode(manifestData)
        } catch {
            throw StoreError("store '\(manifestPath)': \(error.description). \(Self.repairHint(directory))")
        }

        // Every segment from the lowest up to the newest must be there unless retired.
        let presentSet = Set(present)
        let highest = max(present.last ?? 0, manifest.lowestSegment)
        if manifest.lowestSegment <= highest {
            for n in manifest.lowestSegment...highest where !manifest.retired.contains(n) && !presentSet.contains(n) {
                throw StoreError(
                    "store: segment \(SegmentFile.fileName(n)) is missing from '\(segmentsDirectory)' (the log runs from \(SegmentFile.fileName(manifest.lowestSegment)) to \(SegmentFile.fileName(highest))). \(Self.repairHint(directory))"
                )
            }
        }
        // Retired segments whose deletion a crash interrupted go now.
        for n in present where manifest.isRetired(n) {
            unlink(SegmentFile.path(segmentsDirectory, n))
            report.retiredFilesRemoved += 1
        }
        let live = present.filter { !manifest.isRetired($0) }

        var state = ScanState(manifest: manifest)
        var segments: [UInt32: FileMessageStore.Segment] = [:]
        for (i, n) in live.enumerated() {
            let isLast = i == live.count - 1
            let file = try SegmentFile.open(directory: segmentsDirectory, number: n, writable: isLast)
            let segment = FileMessageStore.Segment(file: file)
            segment.sealed = true
            segments[n] = segment
            try scan(segment, isLast: isLast, state: &state, report: &report)
        }
        state.finish(segments: segments)

        // New writes go to a new segment; the recovered ones are read-only from now on.
        let nextNumber = (live.last ?? manifest.lowestSegment - 1) + 1
        let file = try SegmentFile.create(directory: segmentsDirectory, number: max(nextNumber, manifest.lowestSegment))
        let current = FileMessageStore.Segment(file: file)
        segments[file.number] = current
        if report.tornTailBytes > 0 {
            logger.warning(
                "store: cut a torn write off the end of the log",
                metadata: ["segment": "\(SegmentFile.fileName(report.tornTailSegment ?? 0))", "bytes": "\(report.tornTailBytes)"])
        }
        logger.notice(
            "store: recovered",
            metadata: [
                "segments": "\(report.segmentsScanned)", "bytes": "\(report.bytesScanned)", "messages": "\(state.queues.values.reduce(0) { $0 + $1.pagedCount })",
                "queues": "\(state.queues.count)",
            ])
        return Result(
            segments: segments, current: current, queues: state.queues,
            nextQueueID: max(manifest.nextQueueID, (state.queues.keys.max() ?? 0) + 1), lowestSegment: manifest.lowestSegment,
            retired: manifest.retired.filter { $0 >= manifest.lowestSegment }, checkpoint: manifest.checkpoint,
            metadata: RecoveredMetadata(snapshot: manifest.metadata, changes: state.changes), isFresh: false,
            needsCheckpoint: true, report: report)
    }

    /// An empty store: the first segment and a manifest that names it.
    private func fresh() throws(StoreError) -> Result {
        let file = try SegmentFile.create(directory: segmentsDirectory, number: 1)
        try file.sync()
        let manifest = Manifest(lowestSegment: 1, retired: [], checkpoint: 0, nextQueueID: 1, queues: [], metadata: nil)
        if let e = SyncWorker.writeAtomically(manifest.encoded(), to: manifestPath) { throw e }
        try syncDirectory(segmentsDirectory)
        let current = FileMessageStore.Segment(file: file)
        return Result(
            segments: [1: current], current: current, queues: [:], nextQueueID: 1, lowestSegment: 1, retired: [], checkpoint: 0,
            metadata: RecoveredMetadata(snapshot: nil, changes: []), isFresh: true, needsCheckpoint: false, report: RecoveryReport())
    }

    /// Reads one segment record by record.
    private func scan(_ segment: FileMessageStore.Segment, isLast: Bool, state: inout ScanState, report: inout RecoveryReport) throws(StoreError) {
        let file = segment.file
        report.segmentsScanned += 1
        let result = try LogScanner.scan(
            file, isLast: isLast, maxPayload: RecordFormat.maxPayload, isKnown: Self.isKnown, hint: Self.repairHint(directory)
        ) { (raw, offset) throws(StoreError) in
            guard let type = RecordType(rawValue: raw.type) else { return }
            let r = RawRecord(type: type, flags: raw.flags, payload: raw.payload, size: raw.size)
            state.apply(r, at: LogPosition(segment: file.number, offset: UInt32(offset)), segment: segment)
            report.records += 1
            if r.type == .message { report.messages += 1 }
        }
        report.bytesScanned += result.bytes
        if result.tornTailBytes > 0 {
            report.tornTailBytes = result.tornTailBytes
            report.tornTailSegment = file.number
        }
    }

    static func isKnown(_ type: UInt8) -> Bool { RecordType(rawValue: type) != nil }

    /// The offset (within `buffer`) of the first whole valid record at or after `from`.
    static func firstValidRecord(in buffer: ByteBuffer, from: Int) -> Int? {
        LogScanner.firstValidRecord(in: buffer, from: from, maxPayload: RecordFormat.maxPayload, isKnown: isKnown)
    }
}

/// The state recovery builds while reading records in log order.
struct ScanState {
    let manifest: Manifest
    var queues: [StoreQueueID: StoreQueueState] = [:]
    /// As of the checkpoint: live messages and the sequence numbers already used, per queue.
    var checkpointLive: [StoreQueueID: SeqSegmentMap] = [:]
    var checkpointNext: [StoreQueueID: UInt64] = [:]
    var dropped: Set<StoreQueueID> = []
    var changes: [JSONValue] = []
    /// Members found per extent, before removals (for the bytes estimate).
    var scannedMembers: [ObjectIdentifier: Int] = [:]

    init(manifest: Manifest) {
        self.manifest = manifest
        for q in manifest.queues {
            var map = SeqSegmentMap()
            for r in q.live { map.appendRun(r) }
            checkpointLive[q.id] = map
            checkpointNext[q.id] = q.nextSeq
            let state = StoreQueueState(id: q.id, durable: true)
            state.delivered = RangeSet(q.delivered)
            if q.nextSeq > 0 {
                state.maxSeq = q.nextSeq - 1
                state.hasSeq = true
            }
            queues[q.id] = state
        }
    }

    private mutating func queue(_ id: StoreQueueID) -> StoreQueueState? {
        if dropped.contains(id) { return nil }
        if let q = queues[id] { return q }
        let q = StoreQueueState(id: id, durable: true)
        queues[id] = q
        return q
    }

    mutating func apply(_ r: RawRecord, at position: LogPosition, segment: FileMessageStore.Segment) {
        let afterCheckpoint = position >= manifest.checkpoint
        switch r.type {
        case .message:
            guard let (source, destinations, messageAt) = RecordFormat.messageDestinations(r.payload) else { return }
            let relocated = r.flags & MessageFlags.relocated != 0
            // A compaction copy counts only once its source segment was retired; until then the
            // original is the message.
            if relocated && !manifest.isRetired(source) { return }
            var bodyBytes = 0
            for d in destinations where d.persist {
                guard let q = queue(d.queue), !q.live.contains(d.seq) else { continue }
                let seqNumber = d.seq & 0x00FF_FFFF_FFFF_FFFF
                if let next = checkpointNext[d.queue], seqNumber < next, checkpointLive[d.queue]?.contains(d.seq) != true { continue }
                q.noteSeq(d.seq)
                q.live.insert(d.seq, segment: position.segment)
                segment.addLive(q.id)
                if bodyBytes == 0 { bodyBytes = Self.bodySize(r.payload, messageAt: messageAt) }
                addMember(q, seq: d.seq, position: position, size: r.size, bytes: bodyBytes, relocated: relocated)
            }
        case .removed:
            guard afterCheckpoint, let (id, ranges) = RecordFormat.ranges(r.payload), let q = queue(id) else { return }
            for range in ranges { _ = q.live.remove(range) }
        case .delivered:
            guard afterCheckpoint, let (id, ranges) = RecordFormat.ranges(r.payload), let q = queue(id) else { return }
            for range in ranges { q.delivered.insert(range) }
        case .metadata:
            guard afterCheckpoint else { return }
            if let object = try? JSONSerialization.jsonObject(with: Data(r.payload.readableBytesView)) {
                changes.append(JSONValue(foundation: object))
            }
        case .queueDropped:
            var p = r.payload
            guard let id = p.readInteger(as: UInt32.self) else { return }
            dropped.insert(id)
            queues[id] = nil
        case .padding:
            break
        }
    }

    /// Body bytes of a message record, without decoding it.
    static func bodySize(_ payload: ByteBuffer, messageAt: Int) -> Int {
        var p = payload
        p.moveReaderIndex(forwardBy: messageAt)
        guard let x = p.readInteger(as: UInt8.self), p.readSlice(length: Int(x)) != nil, let k = p.readInteger(as: UInt8.self),
            p.readSlice(length: Int(k)) != nil, let props = p.readInteger(as: UInt32.self), p.readSlice(length: Int(props)) != nil,
            let body = p.readInteger(as: UInt32.self)
        else { return 0 }
        return Int(body)
    }

    /// First sequence numbers of the extents built so far, sorted, per queue and level.
    var extentStarts: [UInt64: [UInt64]] = [:]

    private mutating func addMember(_ q: StoreQueueState, seq: UInt64, position: LogPosition, size: Int, bytes: Int, relocated: Bool) {
        let level = seq.priorityLevel
        let end = position.offset + UInt32(size)
        let key = UInt64(q.id) << 8 | UInt64(level)
        if var last = q.extents[level]?.last, last.segment == position.segment, last.relocated == relocated, seq > last.lastSeq,
            !Self.anyStart(in: extentStarts[key] ?? [], above: last.lastSeq, below: seq)
        {
            last.append(end: end, bytes: bytes, seq: seq)
            q.extents[level]![q.extents[level]!.count - 1] = last
        } else {
            var e = Extent(
                segment: position.segment, start: position.offset, end: end, count: 1, bytes: bytes, firstSeq: seq, lastSeq: seq,
                relocated: relocated)
            e.persistedOnly = true
            q.extents[level, default: []].append(e)
            // Extents must not interleave in sequence: one that would jump over another's start
            // (compaction copies from several segments side by side) starts anew instead.
            var starts = extentStarts[key] ?? []
            starts.insert(seq, at: Self.firstIndex(in: starts, above: seq))
            extentStarts[key] = starts
        }
    }

    static func firstIndex(in sorted: [UInt64], above x: UInt64) -> Int {
        var lo = 0
        var hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] <= x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Whether some value of `sorted` lies strictly between `lo` and `hi`.
    static func anyStart(in sorted: [UInt64], above lo: UInt64, below hi: UInt64) -> Bool {
        let i = firstIndex(in: sorted, above: lo)
        return i < sorted.count && sorted[i] < hi
    }

    /// After the last record: drop the queues that were dropped, order each level's extents by
    /// sequence number, and count what is still live in each.
    mutating func finish(segments: [UInt32: FileMessageStore.Segment]) {
        for (id, q) in queues {
            if dropped.contains(id) {
                queues[id] = nil
                continue
            }
            for (level, list) in q.extents {
                var sorted = Self.untangled(Array(list).sorted { $0.firstSeq < $1.firstSeq }, queue: id, segments: segments)
                for i in sorted.indices {
                    let e = sorted[i]
                    let live = q.live.count(in: e.firstSeq..<(e.lastSeq + 1), segment: e.segment)
                    let scanned = e.count
                    sorted[i].count = live
                    sorted[i].bytes = scanned == 0 ? 0 : e.bytes * live / scanned
                }
                sorted.removeAll { $0.count == 0 }
                q.extents[level] = sorted.isEmpty ? nil : Deque(sorted)
            }
            // Deliveries of messages that are gone matter no more.
            if let lo = q.live.runs.first?.lo, let hi = q.live.runs.last?.hi {
                q.delivered.clamp(to: lo..<hi)
            } else {
                q.delivered = RangeSet()
            }
        }
        // Live counts per segment, from the live maps (removals included).
        for s in segments.values {
            s.live.removeAll()
            s.liveTotal = 0
        }
        for q in queues.values {
            for (segment, n) in q.live.countsBySegment() {
                guard let s = segments[segment] else { continue }
                s.live[q.id, default: 0] += n
                s.liveTotal += n
            }
        }
    }
}

extension ScanState {
    /// Extents in sequence order, none spanning another's start: compaction can copy runs of
    /// one queue from several segments side by side in an order that interleaves them, and
    /// recovery only sees that once every segment is read. An extent that does is split where
    /// its members cross the other's start (found by reading it).
    static func untangled(_ extents: [Extent], queue: StoreQueueID, segments: [UInt32: FileMessageStore.Segment]) -> [Extent] {
        var list = extents
        var i = 0
        while i + 1 < list.count {
            let e = list[i]
            let pivot = list[i + 1].firstSeq
            guard e.lastSeq >= pivot, let file = segments[e.segment]?.file,
                let (below, above) = split(e, at: pivot, queue: queue, file: file), let below, let above
            else {
                i += 1
                continue
            }
            list.replaceSubrange(i...i, with: [below, above])
            list.sort { $0.firstSeq < $1.firstSeq }
        }
        return list
    }

    /// The members of `e` below `pivot` and those above it, as two extents.
    static func split(_ e: Extent, at pivot: UInt64, queue: StoreQueueID, file: SegmentFile) -> (Extent?, Extent?)? {
        guard var b = try? file.read(at: Int(e.start), length: Int(e.end - e.start)) else { return nil }
        var low: Extent?
        var high: Extent?
        var offset = e.start
        while case .record(let r) = RecordFormat.parse(b) {
            if r.type == .message, let (_, destinations, messageAt) = RecordFormat.messageDestinations(r.payload) {
                let relocated = r.flags & MessageFlags.relocated != 0
                for d in destinations where d.queue == queue && d.seq.priorityLevel == e.firstSeq.priorityLevel
                    && e.isMember(d.seq, relocated: relocated, persisted: d.persist)
                {
                    let bytes = bodySize(r.payload, messageAt: messageAt)
                    let end = offset + UInt32(r.size)
                    if d.seq < pivot {
                        if low == nil { low = Extent(segment: e.segment, start: offset, end: end, count: 0, bytes: 0, firstSeq: d.seq, lastSeq: d.seq, relocated: e.relocated) }
                        low!.end = end
                        low!.lastSeq = max(low!.lastSeq, d.seq)
                        low!.count += 1
                        low!.bytes += bytes
                    } else {
                        if high == nil { high = Extent(segment: e.segment, start: offset, end: end, count: 0, bytes: 0, firstSeq: d.seq, lastSeq: d.seq, relocated: e.relocated) }
                        high!.end = end
                        high!.lastSeq = max(high!.lastSeq, d.seq)
                        high!.count += 1
                        high!.bytes += bytes
                    }
                }
            }
            offset += UInt32(r.size)
            b.moveReaderIndex(forwardBy: r.size)
        }
        // Members below the pivot must all come before those above it, or splitting does not help.
        if let l = low, let h = high, l.end > h.start { return nil }
        low?.persistedOnly = e.persistedOnly
        high?.persistedOnly = e.persistedOnly
        return (low, high)
    }
}

extension SeqSegmentMap {
    /// Members within `r` that are in `segment`.
    func count(in r: Range<UInt64>, segment: UInt32) -> Int {
        var n = 0
        for run in runs where run.segment == segment && run.lo < r.upperBound && run.hi > r.lowerBound {
            n += Int(min(run.hi, r.upperBound) - max(run.lo, r.lowerBound))
        }
        return n
    }
}
