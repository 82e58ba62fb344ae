import Foundation
import NIOCore
public import WarrenLog

#if canImport(Glibc)
    import Glibc
#endif

/// `warren repair`: makes a store that refuses to start startable again, dropping what cannot be
/// read, and says what was lost. Run it on a stopped node (it takes the data directory's lock).
///
/// - A damaged span inside a segment is overwritten with a padding record (the records after
///   it keep their offsets, which the manifest's checkpoint refers to); the messages and changes
///   in the span are lost.
/// - Damage running to the end of a segment is cut off.
/// - A missing segment is marked retired in the manifest; whatever it held is lost.
/// - An unreadable manifest is rebuilt from the segments present; the metadata snapshot it held
///   is lost (re-import the definitions file), and changes still in the log are replayed.
public enum StoreRepair {
    public struct Report: Sendable {
        public var actions: [String] = []
        public var bytesDropped = 0
        public var isClean: Bool { actions.isEmpty }
    }

    /// Repairs the store in `directory` (the data directory's `store` folder).
    public static func repair(directory: String) throws(StoreError) -> Report {
        var report = Report()
        let segmentsDirectory = (directory as NSString).appendingPathComponent("segments")
        let manifestPath = (directory as NSString).appendingPathComponent("MANIFEST")
        let present = SegmentFile.list(segmentsDirectory)
        var manifest: Manifest
        if let data = FileManager.default.contents(atPath: manifestPath), let m = try? Manifest.decode(data) {
            manifest = m
        } else {
            guard let lowest = present.first else {
                report.actions.append("no manifest and no segments: the store is empty and will be created afresh")
                try? FileManager.default.removeItem(atPath: manifestPath)
                return report
            }
            manifest = Manifest(lowestSegment: lowest, retired: [], checkpoint: 0, nextQueueID: 1, queues: [], metadata: nil)
            report.actions.append(
                "the manifest was missing or unreadable: rebuilt from the segments; its metadata snapshot is lost, so import your definitions again; messages whose removal it recorded may come back"
            )
        }
        var manifestChanged = !report.actions.isEmpty
        let presentSet = Set(present)
        if let highest = present.last, manifest.lowestSegment <= highest {
            for n in manifest.lowestSegment...highest where !manifest.isRetired(n) && !presentSet.contains(n) {
                manifest.retired.insert(n)
                manifestChanged = true
                report.actions.append("segment \(SegmentFile.fileName(n)) was missing: marked retired; the messages in it are lost")
            }
        }
        let live = present.filter { !manifest.isRetired($0) }
        for n in live { try repairSegment(n, directory: segmentsDirectory, report: &report) }
        if manifestChanged, let e = SyncWorker.writeAtomically(manifest.encoded(), to: manifestPath) { throw e }
        return report
    }

    private static func repairSegment(_ n: UInt32, directory: String, report: inout Report) throws(StoreError) {
        let file = try SegmentFile.open(directory: directory, number: n, writable: true)
        defer { file.close() }
        let data = try file.read(at: 0, length: file.size)
        var offset = SegmentFile.headerSize
        while offset < file.size {
            var b = data
            b.moveReaderIndex(forwardBy: offset)
            if case .record(let r) = RecordFormat.parse(b) {
                offset += r.size
                continue
            }
            // Damage at `offset`: find where valid records resume.
            var rest = data
            rest.moveReaderIndex(forwardBy: offset)
            guard let next = Recovery.firstValidRecord(in: rest, from: RecordFormat.headerSize) else {
                try file.truncate(to: offset)
                try file.sync()
                report.bytesDropped += data.readableBytes - offset
                report.actions.append("segment \(SegmentFile.fileName(n)): cut \(data.readableBytes - offset) damaged bytes off its end at offset \(offset)")
                return
            }
            var padding = ByteBuffer()
            _ = RecordFormat.writePadding(size: next, into: &padding)
            let written = padding.withUnsafeReadableBytes { raw in pwrite(file.fd, raw.baseAddress!, raw.count, off_t(offset)) }
            guard written == next else { throw .io("cannot write segment", file.path) }
            try file.sync()
            report.bytesDropped += next
            report.actions.append("segment \(SegmentFile.fileName(n)): \(next) damaged bytes at offset \(offset) replaced by padding; the records in them are lost")
            offset += next
        }
    }
}
