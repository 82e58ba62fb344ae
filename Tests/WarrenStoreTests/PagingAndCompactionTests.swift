import Foundation
import NIOCore
import Testing
import WarrenCore

@testable import WarrenStore
import WarrenLog

@Suite("Paging, checkpoints and compaction")
struct PagingAndCompactionTests {
    @Test("a paged backlog comes back in order, level by level, and across a restart")
    func paging() throws {
        let f = try StoreFixture()
        let q = f.store.openQueue(id: nil, durable: true)
        for i in 0..<3000 {
            let level: UInt64 = i % 3 == 0 ? 2 : 0
            f.store.put(message("m\(i)", persistent: i % 2 == 0), queue: q, seq: level << 56 | UInt64(i), persist: i % 2 == 0)
        }
        let first = f.store.pageIn(q, level: 2, max: 5)
        #expect(first.map { String(buffer: $0.message.body) } == ["m0", "m3", "m6", "m9", "m12"])
        #expect(first.map { $0.seq.priorityLevel } == [2, 2, 2, 2, 2])
        let level0 = f.store.drain(q, level: 0)
        let expected = (0..<3000).filter { $0 % 3 != 0 }.map { "m\($0)" }
        #expect(level0.count == expected.count && level0 == expected)
        f.store.close()
        // After a restart only the persisted messages not yet paged in... all of level 0 was
        // paged in but none removed, so the persisted ones of both levels are back.
        let g = try f.reopened()
        let r = try #require(g.store.recoveredQueues.first)
        #expect(r.pagedCounts[0] == 1000 && r.pagedCounts[2] == 500)
        let back = g.store.openQueue(id: r.id, durable: true)
        #expect(g.store.drain(back, level: 2).count == 500)
        let persisted = (0..<3000).filter { $0 % 3 != 0 && $0 % 2 == 0 }.map { "m\($0)" }
        let level0Back = g.store.drain(back, level: 0)
        #expect(level0Back.count == persisted.count && level0Back == persisted, "only the persisted messages, in order")
    }

    @Test("purging paged messages removes them for good")
    func dropPaged() throws {
        let f = try StoreFixture()
        let q = f.store.openQueue(id: nil, durable: true)
        for i in 0..<100 { f.store.put(message("m\(i)"), queue: q, seq: UInt64(i)) }
        f.store.dropPaged(q)
        #expect(f.store.pageIn(q, level: 0, max: 10).isEmpty)
        f.store.put(message("after"), queue: q, seq: 100)
        f.store.close()
        let g = try f.reopened()
        #expect(recovered(g) == ["after"])
    }

    @Test("segments whose messages all left are deleted at the next checkpoint")
    func deadSegments() throws {
        var config = FileMessageStore.Configuration()
        config.segmentSize = 64 * 1024
        let f = try StoreFixture(configuration: config)
        let q = f.store.openQueue(id: nil, durable: true)
        let body = String(repeating: "x", count: 1000)
        for i in 0..<500 { f.store.put(message(body), queue: q, seq: UInt64(i), page: false) }
        f.sync()
        let before = SegmentFile.list(f.segmentsDirectory).count
        #expect(before >= 7)
        for i in 0..<490 { f.store.removed(q, seq: UInt64(i)) }
        f.store.flushWrites()
        f.store.tick()
        f.sync()
        let after = SegmentFile.list(f.segmentsDirectory).count
        #expect(after <= 2, "only the segments holding the last ten remain (\(before) -> \(after))")
        f.crash()
        let g = try f.reopened(configuration: config)
        #expect(g.store.recoveredQueues.first?.pagedCounts[0] == 10)
    }

    @Test("compaction moves the live messages out of mostly-dead segments; a crash halfway changes nothing")
    func compaction() throws {
        var config = FileMessageStore.Configuration()
        config.segmentSize = 256 * 1024
        config.compactionRatio = 0.2
        config.compactionStepBytes = 64 * 1024
        let f = try StoreFixture(configuration: config)
        let slow = f.store.openQueue(id: nil, durable: true)
        let fast = f.store.openQueue(id: nil, durable: true)
        let body = String(repeating: "y", count: 1000)
        // One slow message among every 20 fast ones, across many segments (the case that
        // pins every segment without compaction).
        var slowSeq: UInt64 = 0
        for i in 0..<6000 {
            if i % 20 == 0 {
                f.store.put(message("slow\(slowSeq)"), queue: slow, seq: slowSeq)
                slowSeq += 1
            } else {
                f.store.put(message(body), queue: fast, seq: UInt64(i), page: false)
                f.store.removed(fast, seq: UInt64(i))
            }
        }
        f.sync()
        let segmentsBefore = SegmentFile.list(f.segmentsDirectory).count
        #expect(segmentsBefore >= 20)

        // A crash in the middle of compaction (copies written, no checkpoint retiring their
        // sources), taken as a copy of the directory.
        for _ in 0..<5 { f.store.compactStep() }
        f.store.flushWrites()
        let copyDir = f.directory + "-crash"
        try FileManager.default.copyItem(atPath: f.directory, toPath: copyDir)
        let afterCrash = try StoreFixture(directory: copyDir, configuration: config)
        #expect(recovered(afterCrash, queue: slow.id) == (0..<slowSeq).map { "slow\($0)" }, "no loss, no duplicates")

        // Compaction to the end, then checkpoints retire the emptied segments.
        for _ in 0..<2000 {
            f.store.tick()
            f.sync()
            if f.store.compaction == nil && !f.store.hasRetirableSegments { break }
        }
        let segmentsAfter = SegmentFile.list(f.segmentsDirectory).count
        #expect(segmentsAfter <= 3, "\(segmentsBefore) segments compacted to \(segmentsAfter)")
        #expect(f.store.drain(slow) == (0..<slowSeq).map { "slow\($0)" })
        // Paged in is not removed: after a restart they are all still there.
        f.store.close()
        let g = try f.reopened(configuration: config)
        let back = recovered(g, queue: slow.id)
        #expect(back.count == Int(slowSeq), "\(back.count) of \(slowSeq); duplicates: \(back.count - Set(back).count)")
        let want = (0..<slowSeq).map { "slow\($0)" }
        let firstDiff = zip(back, want).enumerated().first { $0.element.0 != $0.element.1 }.map { $0.offset }
        #expect(firstDiff == nil, "order differs from index \(firstDiff ?? -1): \(back[max(0, (firstDiff ?? 0) - 2)..<min(back.count, (firstDiff ?? 0) + 6)])")
    }
}
