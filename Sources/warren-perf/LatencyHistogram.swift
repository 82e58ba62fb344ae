/// A log-linear histogram of latencies in nanoseconds: 64 linear buckets per power of two, so a
/// recorded value is off by at most 1/64 (1.6%). Recording is a few instructions, no allocation.
struct LatencyHistogram {
    static let subBuckets = 64
    private(set) var counts = [UInt64](repeating: 0, count: 64 * 64)
    private(set) var total: UInt64 = 0
    private(set) var max: UInt64 = 0

    mutating func record(_ nanos: UInt64) {
        total += 1
        if nanos > max { max = nanos }
        counts[Self.index(nanos)] += 1
    }

    /// Values below 64 have a bucket each; above, the top 7 bits select one of 64 buckets within
    /// each power of two.
    static func index(_ v: UInt64) -> Int {
        if v < 64 { return Int(v) }
        let magnitude = 63 - v.leadingZeroBitCount  // >= 6
        let sub = Int(v >> UInt64(magnitude - 6)) - 64
        return (magnitude - 5) * 64 + sub
    }

    /// The smallest value of a bucket, the inverse of `index`.
    static func lowerBound(_ i: Int) -> UInt64 {
        if i < 64 { return UInt64(i) }
        return (64 + UInt64(i % 64)) << UInt64(i / 64 - 1)
    }

    mutating func merge(_ other: LatencyHistogram) {
        for i in counts.indices { counts[i] += other.counts[i] }
        total += other.total
        if other.max > max { max = other.max }
    }

    /// The value at percentile `p` (0...100), in nanoseconds.
    func percentile(_ p: Double) -> UInt64 {
        guard total > 0 else { return 0 }
        let rank = UInt64((p / 100 * Double(total)).rounded(.up))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= Swift.max(rank, 1) { return Swift.min(Self.lowerBound(i), max) }
        }
        return max
    }
}
