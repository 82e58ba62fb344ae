/// Which segment holds each persisted message of a queue that has not left it: runs of
/// consecutive sequence numbers in one segment. Messages are appended in sequence order, so a
/// queue costs one run per segment it spans (plus a few where compaction moved messages).
struct SeqSegmentMap {
    struct Run: Equatable, Sendable {
        var lo: UInt64
        var hi: UInt64
        var segment: UInt32
    }

    private(set) var runs: [Run] = []
    /// Members, for the management view and recovery checks.
    private(set) var count = 0

    var isEmpty: Bool { runs.isEmpty }

    /// Index of the first run whose upper bound is above `x`.
    private func firstIndex(above x: UInt64) -> Int {
        var lo = 0
        var hi = runs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if runs[mid].hi <= x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func segment(of seq: UInt64) -> UInt32? {
        if let last = runs.last, seq >= last.lo { return seq < last.hi ? last.segment : nil }
        let i = firstIndex(above: seq)
        return i < runs.count && runs[i].lo <= seq ? runs[i].segment : nil
    }

    func contains(_ seq: UInt64) -> Bool { segment(of: seq) != nil }

    /// Adds a member (it must not be one already).
    mutating func insert(_ seq: UInt64, segment: UInt32) {
        count += 1
        if let last = runs.last, seq >= last.hi {
            if seq == last.hi && last.segment == segment {
                runs[runs.count - 1].hi = seq + 1
            } else {
                runs.append(Run(lo: seq, hi: seq + 1, segment: segment))
            }
            return
        }
        let i = firstIndex(above: seq)
        // Join the run before (ends at seq, same segment) or after (starts at seq+1).
        if i > 0 && runs[i - 1].hi == seq && runs[i - 1].segment == segment {
            runs[i - 1].hi = seq + 1
            if i < runs.count && runs[i].lo == seq + 1 && runs[i].segment == segment {
                runs[i - 1].hi = runs[i].hi
                runs.remove(at: i)
            }
        } else if i < runs.count && runs[i].lo == seq + 1 && runs[i].segment == segment {
            runs[i].lo = seq
        } else {
            runs.insert(Run(lo: seq, hi: seq + 1, segment: segment), at: i)
        }
    }

    /// Adds a whole run above every member (runs read back in order from a checkpoint).
    mutating func appendRun(_ run: Run) {
        guard run.lo < run.hi else { return }
        guard runs.last.map({ run.lo >= $0.hi }) ?? true else {
            for s in run.lo..<run.hi where !contains(s) { insert(s, segment: run.segment) }
            return
        }
        count += Int(run.hi - run.lo)
        if var last = runs.last, last.hi == run.lo, last.segment == run.segment {
            last.hi = run.hi
            runs[runs.count - 1] = last
        } else {
            runs.append(run)
        }
    }

    /// Removes a member; returns the segment it was in (nil if it was not a member).
    @discardableResult
    mutating func remove(_ seq: UInt64) -> UInt32? {
        let i: Int
        if let last = runs.last, seq >= last.lo {
            guard seq < last.hi else { return nil }
            i = runs.count - 1
        } else {
            i = firstIndex(above: seq)
            guard i < runs.count, runs[i].lo <= seq else { return nil }
        }
        count -= 1
        let run = runs[i]
        if run.lo == seq && run.hi == seq + 1 {
            runs.remove(at: i)
        } else if run.lo == seq {
            runs[i].lo = seq + 1
        } else if run.hi == seq + 1 {
            runs[i].hi = seq
        } else {
            runs[i].hi = seq
            runs.insert(Run(lo: seq + 1, hi: run.hi, segment: run.segment), at: i + 1)
        }
        return run.segment
    }

    /// Removes every member within `r`; returns how many left each segment.
    mutating func remove(_ r: Range<UInt64>) -> [UInt32: Int] {
        var removed: [UInt32: Int] = [:]
        var i = firstIndex(above: r.lowerBound)
        var replacement: [Run] = []
        let start = i
        while i < runs.count && runs[i].lo < r.upperBound {
            let cur = runs[i]
            let lo = max(cur.lo, r.lowerBound)
            let hi = min(cur.hi, r.upperBound)
            removed[cur.segment, default: 0] += Int(hi - lo)
            count -= Int(hi - lo)
            if cur.lo < r.lowerBound { replacement.append(Run(lo: cur.lo, hi: r.lowerBound, segment: cur.segment)) }
            if cur.hi > r.upperBound { replacement.append(Run(lo: r.upperBound, hi: cur.hi, segment: cur.segment)) }
            i += 1
        }
        if i > start { runs.replaceSubrange(start..<i, with: replacement) }
        return removed
    }

    /// Members per segment.
    func countsBySegment() -> [UInt32: Int] {
        var out: [UInt32: Int] = [:]
        for r in runs { out[r.segment, default: 0] += Int(r.hi - r.lo) }
        return out
    }
}
