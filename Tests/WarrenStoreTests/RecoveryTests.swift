import Foundation
import NIOCore
import Testing
import WarrenCore

@testable import WarrenStore
import WarrenLog

#if canImport(Glibc)
    import Glibc
#endif

/// Ten persisted messages m0...m9 in queue 1, written and left as a crash leaves them.
func tenMessages(_ configuration: FileMessageStore.Configuration = FileMessageStore.Configuration()) throws -> StoreFixture {
    let f = try StoreFixture(configuration: configuration)
    let q = f.store.openQueue(id: nil, durable: true)
    for i in 0..<10 { f.store.put(message("m\(i)"), queue: q, seq: UInt64(i)) }
    f.sync()
    f.crash()
    return f
}

func recovered(_ f: StoreFixture, queue: StoreQueueID = 1) -> [String] {
    guard let q = f.store.recoveredQueues.first(where: { $0.id == queue }) else { return [] }
    return f.store.drain(f.store.openQueue(id: q.id, durable: true))
}

func lastSegmentPath(_ f: StoreFixture) -> String {
    SegmentFile.path(f.segmentsDirectory, SegmentFile.list(f.segmentsDirectory).last!)
}

func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
}

@Suite("Store recovery")
struct RecoveryTests {
    @Test("persisted messages survive a restart; removed ones do not; delivered ones come back redelivered")
    func restart() throws {
        let f = try StoreFixture()
        let q = f.store.openQueue(id: nil, durable: true)
        let transient = f.store.openQueue(id: nil, durable: false)
        for i in 0..<5 { f.store.put(message("m\(i)"), queue: q, seq: UInt64(i), page: false) }
        f.store.put(message("paged only", persistent: false), queue: transient, seq: 0, persist: false, page: true)
        f.store.removed(q, seq: 1)
        f.store.delivered(q, seq: 0)
        f.store.close()
        let g = try f.reopened()
        #expect(!g.store.isFresh)
        #expect(g.store.recoveredQueues.map(\.id) == [q.id])
        #expect(g.store.recoveredQueues.first?.pagedCounts[0] == 4)
        let batch = g.store.pageIn(g.store.openQueue(id: q.id, durable: true), level: 0, max: 10)
        #expect(batch.map { String(buffer: $0.message.body) } == ["m0", "m2", "m3", "m4"])
        #expect(batch.map(\.redelivered) == [true, false, false, false])
        #expect(batch.allSatisfy { $0.stored })
        #expect(g.store.recoveredQueues.first?.nextSeq == 5, "numbering continues after the highest number used")
    }

    @Test("after a crash everything written is recovered, with the metadata journal")
    func crash() throws {
        let f = try StoreFixture()
        let q = f.store.openQueue(id: nil, durable: true)
        f.store.appendMetadata(.object(["put": .object(["vhosts": .array([.object(["name": .string("v")])])])]))
        for i in 0..<3 { f.store.put(message("m\(i)"), queue: q, seq: UInt64(i)) }
        f.store.removed(q, seq: 2)
        f.crash()
        let g = try f.reopened()
        #expect(recovered(g) == ["m0", "m1"])
        #expect(g.store.recoveredMetadata.changes.count == 1)
    }

    @Test("a record cut off at the end (torn write) is dropped and logged; the rest is intact")
    func truncatedTail() throws {
        let f = try tenMessages()
        let path = lastSegmentPath(f)
        let size = fileSize(path)
        #expect(truncate(path, off_t(size - 3)) == 0)
        let g = try f.reopened()
        #expect(g.store.recoveryReport.tornTailBytes > 0 && g.store.recoveryReport.tornTailBytes < 100)
        #expect(recovered(g) == (0..<9).map { "m\($0)" })
    }

    @Test("a zeroed tail (preallocated or torn) is cut off")
    func zeroedTail() throws {
        let f = try tenMessages()
        let h = FileHandle(forWritingAtPath: lastSegmentPath(f))!
        h.seekToEndOfFile()
        h.write(Data(repeating: 0, count: 4096))
        h.closeFile()
        let g = try f.reopened()
        #expect(g.store.recoveryReport.tornTailBytes == 4096)
        #expect(recovered(g) == (0..<10).map { "m\($0)" })
    }

    @Test("a flipped bit mid-file stops the start with a way out; repair drops that record only")
    func flippedBit() throws {
        let f = try tenMessages()
        let path = lastSegmentPath(f)
        // Flip a byte inside the fourth record's body.
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var offsets: [Int] = []
        var o = SegmentFile.headerSize
        while o < data.count {
            offsets.append(o)
            let length = Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3])
            o += RecordFormat.headerSize + length
        }
        var damaged = data
        damaged[offsets[3] + 30] ^= 0x01
        try damaged.write(to: URL(fileURLWithPath: path))
        do {
            _ = try f.reopened()
            Issue.record("a corrupt store must not start")
        } catch let error as StoreError {
            #expect(error.description.contains("is corrupt at offset \(offsets[3])"))
            #expect(error.description.contains("warren repair"))
            #expect(error.description.contains("not a torn write"))
        }
        let report = try StoreRepair.repair(directory: f.directory)
        #expect(report.actions.count == 1 && report.actions[0].contains("replaced by padding"))
        let g = try f.reopened()
        #expect(recovered(g) == ["m0", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "m9"])
        let again = try StoreRepair.repair(directory: f.directory)
        #expect(again.isClean)
    }

    @Test("a missing segment stops the start; repair retires it and keeps the others")
    func missingSegment() throws {
        var small = FileMessageStore.Configuration()
        small.segmentSize = 100  // one message per segment
        let f = try tenMessages(small)
        let numbers = SegmentFile.list(f.segmentsDirectory)
        #expect(numbers.count == 10)
        let gone = numbers[2]
        unlink(SegmentFile.path(f.segmentsDirectory, gone))
        do {
            _ = try f.reopened(configuration: small)
            Issue.record("a store with a missing segment must not start")
        } catch let error as StoreError {
            #expect(error.description.contains("segment \(SegmentFile.fileName(gone)) is missing"))
        }
        let report = try StoreRepair.repair(directory: f.directory)
        #expect(report.actions.contains { $0.contains("was missing: marked retired") })
        let g = try f.reopened(configuration: small)
        #expect(recovered(g) == ["m0", "m1", "m3", "m4", "m5", "m6", "m7", "m8", "m9"])
    }

    @Test("a damaged manifest stops the start; repair rebuilds it from the segments")
    func damagedManifest() throws {
        let f = try tenMessages()
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: (f.directory as NSString).appendingPathComponent("MANIFEST")))
        do {
            _ = try f.reopened()
            Issue.record("a store without a readable manifest must not start")
        } catch let error as StoreError {
            #expect(error.description.contains("MANIFEST"))
        }
        let report = try StoreRepair.repair(directory: f.directory)
        #expect(report.actions.first?.contains("rebuilt from the segments") == true)
        let g = try f.reopened()
        #expect(recovered(g) == (0..<10).map { "m\($0)" })
    }
}
