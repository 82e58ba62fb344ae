import Foundation
import NIOCore
public import WarrenLog

/// `warren repair` for the Raft log: cuts it at the first damage (a record that does not check
/// out, or a snapshot marker whose file is gone) and drops every segment after it.
///
/// What is cut is lost to this node. In a cluster the leader sends it again, unless this node's
/// copy was needed for a majority (then a change acknowledged by that majority may be lost:
/// repair one node at a time and let it catch up before the next). On a single node the
/// definition changes after the damage are lost; import the definitions file again.
public enum RaftWALRepair {
    public struct Report: Sendable {
        public var actions: [String] = []
        public var bytesDropped = 0
    }

    /// Repairs the Raft log in `directory` (the data directory's `raft` folder).
    public static func repair(directory: String) throws(StoreError) -> Report {
        var report = Report()
        let segmentsDirectory = (directory as NSString).appendingPathComponent("segments")
        let snapshotsDirectory = (directory as NSString).appendingPathComponent("snapshots")
        let numbers = SegmentFile.list(segmentsDirectory)
        // Older snapshot markers' files are deleted once a newer marker is durable: only each
        // group's newest marker needs its file.
        var newestMarker: [UInt64: (segment: UInt32, offset: Int)] = [:]
        for n in numbers {
            let file = try SegmentFile.open(directory: segmentsDirectory, number: n, writable: false, magic: RaftWAL.magic)
            defer { file.close() }
            let data = try file.read(at: 0, length: file.size)
            var offset = SegmentFile.headerSize
            while offset < file.size {
                var b = data
                b.moveReaderIndex(forwardBy: offset)
                guard case .record(let r) = LogRecord.parse(b, maxPayload: RaftWAL.maxPayload) else { break }
                if r.type == RaftWAL.RecordType.snapshot.rawValue, let group = r.payload.getInteger(at: r.payload.readerIndex, as: UInt64.self) {
                    newestMarker[group] = (n, offset)
                }
                offset += r.size
            }
        }
        for (i, n) in numbers.enumerated() {
            let file = try SegmentFile.open(directory: segmentsDirectory, number: n, writable: true, magic: RaftWAL.magic)
            defer { file.close() }
            let data = try file.read(at: 0, length: file.size)
            var offset = SegmentFile.headerSize
            var damage: String?
            while offset < file.size {
                var b = data
                b.moveReaderIndex(forwardBy: offset)
                guard case .record(let r) = LogRecord.parse(b, maxPayload: RaftWAL.maxPayload), RaftWAL.RecordType(rawValue: r.type) != nil else {
                    damage = "a damaged record"
                    break
                }
                if r.type == RaftWAL.RecordType.snapshot.rawValue {
                    var p = r.payload
                    if let group = p.readInteger(as: UInt64.self), let index = p.readInteger(as: UInt64.self),
                        newestMarker[group].map({ $0.segment == n && $0.offset == offset }) ?? false
                    {
                        let path = RaftWAL.snapshotPath(snapshotsDirectory, group, index)
                        if !FileManager.default.fileExists(atPath: path) {
                            damage = "the snapshot file \((path as NSString).lastPathComponent) it names is missing"
                            break
                        }
                    }
                }
                offset += r.size
            }
            guard let why = damage else { continue }
            let cut = file.size - offset
            try file.truncate(to: offset)
            try file.sync()
            report.bytesDropped += cut
            report.actions.append("raft log segment \(SegmentFile.fileName(n)): cut at offset \(offset) (\(why)); \(cut) bytes dropped")
            for later in numbers[(i + 1)...] {
                let path = SegmentFile.path(segmentsDirectory, later)
                let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                try? FileManager.default.removeItem(atPath: path)
                report.bytesDropped += size ?? 0
                report.actions.append("raft log segment \(SegmentFile.fileName(later)): removed (it followed the damage)")
            }
            report.actions.append(
                "the definition changes after the cut are gone from this node: in a cluster its leader sends them again; on a single node import your definitions again")
            break
        }
        return report
    }
}
