import Foundation
public import Logging
public import NIOCore
public import Raft
public import WarrenLog

/// Identifies a Raft group on a node (the metadata group is 0; replicated queues get their own).
public typealias GroupID = UInt64

/// One write-ahead log for every Raft group on this node (as RabbitMQ's `ra` keeps one WAL per
/// node): hard states, entries and snapshot markers of all groups interleaved in one sequence
/// of CRC-checked segment files, written by the event loop and made durable by one fsync per
/// round for all groups (group commit, on WarrenLog's sync thread).
///
/// Snapshots are files of their own (`snapshots/GROUP-INDEX.snap`, written atomically before
/// the marker that names them), so a segment is needed only for the entries in it: once every
/// group that has entries in a segment has a snapshot beyond them, the segment is deleted. Each
/// new segment starts with every group's hard state and snapshot marker, so older segments are
/// never needed for those.
///
/// Recovery reads the segments in order; a torn write at the end of the last one is cut off,
/// damage anywhere else stops the node with the file and offset (`warren repair` cuts the log
/// there; in a cluster the peers send what was lost).
public final class RaftWAL: @unchecked Sendable {  // confined to its loop; the sync thread only hops back to it
    /// What recovery found for one group.
    public struct GroupState: Sendable {
        public var hardState = HardState()
        public var snapshot: Snapshot?
        public var entries: [Entry] = []
        /// The newest snapshot marker whose file is missing, if newer than `snapshot`: an
        /// older marker's file is deleted once a newer one is durable, so only the newest one
        /// must have its file (checked when the replay is done).
        var missingSnapshot: (index: LogIndex, error: String)?
    }

    enum RecordType: UInt8 {
        case hardState = 1
        case entries = 2
        case snapshot = 3
        case groupRemoved = 4
    }

    static let magic: [UInt8] = Array("WRNWAL01".utf8)
    static let maxPayload = 700 * 1024 * 1024

    public let directory: String
    let segmentsDirectory: String
    let snapshotsDirectory: String
    let logger: Logger
    let segmentBytes: Int
    let execute: @Sendable (@escaping @Sendable () -> Void) -> Void

    /// As recovered at open; `take(_:)` hands a group its state once.
    private var recovered: [GroupID: GroupState] = [:]
    /// The latest hard state and snapshot marker per group (rewritten at each segment roll).
    private var hardStates: [GroupID: HardState] = [:]
    private var snapshots: [GroupID: (index: LogIndex, term: Term, membership: Membership)] = [:]
    /// Snapshot markers known to be on disk: only these let older snapshot files and segments
    /// go (a crash before a marker's fsync must still find what the previous marker names).
    private var durableSnapshots: [GroupID: LogIndex] = [:]
    /// Markers appended but not yet synced, with the log position after each.
    private var markersInFlight: [(group: GroupID, index: LogIndex, position: UInt64)] = []

    final class Segment {
        let file: SegmentFile
        /// The highest entry index each group wrote here.
        var maxIndex: [GroupID: LogIndex] = [:]
        init(file: SegmentFile) { self.file = file }
    }

    private var segments: [UInt32: Segment] = [:]
    private var current: Segment
    private var pending = ByteBuffer()
    /// Bytes appended (written or pending) and bytes known durable, over the log's life.
    private(set) var appendedPosition: UInt64 = 0
    private(set) var durablePosition: UInt64 = 0
    private var writtenPosition: UInt64 = 0
    private var worker: SyncWorker!
    private var syncInFlight = false
    private var waiters: [(position: UInt64, done: () -> Void)] = []
    private var dirtyFDs: Set<Int32> = []
    private var newSegmentSinceSync = false
    private var pendingSnapshotWrites = 0
    private var failed: StoreError?
    /// Called when a write or fsync fails: nothing more can be promised (crash-only).
    public var onFatal: ((StoreError) -> Void)?

    /// What recovery cut off the end of the log (a write a crash interrupted), in bytes.
    public private(set) var tornTailBytes = 0

    public init(
        directory: String, segmentBytes: Int = 64 * 1024 * 1024, logger: Logger,
        execute: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void
    ) throws(StoreError) {
        self.directory = directory
        self.segmentsDirectory = (directory as NSString).appendingPathComponent("segments")
        self.snapshotsDirectory = (directory as NSString).appendingPathComponent("snapshots")
        self.logger = logger
        self.segmentBytes = segmentBytes
        self.execute = execute
        for d in [directory, segmentsDirectory, snapshotsDirectory] {
            do {
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            } catch {
                throw StoreError("cannot create '\(d)': \(error)")
            }
        }
        let numbers = SegmentFile.list(segmentsDirectory)
        let snapshotsDirectory = self.snapshotsDirectory
        let segmentsDirectory = self.segmentsDirectory
        var states: [GroupID: GroupState] = [:]
        var segs: [UInt32: Segment] = [:]
        for (i, n) in numbers.enumerated() {
            let isLast = i == numbers.count - 1
            let file = try SegmentFile.open(directory: segmentsDirectory, number: n, writable: isLast, magic: Self.magic)
            let segment = Segment(file: file)
            let result = try LogScanner.scan(
                file, isLast: isLast, maxPayload: Self.maxPayload, isKnown: { RecordType(rawValue: $0) != nil },
                hint: Self.repairHint(directory)
            ) { (raw, offset) throws(StoreError) in
                try Self.replay(raw, into: &states, segment: segment, snapshotsDirectory: snapshotsDirectory, at: file.path, offset: offset)
            }
            if result.tornTailBytes > 0 { tornTailBytes = result.tornTailBytes }
            segs[n] = segment
        }
        // Only the newest marker of a group needs its file.
        for (_, st) in states.sorted(by: { $0.key < $1.key }) {
            if let missing = st.missingSnapshot, missing.index > (st.snapshot?.index ?? 0) { throw StoreError(missing.error) }
        }
        if let last = numbers.last, let segment = segs[last] {
            current = segment
        } else {
            current = Segment(file: try SegmentFile.create(directory: segmentsDirectory, number: 1, magic: Self.magic))
            segs[1] = current
            newSegmentSinceSync = true
        }
        // Entries that do not continue from the group's snapshot belong to a snapshot install
        // the crash interrupted (their marker never made it): that Ready was never answered,
        // so they go, and the leader sends them again.
        for (g, var st) in states {
            let base = (st.snapshot?.index ?? 0) + 1
            if let first = st.entries.first, first.index != base {
                logger.warning(
                    "raft log: entries of an unfinished snapshot install dropped",
                    metadata: ["group": "\(g)", "first": "\(first.index)", "expected": "\(base)"])
                st.entries.removeAll()
                st.hardState.commit = min(st.hardState.commit, base - 1)
                states[g] = st
            }
        }
        segments = segs
        recovered = states
        for (g, s) in states {
            hardStates[g] = s.hardState
            if let snap = s.snapshot {
                snapshots[g] = (snap.index, snap.term, snap.membership)
                durableSnapshots[g] = snap.index
            }
        }
        appendedPosition = UInt64(current.file.size)
        writtenPosition = appendedPosition
        durablePosition = appendedPosition
        if tornTailBytes > 0 {
            logger.warning("raft log: cut a torn write off the end of the log", metadata: ["bytes": "\(tornTailBytes)"])
        }
        worker = SyncWorker { [weak self] job, error in
            guard let wal = self else { return }
            execute { wal.finished(job, error) }
        }
        logger.info("raft log opened", metadata: ["directory": "\(directory)", "segments": "\(segs.count)", "groups": "\(states.count)"])
    }

    static func repairHint(_ directory: String) -> String {
        "run `warren repair --data-dir \((directory as NSString).deletingLastPathComponent)` to cut the Raft log at the damage (in a cluster the other members send what was lost; a single node loses the definition changes after it), or restore the data directory from a backup"
    }

    deinit { worker?.stop() }

    /// The groups recovery found.
    public var groups: [GroupID] { Array(recovered.keys).sorted() }

    /// A group's state as recovered (empty for a new group).
    public func state(of group: GroupID) -> GroupState {
        recovered[group] ?? GroupState()
    }

    // MARK: writing

    /// Appends what a Ready of `group` says must be persisted. Durable once `sync` calls back.
    public func save(_ group: GroupID, hardState: HardState?, entries: [Entry], snapshot: Snapshot?) {
        if let snapshot { saveSnapshot(group, snapshot) }
        if !entries.isEmpty {
            append(.entries) { b in
                b.writeInteger(group)
                b.writeInteger(UInt32(entries.count))
                for e in entries { Self.write(e, into: &b) }
            }
            current.maxIndex[group] = max(current.maxIndex[group] ?? 0, entries.last!.index)
        }
        if let hs = hardState, hs != hardStates[group] {
            hardStates[group] = hs
            appendHardState(group, hs)
        }
        if pending.readableBytes > 1 << 20 { flush() }
    }

    /// A snapshot the host took (after `RaftNode.compact`) or received: its file is written
    /// first (by the sync thread), then its marker; entries up to it are no longer needed.
    public func saveSnapshot(_ group: GroupID, _ snapshot: Snapshot) {
        guard worker != nil else { return }  // closed: the node is stopping
        let path = Self.snapshotPath(snapshotsDirectory, group, snapshot.index)
        let data = Data(snapshot.data)
        pendingSnapshotWrites += 1
        worker.enqueue(.write(path: path, contents: { data }, fds: [], directories: [], position: 0, tag: Int(truncatingIfNeeded: group)))
        // The marker follows the file: appended when the file is on disk (finished(_:_:)).
        snapshotMarkersWaiting.append((group, snapshot.index, snapshot.term, snapshot.membership))
    }

    private var snapshotMarkersWaiting: [(GroupID, LogIndex, Term, Membership)] = []

    /// The group is gone from this node (left the cluster, queue deleted).
    public func remove(_ group: GroupID) {
        append(.groupRemoved) { $0.writeInteger(group) }
        hardStates[group] = nil
        snapshots[group] = nil
        durableSnapshots[group] = nil
        for s in segments.values { s.maxIndex[group] = nil }
    }

    /// Writes what was appended and calls `done` (on the loop) once all of it is on disk,
    /// snapshots saved before it and their markers included.
    public func sync(_ done: @escaping () -> Void) {
        flush()
        if pendingSnapshotWrites > 0 {
            waitingForSnapshots.append(done)
            return
        }
        waiters.append((appendedPosition, done))
        startSync()
    }

    /// `sync` callers that wait for snapshot files before their position is known.
    private var waitingForSnapshots: [() -> Void] = []

    private func append(_ type: RecordType, payload: (inout ByteBuffer) -> Void) {
        let n = LogRecord.write(type: type.rawValue, into: &pending, payload: payload)
        appendedPosition += UInt64(n)
    }

    private func appendHardState(_ group: GroupID, _ hs: HardState) {
        append(.hardState) { b in
            b.writeInteger(group)
            b.writeInteger(hs.term)
            b.writeInteger(hs.vote)
            b.writeInteger(hs.commit)
        }
    }

    private func appendSnapshotMarker(_ group: GroupID, _ index: LogIndex, _ term: Term, _ membership: Membership) {
        append(.snapshot) { b in
            b.writeInteger(group)
            b.writeInteger(index)
            b.writeInteger(term)
            Self.write(membership, into: &b)
        }
    }

    /// Writes the pending records into the current segment (the page cache); rolls to a new
    /// segment past the size limit.
    private func flush() {
        guard failed == nil, pending.readableBytes > 0 else { return }
        do throws(StoreError) {
            try current.file.append(pending)
            dirtyFDs.insert(current.file.fd)
            writtenPosition = appendedPosition
            pending.clear()
            if current.file.size >= segmentBytes { try roll() }
        } catch {
            fail(error)
        }
    }

    /// A new segment that starts with every group's hard state and snapshot marker, so the
    /// older ones are needed for their entries only.
    private func roll() throws(StoreError) {
        let next = (segments.keys.max() ?? 0) + 1
        let file = try SegmentFile.create(directory: segmentsDirectory, number: next, magic: Self.magic)
        current = Segment(file: file)
        segments[next] = current
        newSegmentSinceSync = true
        appendedPosition = UInt64(file.size)
        writtenPosition = appendedPosition
        for (g, hs) in hardStates.sorted(by: { $0.key < $1.key }) { appendHardState(g, hs) }
        for (g, s) in snapshots.sorted(by: { $0.key < $1.key }) { appendSnapshotMarker(g, s.index, s.term, s.membership) }
        try current.file.append(pending)
        dirtyFDs.insert(current.file.fd)
        writtenPosition = appendedPosition
        pending.clear()
        retireSegments()
    }

    private var syncStarted = NIODeadline.now()
    private var lastSlowSyncLog = NIODeadline.uptimeNanoseconds(0)

    private func startSync() {
        guard failed == nil, worker != nil, !syncInFlight, !waiters.isEmpty else { return }
        if durablePosition >= appendedPosition {
            let ready = waiters
            waiters.removeAll()
            for w in ready { w.done() }
            return
        }
        guard writtenPosition > durablePosition || newSegmentSinceSync else { return }
        syncInFlight = true
        syncStarted = .now()
        let fds = dirtyFDs
        syncingFDs = fds
        dirtyFDs = [current.file.fd]
        worker.requestSync(upTo: writtenPosition, fds: fds, directories: newSegmentSinceSync ? [segmentsDirectory] : [])
        newSegmentSinceSync = false
    }

    private func finished(_ job: SyncWorker.Job, _ error: StoreError?) {
        // A job that was running when the log closed answers after it (stop() waits for the
        // job, its answer hops to the loop): nothing may start now. (Starting the next sync
        // here crashed nodes at a graceful stop under load: `warren-cluster run clock-jump`.)
        guard worker != nil else { return }
        if let error {
            fail(error)
            return
        }
        switch job {
        case .sync(let position, _, _):
            syncInFlight = false
            syncingFDs = []
            // Every group's round waits for this: a slow disk shows as elections.
            let took = NIODeadline.now() - syncStarted
            if took > .milliseconds(300), NIODeadline.now() - lastSlowSyncLog > .seconds(10) {
                lastSlowSyncLog = .now()
                logger.warning("raft log: an fsync took \(took.nanoseconds / 1_000_000) ms; Raft rounds wait for it (a slow or busy disk delays commits and may cause elections)")
            }
            durablePosition = max(durablePosition, position)
            var retire = false
            while let m = markersInFlight.first, m.position <= durablePosition {
                markersInFlight.removeFirst()
                durableSnapshots[m.group] = max(durableSnapshots[m.group] ?? 0, m.index)
                removeOldSnapshots(m.group, keeping: m.index)
                retire = true
            }
            if retire { retireSegments() }
        case .write:
            // A snapshot file is on disk: its marker goes into the log, and whoever waited for
            // it waits for the marker's fsync now.
            pendingSnapshotWrites -= 1
            if !snapshotMarkersWaiting.isEmpty {
                let (g, index, term, membership) = snapshotMarkersWaiting.removeFirst()
                snapshots[g] = (index, term, membership)
                appendSnapshotMarker(g, index, term, membership)
                markersInFlight.append((g, index, appendedPosition))
                flush()
            }
            if pendingSnapshotWrites == 0 {
                for done in waitingForSnapshots { waiters.append((appendedPosition, done)) }
                waitingForSnapshots.removeAll()
            }
        }
        var ready: [() -> Void] = []
        while let w = waiters.first, w.position <= durablePosition {
            waiters.removeFirst()
            ready.append(w.done)
        }
        for r in ready { r() }
        startSync()
    }

    private func fail(_ error: StoreError) {
        guard failed == nil else { return }
        failed = error
        logger.critical("raft log: \(error.description); nothing more can be made durable")
        onFatal?(error)
    }

    /// Deletes sealed segments whose entries every group has in a snapshot.
    /// Files the running sync flushes: they stay open until it is done.
    private var syncingFDs: Set<Int32> = []

    /// Deletes segments nothing needs any more: no group has entries there past its durable
    /// snapshot. A segment written since the last sync (or being synced now) waits for a later
    /// round: closing it would leave a sync flushing a closed file (fatal: EBADF), which is
    /// what a removed group's segments did before (every node of a cluster stopped at once
    /// when queues were deleted under load).
    func retireSegments() {
        for (n, s) in segments where s !== current {
            let needed = s.maxIndex.contains { g, maxIndex in (durableSnapshots[g] ?? 0) < maxIndex && hardStates[g] != nil }
            guard !needed, !dirtyFDs.contains(s.file.fd), !syncingFDs.contains(s.file.fd) else { continue }
            s.file.close()
            unlink(s.file.path)
            segments[n] = nil
            logger.debug("raft log: segment deleted", metadata: ["segment": "\(SegmentFile.fileName(n))"])
        }
    }

    private func removeOldSnapshots(_ group: GroupID, keeping index: LogIndex) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: snapshotsDirectory)) ?? []
        for name in names {
            guard let (g, i) = Self.parseSnapshotName(name), g == group, i < index else { continue }
            unlink((snapshotsDirectory as NSString).appendingPathComponent(name))
        }
    }

    /// Writes everything and stops the sync thread (node shutdown).
    public func close() {
        flush()
        if failed == nil {
            for s in segments.values where dirtyFDs.contains(s.file.fd) { try? s.file.sync() }
        }
        worker?.stop()
        worker = nil
    }

    // MARK: encoding

    static func snapshotPath(_ dir: String, _ group: GroupID, _ index: LogIndex) -> String {
        (dir as NSString).appendingPathComponent("\(group)-\(index).snap")
    }

    static func parseSnapshotName(_ name: String) -> (GroupID, LogIndex)? {
        guard name.hasSuffix(".snap") else { return nil }
        let parts = name.dropLast(5).split(separator: "-")
        guard parts.count == 2, let g = GroupID(parts[0]), let i = LogIndex(parts[1]) else { return nil }
        return (g, i)
    }

    static func write(_ e: Entry, into b: inout ByteBuffer) {
        b.writeInteger(e.term)
        b.writeInteger(e.index)
        switch e.payload {
        case .normal(let data):
            b.writeInteger(UInt8(0))
            b.writeInteger(UInt32(data.count))
            b.writeBytes(data)
        case .noop:
            b.writeInteger(UInt8(1))
        case .config(let change):
            b.writeInteger(UInt8(2))
            write(change, into: &b)
        }
    }

    static func readEntry(_ b: inout ByteBuffer) -> Entry? {
        guard let term = b.readInteger(as: UInt64.self), let index = b.readInteger(as: UInt64.self),
            let kind = b.readInteger(as: UInt8.self)
        else { return nil }
        switch kind {
        case 0:
            guard let n = b.readInteger(as: UInt32.self), let data = b.readBytes(length: Int(n)) else { return nil }
            return Entry(term: term, index: index, payload: .normal(data))
        case 1: return Entry(term: term, index: index, payload: .noop)
        case 2:
            guard let c = readConfChange(&b) else { return nil }
            return Entry(term: term, index: index, payload: .config(c))
        default: return nil
        }
    }

    static func write(_ c: ConfChange, into b: inout ByteBuffer) {
        switch c {
        case .bootstrap(let voters):
            b.writeInteger(UInt8(0))
            b.writeInteger(UInt32(voters.count))
            for v in voters.sorted() { b.writeInteger(v) }
        case .addVoter(let id):
            b.writeInteger(UInt8(1))
            b.writeInteger(id)
        case .addLearner(let id):
            b.writeInteger(UInt8(2))
            b.writeInteger(id)
        case .remove(let id):
            b.writeInteger(UInt8(3))
            b.writeInteger(id)
        }
    }

    static func readConfChange(_ b: inout ByteBuffer) -> ConfChange? {
        guard let kind = b.readInteger(as: UInt8.self) else { return nil }
        if kind == 0 {
            guard let n = b.readInteger(as: UInt32.self), n < 100_000 else { return nil }
            var voters: Set<NodeID> = []
            for _ in 0..<n {
                guard let v = b.readInteger(as: UInt64.self) else { return nil }
                voters.insert(v)
            }
            return .bootstrap(voters: voters)
        }
        guard let id = b.readInteger(as: UInt64.self) else { return nil }
        switch kind {
        case 1: return .addVoter(id)
        case 2: return .addLearner(id)
        case 3: return .remove(id)
        default: return nil
        }
    }

    static func write(_ m: Membership, into b: inout ByteBuffer) {
        b.writeInteger(UInt32(m.voters.count))
        for v in m.voters.sorted() { b.writeInteger(v) }
        b.writeInteger(UInt32(m.learners.count))
        for v in m.learners.sorted() { b.writeInteger(v) }
    }

    static func readMembership(_ b: inout ByteBuffer) -> Membership? {
        var m = Membership()
        guard let nv = b.readInteger(as: UInt32.self), nv < 100_000 else { return nil }
        for _ in 0..<nv {
            guard let v = b.readInteger(as: UInt64.self) else { return nil }
            m.voters.insert(v)
        }
        guard let nl = b.readInteger(as: UInt32.self), nl < 100_000 else { return nil }
        for _ in 0..<nl {
            guard let v = b.readInteger(as: UInt64.self) else { return nil }
            m.learners.insert(v)
        }
        return m
    }

    // MARK: recovery

    private static func replay(
        _ raw: LogRecord.Raw, into states: inout [GroupID: GroupState], segment: Segment, snapshotsDirectory: String, at path: String,
        offset: Int
    ) throws(StoreError) {
        var b = raw.payload
        func bad() -> StoreError { StoreError("raft log: record at \(path):\(offset) does not decode") }
        guard let type = RecordType(rawValue: raw.type), let group = b.readInteger(as: UInt64.self) else { throw bad() }
        switch type {
        case .hardState:
            guard let term = b.readInteger(as: UInt64.self), let vote = b.readInteger(as: UInt64.self),
                let commit = b.readInteger(as: UInt64.self)
            else { throw bad() }
            states[group, default: GroupState()].hardState = HardState(term: term, vote: vote, commit: commit)
        case .entries:
            guard let n = b.readInteger(as: UInt32.self) else { throw bad() }
            var new: [Entry] = []
            new.reserveCapacity(Int(n))
            for _ in 0..<n {
                guard let e = readEntry(&b) else { throw bad() }
                new.append(e)
            }
            guard let first = new.first else { return }
            // Taken out of the dictionary while it changes: changing a copy would copy the
            // group's whole entry array at every record (a restart after 16,000 one-entry
            // records took seconds in a release build and over a minute in a debug one).
            var s = states.removeValue(forKey: group) ?? GroupState()
            defer { states[group] = s }
            let base = (s.snapshot?.index ?? 0) + 1
            let kept = new.drop(while: { $0.index < base })
            if let firstKept = kept.first {
                // Later entries at an index replace what was there (a new leader overwrote them).
                // The entries held are consecutive, so the position is found by arithmetic.
                if let head = s.entries.first, firstKept.index <= s.entries[s.entries.count - 1].index {
                    s.entries.removeSubrange(Int(firstKept.index >= head.index ? firstKept.index - head.index : 0)...)
                }
                if let last = s.entries.last, last.index + 1 != firstKept.index {
                    // Entries after a snapshot that was being installed: its marker follows them
                    // (it is written once the snapshot's file is on disk).
                    s.entries.removeAll()
                }
                s.entries.append(contentsOf: kept)
            }
            segment.maxIndex[group] = max(segment.maxIndex[group] ?? 0, new.last?.index ?? first.index)
        case .snapshot:
            guard let index = b.readInteger(as: UInt64.self), let term = b.readInteger(as: UInt64.self), let membership = readMembership(&b)
            else { throw bad() }
            let file = snapshotPath(snapshotsDirectory, group, index)
            var s = states.removeValue(forKey: group) ?? GroupState()  // changed in place, as above
            defer { states[group] = s }
            // Each segment repeats every marker: only a newer one is worth reading the file for.
            if let held = s.snapshot, index <= held.index { return }
            guard let data = FileManager.default.contents(atPath: file) else {
                if index > (s.snapshot?.index ?? 0) {
                    s.missingSnapshot = (
                        index,
                        "raft log: the snapshot file '\(file)' named at \(path):\(offset) is missing. \(repairHint((snapshotsDirectory as NSString).deletingLastPathComponent))"
                    )
                }
                return
            }
            if let missing = s.missingSnapshot, missing.index <= index { s.missingSnapshot = nil }
            if index > (s.snapshot?.index ?? 0) {
                s.snapshot = Snapshot(index: index, term: term, membership: membership, data: Array(data))
                s.entries.removeAll { $0.index <= index }
                s.hardState.commit = max(s.hardState.commit, index)
            }
        case .groupRemoved:
            states[group] = nil
        }
    }

    /// Whether this is a fresh log (nothing recovered).
    public var isFresh: Bool { recovered.isEmpty }

    /// Test hook: the sync thread stops without a final sync (a crash, for what was written).
    func crashForTests() {
        flush()
        worker.stop()
        worker = nil
    }
}
