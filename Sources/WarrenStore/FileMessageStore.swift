import DequeModule
public import Foundation
public import Logging
import NIOCore
public import WarrenCore
public import WarrenLog

/// The store: one append-only log of segment files shared by every queue, with group commit.
///
/// - The event loop appends records to a buffer and writes it to the current segment once per
///   loop iteration (a write to the page cache); metadata changes are written at once. So
///   whatever the broker acted on survives a crash of the process.
/// - fdatasync runs on the sync thread (`SyncWorker`), one per round however many channels
///   wait; publisher confirms for persistent messages go out when it reports back.
/// - Queues page long backlogs out: a queue's paged tail is a list of extents (runs of records
///   in a segment), read back in order.
/// - A segment whose messages have all left their queues is deleted after the next checkpoint
///   (the manifest); a sealed segment that is mostly dead has its live records copied to the
///   head of the log (compaction) and is then deleted.
///
/// Not thread-safe: every call comes from the broker's event loop; the sync thread only does
/// IO and posts its results back through `execute`.
public final class FileMessageStore: MessageStore, @unchecked Sendable {
    public struct Configuration: Sendable {
        /// A segment is closed and a new one started past this size.
        public var segmentSize = 64 * 1024 * 1024
        /// A checkpoint (manifest) is written after this much log, so recovery replays little.
        public var checkpointBytes = 256 * 1024 * 1024
        /// Writes not yet synced are synced after this long even if nobody waits (ms).
        public var backgroundSyncMilliseconds: Int64 = 200
        /// A sealed segment whose live messages fall below this share of what it held is
        /// compacted.
        public var compactionRatio = 0.3
        /// Bytes of a segment compaction reads per tick, so serving goes on meanwhile.
        public var compactionStepBytes = 4 * 1024 * 1024
        /// Bytes read per page-in step.
        public var pageInChunkBytes = 1024 * 1024
        /// Records of one queue further apart than this start a new extent.
        public var extentGapBytes = 1024 * 1024
        public init() {}
    }

    final class Segment {
        let file: SegmentFile
        var number: UInt32 { file.number }
        var sealed = false
        /// Messages (one per queue copy) that still need this segment, per queue.
        var live: [StoreQueueID: Int] = [:]
        var liveTotal = 0
        /// Copies ever written here (or found at recovery): with `liveTotal`, how dead it is.
        var totalRefs = 0
        init(file: SegmentFile) { self.file = file }

        func addLive(_ q: StoreQueueID, _ n: Int = 1) {
            live[q, default: 0] += n
            liveTotal += n
            totalRefs += n
        }

        func removeLive(_ q: StoreQueueID, _ n: Int = 1) {
            guard n > 0, let have = live[q] else { return }
            let take = min(have, n)
            live[q] = have - take == 0 ? nil : have - take
            liveTotal -= take
        }
    }

    public let directory: String
    let segmentsDirectory: String
    let manifestPath: String
    let configuration: Configuration
    let logger: Logger
    /// Runs a task on the store's event loop.
    let execute: @Sendable (@escaping @Sendable () -> Void) -> Void
    let clock: @Sendable () -> Int64

    var segments: [UInt32: Segment] = [:]
    var current: Segment
    /// Records appended but not yet written to `current`.
    var pending = ByteBuffer()
    /// Everything before this is in the files (in the page cache at least).
    var writtenPosition: LogPosition = 0
    /// Everything before this is on disk.
    public private(set) var durablePosition: UInt64 = 0
    var flushScheduled = false
    var syncWanted = false
    var syncInFlight = false
    var lastSyncRequest: Int64 = 0
    /// Segments written since the last sync request.
    var dirtyFDs: Set<Int32> = []
    /// A segment file was created since the last sync: its name must reach the disk too.
    var newSegmentSinceSync = false
    var failed: StoreError?

    // The message being staged (written once for all the queues it reaches).
    var stagedMessage: Message?
    var stagedDestinations: [MessageDestination] = []
    var stagedQueues: [(StoreQueueState, paged: Bool)] = []
    /// The message committed last, held (not just its ObjectIdentifier: a freed message's
    /// address is reused by the next one, which then looked persisted at the old position and
    /// held its confirm for a sync that never came). Let go at the end of the loop turn.
    var lastCommitted: (message: Message, position: LogPosition, persisted: Bool)?

    var queues: [StoreQueueID: StoreQueueState] = [:]
    var dirtyQueues: [StoreQueueState] = []
    var nextQueueID: StoreQueueID = 1

    // Checkpoints.
    var lowestSegment: UInt32 = 1
    var retired: Set<UInt32> = []
    var checkpointPosition: LogPosition = 0
    var bytesSinceCheckpoint = 0
    var manifestInFlight = false
    var checkpointWanted = false

    var compaction: Compaction?
    /// Segments compaction found damaged: left alone until an operator repairs them.
    var excludedFromCompaction: Set<UInt32> = []
    /// Segments the checkpoint in flight retires.
    var pendingRetire: [UInt32] = []
    var worker: SyncWorker!

    public var onDurable: ((UInt64) -> Void)?
    /// The store cannot go on (a write or fsync failed): the node must stop.
    public var onFatal: ((StoreError) -> Void)?
    /// The durable definitions, for checkpoints (the broker's `exportDefinitions(durableOnly:)`).
    public var snapshotProvider: (() -> JSONValue)?

    /// What recovery found; empty on a fresh store.
    public private(set) var recoveredMetadata = RecoveredMetadata(snapshot: nil, changes: [])
    public private(set) var recoveredQueues: [RecoveredQueue] = []
    /// True when the directory held no store: the node seeds its defaults.
    public private(set) var isFresh = false
    /// What recovery did, for the log and for tests.
    public private(set) var recoveryReport = RecoveryReport()

    /// Opens (or creates) the store in `directory` and recovers it. Throws when the log is
    /// damaged in a way a restart must not paper over; the error says which file and what to do.
    public init(
        directory: String, configuration: Configuration = Configuration(), logger: Logger,
        clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) },
        execute: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void
    ) throws(StoreError) {
        self.directory = directory
        self.segmentsDirectory = (directory as NSString).appendingPathComponent("segments")
        self.manifestPath = (directory as NSString).appendingPathComponent("MANIFEST")
        self.configuration = configuration
        self.logger = logger
        self.execute = execute
        self.clock = clock
        do {
            try FileManager.default.createDirectory(atPath: segmentsDirectory, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create '\(segmentsDirectory)': \(error.localizedDescription)")
        }
        let recovery = Recovery(directory: directory, segmentsDirectory: segmentsDirectory, manifestPath: manifestPath, logger: logger)
        let result = try recovery.run()
        self.current = result.current
        self.segments = result.segments
        self.queues = result.queues
        self.nextQueueID = result.nextQueueID
        self.lowestSegment = result.lowestSegment
        self.retired = result.retired
        self.checkpointPosition = result.checkpoint
        self.isFresh = result.isFresh
        self.recoveredMetadata = result.metadata
        self.recoveryReport = result.report
        self.recoveredQueues = result.queues.values.filter(\.durable).sorted { $0.id < $1.id }.map { q in
            var counts: [UInt8: Int] = [:]
            var bytes: [UInt8: Int] = [:]
            for (level, list) in q.extents {
                counts[level] = list.reduce(0) { $0 + $1.count }
                bytes[level] = list.reduce(0) { $0 + $1.bytes }
            }
            return RecoveredQueue(id: q.id, pagedCounts: counts, pagedBytes: bytes, nextSeq: q.nextSeq)
        }
        writtenPosition = LogPosition(segment: current.number, offset: UInt32(current.file.size))
        durablePosition = writtenPosition
        dirtyFDs = [current.file.fd]
        worker = SyncWorker { [weak self] job, error in
            guard let self else { return }
            self.execute { self.finished(job, error) }
        }
        if result.needsCheckpoint { checkpointWanted = true }
    }

    deinit {
        // Without close(): what a crash leaves (the written records are in the files).
        worker?.stop()
    }

    /// Flushes and syncs everything, writes a checkpoint, and stops the sync thread.
    public func close() {
        guard worker != nil else { return }
        flushWrites()
        if failed == nil {
            // The final checkpoint runs here, synchronously: the loop is going away.
            if let (manifest, position, retire) = buildManifest() {
                do throws(StoreError) {
                    for s in segments.values where !s.sealed || dirtyFDs.contains(s.file.fd) { try s.file.sync() }
                    if let e = SyncWorker.writeAtomically(manifest.encoded(), to: manifestPath) { throw e }
                    applyCheckpoint(position: position, retire: retire)
                } catch {
                    logger.error("store: final checkpoint failed", metadata: ["error": "\(error)"])
                }
            }
        }
        worker.stop()
        worker = nil
        for s in segments.values { s.file.close() }
    }

    // MARK: queues

    public func openQueue(id: StoreQueueID?, durable: Bool) -> any StoreQueue {
        if let id, let q = queues[id] { return q }
        let id = id ?? allocateQueueID()
        if id >= nextQueueID { nextQueueID = id + 1 }
        let q = StoreQueueState(id: id, durable: durable)
        queues[id] = q
        return q
    }

    private func allocateQueueID() -> StoreQueueID {
        let id = nextQueueID
        nextQueueID += 1
        return id
    }

    public func dropQueue(_ queue: any StoreQueue) {
        guard let q = queue as? StoreQueueState, !q.dropped else { return }
        commitStaged()
        q.dropped = true
        queues[q.id] = nil
        for s in segments.values { s.removeLive(q.id, s.live[q.id] ?? 0) }
        q.extents.removeAll()
        q.live = SeqSegmentMap()
        if q.durable {
            append { RecordFormat.writeQueueDropped(q.id, into: &$0) }
        }
    }

    // MARK: messages in

    public func stage(_ message: Message, queue: any StoreQueue, seq: UInt64, expiresAt: Int64, persist: Bool, page: Bool) {
        guard let q = queue as? StoreQueueState, !q.dropped else { return }
        if let staged = stagedMessage, staged !== message { commitStaged() }
        stagedMessage = message
        stagedDestinations.append(MessageDestination(queue: q.id, seq: seq, expiresAt: expiresAt, persist: persist))
        stagedQueues.append((q, page))
        q.noteSeq(seq)
    }

    public func persistedPosition(of message: Message) -> UInt64? {
        if stagedMessage === message { commitStaged() }
        guard let last = lastCommitted, last.message === message, last.persisted else { return nil }
        return last.position
    }

    /// Writes the staged message's record into the log buffer and accounts for it.
    @discardableResult
    func commitStaged() -> LogPosition {
        guard let message = stagedMessage else { return writtenPosition + UInt64(pending.readableBytes) }
        let destinations = stagedDestinations
        let staged = stagedQueues
        stagedMessage = nil
        stagedDestinations.removeAll(keepingCapacity: true)
        stagedQueues.removeAll(keepingCapacity: true)
        var persisted = false
        var at: LogPosition = 0
        let end = append { buffer -> Int in
            RecordFormat.writeMessage(message, destinations: destinations, into: &buffer)
        } startedAt: { at = $0 }
        let segment = segments[at.segment]!
        let recordEnd = UInt32(truncatingIfNeeded: end)
        for (i, d) in destinations.enumerated() {
            let (q, paged) = staged[i]
            if d.persist {
                persisted = true
                q.live.insert(d.seq, segment: at.segment)
                segment.addLive(q.id)
            } else if paged {
                segment.addLive(q.id)
            }
            if paged { addToExtents(q, seq: d.seq, segment: at.segment, start: at.offset, end: recordEnd, bytes: message.bodySize) }
        }
        lastCommitted = (message, end, persisted)
        return end
    }

    private func addToExtents(_ q: StoreQueueState, seq: UInt64, segment: UInt32, start: UInt32, end: UInt32, bytes: Int) {
        let level = seq.priorityLevel
        if var last = q.extents[level]?.last, last.segment == segment, !last.relocated, seq > last.lastSeq,
            Int(start) - Int(last.end) <= configuration.extentGapBytes
        {
            last.append(end: end, bytes: bytes, seq: seq)
            q.extents[level]![q.extents[level]!.count - 1] = last
        } else {
            q.extents[level, default: []].append(
                Extent(segment: segment, start: start, end: end, count: 1, bytes: bytes, firstSeq: seq, lastSeq: seq, relocated: false))
        }
    }

    public func removed(_ queue: any StoreQueue, seq: UInt64) {
        guard let q = queue as? StoreQueueState, !q.dropped else { return }
        if stagedMessage != nil { commitStaged() }
        guard let segment = q.live.remove(seq) else { return }
        segments[segment]?.removeLive(q.id)
        q.pendingRemoved.insert(seq)
        markDirty(q)
    }

    public func delivered(_ queue: any StoreQueue, seq: UInt64) {
        guard let q = queue as? StoreQueueState, !q.dropped, q.durable else { return }
        if stagedMessage != nil { commitStaged() }
        q.delivered.insert(seq)
        q.pendingDelivered.insert(seq)
        markDirty(q)
    }

    @inline(__always)
    private func markDirty(_ q: StoreQueueState) {
        if !q.isDirty {
            q.isDirty = true
            dirtyQueues.append(q)
        }
        scheduleFlush()
    }

    public func appendMetadata(_ change: JSONValue) {
        let data = Data(change.jsonBytes)
        append { RecordFormat.writeMetadata(Array(data), into: &$0) }
        // Written now, before the broker answers: a crash of the process cannot lose it.
        flushWrites()
    }

    // MARK: the log

    /// Appends one record (written by `write`, which returns its size) to the buffer, starting a
    /// new segment first if it would not fit. Returns the position after the record.
    @discardableResult
    func append(_ write: (inout ByteBuffer) -> Int, startedAt: (LogPosition) -> Void = { _ in }) -> LogPosition {
        var start = writtenPosition + UInt64(pending.readableBytes)
        let before = pending.writerIndex
        let size = write(&pending)
        if current.file.size + pending.readableBytes > configuration.segmentSize && pending.readableBytes > size {
            // It does not fit: write what came before into this segment, then start the next
            // one with this record.
            var record = pending.getSlice(at: before, length: size)!
            pending.moveWriterIndex(to: before)
            flushPending()
            rollOver()
            start = writtenPosition
            pending.writeBuffer(&record)
        }
        startedAt(start)
        bytesSinceCheckpoint += size
        scheduleFlush()
        return start + UInt64(size)
    }

    private func rollOver() {
        current.sealed = true
        dirtyFDs.insert(current.file.fd)
        do throws(StoreError) {
            let next = try SegmentFile.create(directory: segmentsDirectory, number: current.number + 1)
            let s = Segment(file: next)
            segments[next.number] = s
            current = s
            writtenPosition = LogPosition(segment: next.number, offset: UInt32(next.size))
            dirtyFDs.insert(next.fd)
            newSegmentSinceSync = true
        } catch {
            fail(error)
        }
    }

    private func flushPending() {
        guard pending.readableBytes > 0, failed == nil else { return }
        do throws(StoreError) {
            try current.file.append(pending)
        } catch {
            fail(error)
            return
        }
        writtenPosition += UInt64(pending.readableBytes)
        dirtyFDs.insert(current.file.fd)
        pending.clear()
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        execute { [unowned self] in
            self.flushScheduled = false
            self.flushWrites()
        }
    }

    /// Writes everything appended so far into the segment files, and starts a sync when
    /// someone waits for one.
    public func flushWrites() {
        commitStaged()
        lastCommitted = nil
        for q in dirtyQueues {
            q.isDirty = false
            guard !q.dropped else { continue }
            if !q.pendingRemoved.isEmpty {
                let ranges = q.pendingRemoved
                q.pendingRemoved = RangeSet()
                append { RecordFormat.writeRanges(.removed, queue: q.id, ranges, into: &$0) }
            }
            if !q.pendingDelivered.isEmpty {
                let ranges = q.pendingDelivered
                q.pendingDelivered = RangeSet()
                append { RecordFormat.writeRanges(.delivered, queue: q.id, ranges, into: &$0) }
            }
        }
        dirtyQueues.removeAll(keepingCapacity: true)
        flushPending()
        if syncWanted { startSync() }
    }

    public func requestSync() {
        syncWanted = true
        scheduleFlush()
    }

    private func startSync() {
        guard worker != nil else { return }  // closed
        guard failed == nil, writtenPosition > durablePosition else {
            syncWanted = false
            // Someone asked, and everything is durable already: tell them now rather than
            // leave them waiting for a sync that no write will ever start.
            if failed == nil && !syncInFlight { execute { [unowned self] in self.onDurable?(self.durablePosition) } }
            return
        }
        syncWanted = false
        syncInFlight = true
        lastSyncRequest = clock()
        worker.requestSync(upTo: writtenPosition, fds: dirtyFDs, directories: newSegmentSinceSync ? [segmentsDirectory] : [])
        newSegmentSinceSync = false
        dirtyFDs = [current.file.fd]
    }

    /// A job of the sync thread finished (on the loop).
    private func finished(_ job: SyncWorker.Job, _ error: StoreError?) {
        // A job running when the store closed answers after close(): the final checkpoint has
        // been written by then, and nothing may start any more.
        guard worker != nil else { return }
        if let error {
            fail(error)
            return
        }
        switch job {
        case .sync(let position, _, _):
            syncInFlight = false
            advanceDurable(to: position)
        case .write(_, _, _, _, let position, _):
            manifestInFlight = false
            advanceDurable(to: position)
            completeCheckpoint(position: position)
        }
    }

    private func advanceDurable(to position: LogPosition) {
        guard position > durablePosition else { return }
        durablePosition = position
        onDurable?(position)
    }

    func fail(_ error: StoreError) {
        guard failed == nil else { return }
        failed = error
        logger.critical("store: \(error.description); nothing more can be made durable")
        onFatal?(error)
    }

    /// Background work, called every few tens of milliseconds: a sync of writes nobody waited
    /// for, checkpoints, compaction.
    /// Asks for a checkpoint at the next tick (the metadata it holds changed shape).
    public func requestCheckpoint() {
        checkpointWanted = true
    }

    public func tick() {
        guard failed == nil else { return }
        if writtenPosition > durablePosition && !syncInFlight && clock() - lastSyncRequest >= configuration.backgroundSyncMilliseconds {
            requestSync()
        }
        if !manifestInFlight && (checkpointWanted || bytesSinceCheckpoint >= configuration.checkpointBytes || hasRetirableSegments) {
            checkpoint()
        }
        compactStep()
    }

    // MARK: paging

    public func pageIn(_ queue: any StoreQueue, level: UInt8, max: Int) -> [PagedMessage] {
        guard let q = queue as? StoreQueueState, !q.dropped else { return [] }
        var out: [PagedMessage] = []
        while out.count < max, var e = q.extents[level]?.first {
            guard let segment = segments[e.segment] else {
                logger.error("store: a paged extent names a missing segment", metadata: ["segment": "\(e.segment)"])
                q.extents[level]!.removeFirst()
                continue
            }
            if segment === current && Int(e.end) > current.file.size { flushWrites() }
            let chunk: ByteBuffer
            do throws(StoreError) {
                chunk = try segment.file.read(at: Int(e.start), length: min(Int(e.end - e.start), configuration.pageInChunkBytes))
            } catch {
                logger.error("store: cannot read paged messages", metadata: ["error": "\(error)"])
                return out
            }
            var buffer = chunk
            var consumed = 0
            while out.count < max {
                switch RecordFormat.parse(buffer) {
                case .record(let r):
                    if r.type == .message, let (_, destinations, messageAt) = RecordFormat.messageDestinations(r.payload) {
                        let relocated = r.flags & MessageFlags.relocated != 0
                        for d in destinations where d.queue == q.id && e.isMember(d.seq, relocated: relocated, persisted: d.persist) && d.seq.priorityLevel == level {
                            e.firstSeq = d.seq + 1
                            e.count = Swift.max(0, e.count - 1)
                            if d.persist && !q.live.contains(d.seq) { continue }  // left the queue before a restart
                            if !d.persist { segment.removeLive(q.id) }
                            guard let m = RecordFormat.message(r.payload, at: messageAt) else { continue }
                            e.bytes = Swift.max(0, e.bytes - m.bodySize)
                            out.append(
                                PagedMessage(
                                    message: m, seq: d.seq, expiresAt: d.expiresAt, redelivered: q.delivered.contains(d.seq), stored: d.persist))
                        }
                    }
                    buffer.moveReaderIndex(forwardBy: r.size)
                    consumed += r.size
                    continue
                case .incomplete(let needed):
                    if consumed == 0 && Int(e.start) + needed <= Int(e.end) {
                        // A record bigger than the chunk: read it whole.
                        if let whole = try? segment.file.read(at: Int(e.start), length: needed) {
                            buffer = whole
                            continue
                        }
                    }
                case .corrupt(let why):
                    logger.error(
                        "store: a paged record is damaged; skipping the rest of its extent",
                        metadata: ["segment": "\(e.segment)", "offset": "\(Int(e.start) + consumed)", "reason": "\(why)"])
                    consumed = Int(e.end - e.start)
                }
                break
            }
            e.start += UInt32(consumed)
            if e.start >= e.end {
                q.extents[level]!.removeFirst()
            } else {
                q.extents[level]![0] = e
            }
            if consumed == 0 && out.isEmpty { break }
        }
        if q.extents[level]?.isEmpty == true { q.extents[level] = nil }
        return out
    }

    public func dropPaged(_ queue: any StoreQueue) {
        guard let q = queue as? StoreQueueState, !q.dropped else { return }
        commitStaged()
        for (_, list) in q.extents {
            for e in list {
                let removed = q.live.remove(e.firstSeq..<(e.lastSeq + 1))
                var persisted = 0
                for (segment, n) in removed {
                    segments[segment]?.removeLive(q.id, n)
                    persisted += n
                }
                if persisted > 0 {
                    q.pendingRemoved.insert(e.firstSeq..<(e.lastSeq + 1))
                    markDirty(q)
                }
                segments[e.segment]?.removeLive(q.id, Swift.max(0, e.count - persisted))
            }
        }
        q.extents.removeAll()
    }
}
