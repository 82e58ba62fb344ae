import Foundation
import Logging
import NIOCore
import NIOPosix
import Raft
import Testing
import WarrenLog

@testable import WarrenCluster

/// A WAL in a temporary directory, driven on an event loop as the node drives it.
final class WALHarness: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var loop: any EventLoop { group.next() }
    let dir = NSTemporaryDirectory() + "warren-wal-\(UUID().uuidString)"
    var segments: String { dir + "/segments" }
    var snapshots: String { dir + "/snapshots" }

    func open() throws -> RaftWAL {
        let loop = self.loop
        return try loop.submit { try RaftWAL(directory: self.dir, segmentBytes: 64 * 1024, logger: Logger(label: "wal-test")) { loop.execute($0) } }.wait()
    }

    /// Saves and waits until it is durable.
    func save(_ wal: RaftWAL, group g: GroupID = 7, hardState: HardState? = nil, entries: [Entry] = [], snapshot: Snapshot? = nil) throws {
        let p = loop.makePromise(of: Void.self)
        loop.execute {
            wal.save(g, hardState: hardState, entries: entries, snapshot: snapshot)
            wal.sync { p.succeed(()) }
        }
        try p.futureResult.wait()
    }

    func close(_ wal: RaftWAL) throws { try loop.submit { wal.close() }.wait() }

    func lastSegment() -> String { SegmentFile.path(segments, SegmentFile.list(segments).last!) }

    deinit {
        try? group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

func entries(_ range: ClosedRange<UInt64>, term: UInt64 = 1) -> [Entry] {
    range.map { Entry(term: term, index: $0, payload: .normal(Array("entry \($0)".utf8))) }
}

@Suite("Raft WAL recovery")
struct RaftWALRecoveryTests {
    @Test("entries, hard state and snapshot come back after a clean close")
    func clean() throws {
        let h = WALHarness()
        let wal = try h.open()
        try h.save(wal, hardState: HardState(term: 3, vote: 2, commit: 5), entries: entries(1...10, term: 3))
        try h.close(wal)
        let again = try h.open()
        let st = again.state(of: 7)
        #expect(st.entries.map(\.index) == Array(1...10))
        #expect(st.hardState == HardState(term: 3, vote: 2, commit: 5))
        #expect(again.tornTailBytes == 0)
        try h.close(again)
    }

    @Test("a truncated tail (a write the crash cut short) is cut off; everything before it stays")
    func truncatedTail() throws {
        let h = WALHarness()
        let wal = try h.open()
        for i in 0..<10 { try h.save(wal, entries: entries(UInt64(i * 10 + 1)...UInt64(i * 10 + 10))) }
        try h.close(wal)
        let path = h.lastSegment()
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        #expect(truncate(path, off_t(size - 7)) == 0)
        let again = try h.open()
        #expect(again.tornTailBytes > 0)
        let got = again.state(of: 7).entries.map(\.index)
        #expect(got == Array(1...90), "the last batch was the torn write; the nine before it are whole")
        try h.close(again)
    }

    @Test("a zeroed tail (preallocated or zero-filled after a crash) is cut off")
    func zeroedTail() throws {
        let h = WALHarness()
        let wal = try h.open()
        try h.save(wal, entries: entries(1...20))
        try h.close(wal)
        let fh = FileHandle(forWritingAtPath: h.lastSegment())!
        fh.seekToEndOfFile()
        fh.write(Data(count: 4096))
        try fh.close()
        let again = try h.open()
        #expect(again.tornTailBytes == 4096)
        #expect(again.state(of: 7).entries.map(\.index) == Array(1...20))
        try h.close(again)
    }

    @Test("a flipped bit inside the log is corruption: the node refuses to start and says how to repair; repair cuts there")
    func flippedBit() throws {
        let h = WALHarness()
        let wal = try h.open()
        for i in 0..<10 { try h.save(wal, entries: entries(UInt64(i * 10 + 1)...UInt64(i * 10 + 10))) }
        try h.close(wal)
        let path = h.lastSegment()
        let middle = UInt64(try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int) / 2
        let fh = FileHandle(forUpdatingAtPath: path)!
        fh.seek(toFileOffset: middle)
        var byte = fh.readData(ofLength: 1)
        byte[0] ^= 0x10
        fh.seek(toFileOffset: middle)
        fh.write(byte)
        try fh.close()
        #expect {
            _ = try h.open()
        } throws: { error in
            let text = "\(error)"
            return text.contains("corrupt") && text.contains("warren repair")
        }
        let report = try RaftWALRepair.repair(directory: h.dir)
        #expect(report.bytesDropped > 0)
        #expect(report.actions.contains { $0.contains("cut at offset") })
        let repaired = try h.open()
        let got = repaired.state(of: 7).entries.map(\.index)
        #expect(!got.isEmpty && got.count < 100 && got == Array(1...UInt64(got.count)), "a whole prefix survives")
        try h.close(repaired)
    }

    @Test("a missing snapshot file is named at start; repair cuts the log at its marker")
    func missingSnapshot() throws {
        let h = WALHarness()
        let wal = try h.open()
        try h.save(wal, entries: entries(1...10))
        let snap = Snapshot(index: 10, term: 1, membership: Membership(voters: [1]), data: Array("state".utf8))
        try h.save(wal, entries: [], snapshot: snap)
        try h.save(wal, entries: entries(11...15))
        try h.close(wal)
        let files = try FileManager.default.contentsOfDirectory(atPath: h.snapshots)
        #expect(files.count == 1)
        try FileManager.default.removeItem(atPath: h.snapshots + "/" + files[0])
        #expect {
            _ = try h.open()
        } throws: { error in
            "\(error)".contains("is missing") && "\(error)".contains("warren repair")
        }
        let report = try RaftWALRepair.repair(directory: h.dir)
        #expect(report.actions.contains { $0.contains("snapshot file") })
        let repaired = try h.open()
        #expect(repaired.state(of: 7).snapshot == nil)
        #expect(repaired.state(of: 7).entries.map(\.index) == Array(1...10), "what preceded the marker is still there")
        try h.close(repaired)
    }

    @Test("a newer snapshot lets the older file go, and the log still opens (regression: every marker's file was required)")
    func supersededSnapshot() throws {
        let h = WALHarness()
        let wal = try h.open()
        try h.save(wal, entries: entries(1...10))
        try h.save(wal, snapshot: Snapshot(index: 10, term: 1, membership: Membership(voters: [1]), data: Array("ten".utf8)))
        try h.save(wal, entries: entries(11...20))
        try h.save(wal, snapshot: Snapshot(index: 20, term: 1, membership: Membership(voters: [1]), data: Array("twenty".utf8)))
        try h.save(wal, entries: entries(21...25))
        try h.close(wal)
        let files = try FileManager.default.contentsOfDirectory(atPath: h.snapshots)
        #expect(files == ["7-20.snap"], "the older snapshot file was removed once the newer marker was durable")
        let again = try h.open()
        #expect(again.state(of: 7).snapshot?.data == Array("twenty".utf8))
        #expect(again.state(of: 7).entries.map(\.index) == Array(21...25))
        try h.close(again)
        #expect(try RaftWALRepair.repair(directory: h.dir).actions.isEmpty, "nothing for repair to do")
    }

    @Test("a crash before the sync thread finished loses at most what was never acknowledged")
    func crashMidway() throws {
        let h = WALHarness()
        let wal = try h.open()
        try h.save(wal, hardState: HardState(term: 2, vote: 1, commit: 8), entries: entries(1...8, term: 2))
        try h.loop.submit {
            wal.save(7, hardState: nil, entries: entries(9...12, term: 2), snapshot: nil)
            wal.crashForTests()
        }.wait()
        let again = try h.open()
        let got = again.state(of: 7).entries.map(\.index)
        #expect(Array(got.prefix(8)) == Array(1...8), "every acknowledged entry is there")
        #expect(again.state(of: 7).hardState.term == 2)
        try h.close(again)
    }
}

@Suite("Raft WAL segments")
struct RaftWALSegmentTests {
    @Test("segments that a running sync flushes, or that were written since, are not deleted (a removed group's)")
    func dirtySegmentOutlivesRetirement() throws {
        // Regression (found by bench-quorum: deleting queues under load stopped every node at
        // once with "fdatasync failed: Bad file descriptor"): segments holding only a removed
        // group's entries were closed while a sync still had to flush them.
        let h = WALHarness()
        let wal = try h.open()
        let big = { (r: ClosedRange<UInt64>) in r.map { Entry(term: 1, index: $0, payload: .normal(Array(repeating: 1, count: 1000))) } }
        final class Box: @unchecked Sendable { var fatal: String? }
        let box = Box()
        try h.save(wal, group: 8, hardState: HardState(term: 1, vote: 0, commit: 1), entries: big(1...100))
        let done = h.loop.makePromise(of: Void.self)
        h.loop.execute {
            wal.onFatal = {
                box.fatal = "\($0)"
                done.succeed(())
            }
            // Past the current segment's end, then a sync starts (and runs on its thread)...
            wal.save(8, hardState: nil, entries: big(101...200), snapshot: nil)
            wal.sync {}
            // ...and the group goes: its segments are needed by no one, but the sync still
            // flushes one of them.
            wal.remove(8)
            wal.retireSegments()
            wal.save(9, hardState: HardState(term: 1, vote: 0, commit: 1), entries: big(1...5), snapshot: nil)
            wal.sync {
                wal.retireSegments()
                wal.save(9, hardState: nil, entries: big(6...10), snapshot: nil)
                wal.sync { done.succeed(()) }
            }
        }
        try done.futureResult.wait()
        #expect(box.fatal == nil, "\(box.fatal ?? "")")
        try h.close(wal)
        let again = try h.open()
        #expect(again.state(of: 9).entries.map(\.index) == Array(1...10))
        try h.close(again)
    }
}

@Suite("Raft WAL closing")
struct RaftWALClosingTests {
    @Test("a sync that was running when the log closed answers after close without starting another (regression: a crash at a graceful stop)")
    func syncAnsweringAfterClose() throws {
        // Found by `warren-cluster run clock-jump`: a node stopped gracefully under load died
        // with "Unexpectedly found nil" in startSync: the running fsync's answer reached the
        // loop after close() had stopped the sync thread, and a later round's wait started one.
        let h = WALHarness()
        let wal = try h.open()
        let answered = try h.loop.submit { () -> Bool in
            wal.save(7, hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...50), snapshot: nil)
            wal.sync {}  // runs on the sync thread now
            wal.save(7, hardState: nil, entries: entries(51...60), snapshot: nil)
            var second = false
            wal.sync { second = true }  // waits for the first to finish
            wal.close()  // the first's answer is queued behind this task
            return second
        }.wait()
        #expect(!answered)
        // Let the queued answer run; then the log still opens with everything close() wrote.
        try h.loop.submit {}.wait()
        try h.loop.submit {}.wait()
        let again = try h.open()
        #expect(again.state(of: 7).entries.map(\.index) == Array(1...60))
        try h.close(again)
    }
}

@Suite("Raft WAL long logs")
struct RaftWALLongLogTests {
    @Test("16,000 one-entry records, then a later leader's entries over a suffix: all come back in order")
    func manySmallRecordsWithOverwrite() throws {
        // The shape a busy quorum queue leaves (one record per round): recovery once copied the
        // group's whole entry array at every record, and a restarted debug node took 74 s to open.
        let h = WALHarness()
        let loop = h.loop
        let wal = try loop.submit { try RaftWAL(directory: h.dir, logger: Logger(label: "wal-test")) { loop.execute($0) } }.wait()
        let n: UInt64 = 16000
        try loop.submit {
            for i in 1...n {
                wal.save(7, hardState: HardState(term: 1, vote: 1, commit: i - 1), entries: [Entry(term: 1, index: i, payload: .normal(Array(repeating: 1, count: 200)))], snapshot: nil)
            }
            // A new leader (term 2) replaced the last 100 entries with 50 of its own.
            wal.save(7, hardState: HardState(term: 2, vote: 2, commit: n - 100), entries: entries((n - 99)...(n - 50), term: 2), snapshot: nil)
        }.wait()
        try h.close(wal)
        let again = try loop.submit { try RaftWAL(directory: h.dir, logger: Logger(label: "wal-test")) { loop.execute($0) } }.wait()
        let st = again.state(of: 7)
        #expect(st.entries.map(\.index) == Array(1...(n - 50)))
        #expect(st.entries[Int(n - 101)].term == 1 && st.entries[Int(n - 100)].term == 2)
        #expect(st.hardState == HardState(term: 2, vote: 2, commit: n - 100))
        try h.close(again)
    }
}
