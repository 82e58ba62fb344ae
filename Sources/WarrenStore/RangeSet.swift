/// A set of UInt64 kept as sorted, disjoint, non-adjacent ranges: the shape of sequence
/// numbers a FIFO queue removes or delivers (usually one range), so millions of numbers cost a
/// few bytes.
struct RangeSet: Equatable {
    private(set) var ranges: [Range<UInt64>] = []

    init() {}
    init(_ ranges: [Range<UInt64>]) {
        for r in ranges { insert(r) }
    }

    var isEmpty: Bool { ranges.isEmpty }
    var rangeCount: Int { ranges.count }
    var count: UInt64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) } }

    /// Index of the first range whose upper bound is above `x`.
    private func firstIndex(above x: UInt64) -> Int {
        var lo = 0
        var hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].upperBound <= x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func contains(_ x: UInt64) -> Bool {
        if let last = ranges.last, x >= last.lowerBound { return x < last.upperBound }
        let i = firstIndex(above: x)
        return i < ranges.count && ranges[i].contains(x)
    }

    mutating func insert(_ x: UInt64) {
        // The usual case: the next number after the last range.
        if let last = ranges.last, x == last.upperBound {
            ranges[ranges.count - 1] = last.lowerBound..<(x + 1)
            return
        }
        insert(x..<(x + 1))
    }

    mutating func insert(_ r: Range<UInt64>) {
        guard !r.isEmpty else { return }
        if ranges.isEmpty || r.lowerBound > ranges[ranges.count - 1].upperBound {
            ranges.append(r)
            return
        }
        // Merge every range that overlaps or touches r.
        let i = firstIndex(above: r.lowerBound == 0 ? 0 : r.lowerBound - 1)
        var lo = r.lowerBound
        var hi = r.upperBound
        var j = i
        while j < ranges.count && ranges[j].lowerBound <= hi {
            lo = min(lo, ranges[j].lowerBound)
            hi = max(hi, ranges[j].upperBound)
            j += 1
        }
        ranges.replaceSubrange(i..<j, with: [lo..<hi])
    }

    mutating func formUnion(_ other: RangeSet) {
        for r in other.ranges { insert(r) }
    }

    mutating func remove(_ x: UInt64) {
        remove(x..<(x + 1))
    }

    mutating func remove(_ r: Range<UInt64>) {
        guard !r.isEmpty, !ranges.isEmpty else { return }
        var i = firstIndex(above: r.lowerBound)
        var replacement: [Range<UInt64>] = []
        let start = i
        while i < ranges.count && ranges[i].lowerBound < r.upperBound {
            let cur = ranges[i]
            if cur.lowerBound < r.lowerBound { replacement.append(cur.lowerBound..<r.lowerBound) }
            if cur.upperBound > r.upperBound { replacement.append(r.upperBound..<cur.upperBound) }
            i += 1
        }
        if i > start { ranges.replaceSubrange(start..<i, with: replacement) }
    }

    /// How many members lie within `r`.
    func count(in r: Range<UInt64>) -> UInt64 {
        var n: UInt64 = 0
        var i = firstIndex(above: r.lowerBound)
        while i < ranges.count && ranges[i].lowerBound < r.upperBound {
            let lo = max(ranges[i].lowerBound, r.lowerBound)
            let hi = min(ranges[i].upperBound, r.upperBound)
            if hi > lo { n += hi - lo }
            i += 1
        }
        return n
    }

    /// Keeps only members within `r`.
    mutating func clamp(to r: Range<UInt64>) {
        if let first = ranges.first, first.lowerBound < r.lowerBound { remove(first.lowerBound..<r.lowerBound) }
        if let last = ranges.last, last.upperBound > r.upperBound { remove(r.upperBound..<last.upperBound) }
    }
}
