import DequeModule
import Logging
import NIOCore
import WarrenCore
import WarrenLog

/// Compaction: a sealed segment whose messages have mostly left their queues has its live
/// records copied to the head of the log, a step at a time, then retired like any dead
/// segment. Copies carry their source segment and count only once a checkpoint retires it, so
/// a crash halfway leaves the originals in charge.
final class Compaction {
    let segment: UInt32
    var offset = SegmentFile.headerSize
    var copied = 0
    init(segment: UInt32) { self.segment = segment }
}

extension FileMessageStore {
    /// One step of compaction (at most `compactionStepBytes` of the source segment).
    func compactStep() {
        guard failed == nil else { return }
        if compaction == nil {
            guard let candidate = compactionCandidate() else { return }
            compaction = Compaction(segment: candidate.number)
            logger.info(
                "store: compacting segment",
                metadata: ["segment": "\(SegmentFile.fileName(candidate.number))", "live": "\(candidate.liveTotal)", "of": "\(candidate.totalRefs)"])
        }
        guard let c = compaction, let source = segments[c.segment] else {
            compaction = nil
            return
        }
        guard source.liveTotal > 0, c.offset < source.file.size else {
            logger.info("store: segment compacted", metadata: ["segment": "\(SegmentFile.fileName(c.segment))", "copied": "\(c.copied)"])
            compaction = nil
            checkpointWanted = true
            return
        }
        var chunk: ByteBuffer
        do throws(StoreError) {
            chunk = try source.file.read(at: c.offset, length: min(configuration.compactionStepBytes, source.file.size - c.offset))
        } catch {
            logger.error("store: compaction cannot read", metadata: ["error": "\(error)"])
            compaction = nil
            return
        }
        var progressed = false
        while chunk.readableBytes > 0 {
            switch RecordFormat.parse(chunk) {
            case .record(let r):
                if r.type == .message { relocate(r, at: UInt32(c.offset), from: source) }
                chunk.moveReaderIndex(forwardBy: r.size)
                c.offset += r.size
                progressed = true
                continue
            case .incomplete(let needed):
                if !progressed, c.offset + needed <= source.file.size, let whole = try? source.file.read(at: c.offset, length: needed) {
                    chunk = whole
                    continue
                }
            case .corrupt(let why):
                // Recovery read this segment whole, so this is new damage: leave it be.
                logger.error(
                    "store: compaction found a damaged record; segment left as it is",
                    metadata: ["segment": "\(SegmentFile.fileName(c.segment))", "offset": "\(c.offset)", "reason": "\(why)"])
                compaction = nil
                excludedFromCompaction.insert(c.segment)
                return
            }
            break
        }
    }

    /// The sealed segment with the smallest share of live messages, if below the ratio.
    func compactionCandidate() -> Segment? {
        var best: Segment?
        var bestRatio = configuration.compactionRatio
        for s in segments.values where s.sealed && s !== current && s.liveTotal > 0 && s.totalRefs > 0 && !excludedFromCompaction.contains(s.number) {
            guard s.file.size >= configuration.segmentSize / 4 else { continue }  // not worth a copy
            let ratio = Double(s.liveTotal) / Double(s.totalRefs)
            if ratio < bestRatio {
                best = s
                bestRatio = ratio
            }
        }
        return best
    }

    /// Copies a message record's live destinations to the head of the log.
    private func relocate(_ r: RawRecord, at offset: UInt32, from source: Segment) {
        guard let (_, destinations, messageAt) = RecordFormat.messageDestinations(r.payload) else { return }
        let flagged = r.flags & MessageFlags.relocated != 0
        var kept: [MessageDestination] = []
        var members: [(StoreQueueState, UInt8, Int)] = []  // queue, level, extent index
        for d in destinations {
            guard let q = queues[d.queue], !q.dropped else { continue }
            let level = d.seq.priorityLevel
            let extentIndex = q.extents[level]?.firstIndex { e in
                e.segment == source.number && e.start <= offset && offset < e.end && e.isMember(d.seq, relocated: flagged, persisted: d.persist)
            }
            let live = d.persist ? q.live.segment(of: d.seq) == source.number : extentIndex != nil
            guard live else { continue }
            kept.append(d)
            if let i = extentIndex { members.append((q, level, i)) }
        }
        guard !kept.isEmpty else { return }
        commitStaged()
        var message = r.payload
        message.moveReaderIndex(forwardBy: messageAt)
        var at: LogPosition = 0
        let end = append { buffer in
            RecordFormat.write(.message, flags: MessageFlags.relocated, into: &buffer) { b in
                // The message part is copied as it is on disk, not decoded and re-encoded.
                RecordFormat.writeDestinations(kept, relocatedFrom: source.number, into: &b)
                var m = message
                b.writeBuffer(&m)
            }
        } startedAt: { at = $0 }
        compaction?.copied += 1
        let target = segments[at.segment]!
        for d in kept {
            guard let q = queues[d.queue] else { continue }
            if d.persist {
                q.live.remove(d.seq)
                q.live.insert(d.seq, segment: target.number)
            }
            source.removeLive(q.id)
            target.addLive(q.id)
        }
        let bodyBytes = ScanState.bodySize(r.payload, messageAt: messageAt)
        for (q, level, index) in members {
            guard var list = q.extents[level], index < list.count else { continue }
            var e = list[index]
            let seq = kept.first { $0.queue == q.id }!.seq
            // The copy joins the relocated extent just before this one, or starts one there.
            var insertAt = index
            if index > 0, var prev = Optional(list[index - 1]), prev.relocated, prev.segment == target.number, prev.lastSeq < seq,
                Int(at.offset) - Int(prev.end) <= configuration.extentGapBytes
            {
                prev.end = UInt32(truncatingIfNeeded: end)
                prev.count += 1
                prev.bytes += bodyBytes
                prev.lastSeq = seq
                list[index - 1] = prev
            } else {
                var copy = Extent(
                    segment: target.number, start: at.offset, end: UInt32(truncatingIfNeeded: end), count: 1, bytes: bodyBytes,
                    firstSeq: seq, lastSeq: seq, relocated: true)
                copy.persistedOnly = e.persistedOnly
                list.insert(copy, at: index)
                insertAt = index + 1
            }
            e.count = max(0, e.count - 1)
            e.bytes = max(0, e.bytes - bodyBytes)
            e.start = max(e.start, offset + UInt32(r.size))
            e.firstSeq = seq + 1
            if e.start >= e.end {
                list.remove(at: insertAt)
            } else {
                list[insertAt] = e
            }
            q.extents[level] = list
        }
    }
}
