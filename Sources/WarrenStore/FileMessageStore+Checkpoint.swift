import Foundation
import Logging
import WarrenCore
import WarrenLog

#if canImport(Glibc)
    import Glibc
#endif

/// Checkpoints: the manifest that lets recovery skip old records, and the deletion of segments
/// nothing needs any more.
extension FileMessageStore {
    /// Sealed segments no message needs: deleted once a checkpoint no longer needs their other
    /// records either.
    var hasRetirableSegments: Bool {
        segments.values.contains { isRetirable($0) }
    }

    func isRetirable(_ s: Segment) -> Bool {
        s.sealed && s !== current && s.liveTotal == 0 && compaction?.segment != s.number
    }

    /// The manifest as of now (after writing every buffered record), and the segments it
    /// retires. Nil if the store has failed.
    func buildManifest() -> (manifest: Manifest, position: LogPosition, retire: [UInt32])? {
        flushWrites()
        guard failed == nil else { return nil }
        let position = writtenPosition
        let retire = segments.values.filter(isRetirable).map(\.number).sorted()
        let remaining = segments.keys.filter { !retire.contains($0) }
        let lowest = remaining.min() ?? current.number
        let retiredSet = retired.union(retire).filter { $0 >= lowest }
        var entries: [Manifest.QueueEntry] = []
        for q in queues.values.sorted(by: { $0.id < $1.id }) where q.durable && !q.dropped {
            var delivered = q.delivered
            if let lo = q.live.runs.first?.lo, let hi = q.live.runs.last?.hi {
                delivered.clamp(to: lo..<hi)
            } else {
                delivered = RangeSet()
            }
            q.delivered = delivered
            entries.append(Manifest.QueueEntry(id: q.id, live: q.live.runs, delivered: delivered.ranges, nextSeq: q.nextSeq))
        }
        let manifest = Manifest(
            lowestSegment: lowest, retired: retiredSet, checkpoint: position, nextQueueID: nextQueueID, queues: entries,
            metadata: snapshotProvider?())
        return (manifest, position, retire)
    }

    /// Writes a checkpoint through the sync thread: the log is synced first, so the manifest
    /// never describes records that are not on disk.
    func checkpoint() {
        guard worker != nil, !manifestInFlight, let (manifest, position, retire) = buildManifest() else { return }  // (worker: not closed)
        manifestInFlight = true
        checkpointWanted = false
        bytesSinceCheckpoint = 0
        pendingRetire = retire
        var fds = dirtyFDs
        fds.insert(current.file.fd)
        dirtyFDs = [current.file.fd]
        let directories = newSegmentSinceSync ? [segmentsDirectory] : []
        newSegmentSinceSync = false
        worker.enqueue(.write(path: manifestPath, contents: { manifest.encoded() }, fds: fds, directories: directories, position: position, tag: 0))
    }

    func completeCheckpoint(position: LogPosition) {
        let retire = pendingRetire
        pendingRetire = []
        applyCheckpoint(position: position, retire: retire)
    }

    /// The manifest at `position` is on disk: the segments it retires can go.
    func applyCheckpoint(position: LogPosition, retire: [UInt32]) {
        checkpointPosition = position
        for n in retire {
            guard let s = segments[n] else { continue }
            s.file.close()
            unlink(s.file.path)
            segments[n] = nil
            logger.debug("store: segment deleted", metadata: ["segment": "\(SegmentFile.fileName(n))"])
        }
        let lowest = segments.keys.min() ?? current.number
        retired = retired.union(retire).filter { $0 >= lowest }
        lowestSegment = lowest
    }
}
