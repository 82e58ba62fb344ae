/// Rates for `*_details.rate`: counters sampled on a fixed beat (5 s, RabbitMQ's statistics
/// interval), the rate being the change over the last interval per second. Keyed by a queue's
/// serial number (unique for the life of the process, unlike its address or a string built per
/// sample), or 0 for the node-wide counters.
struct RateSampler {
    private var previous: [UInt64: (at: Int64, values: [Double])] = [:]
    private var rates: [UInt64: [Double]] = [:]
    private var seen: Set<UInt64> = []

    static let global: UInt64 = 0

    mutating func record(_ key: UInt64, _ values: [Double], now: Int64) {
        seen.insert(key)
        if let p = previous[key], p.values.count == values.count, now > p.at {
            let seconds = Double(now - p.at) / 1000
            rates[key] = zip(values, p.values).map { ($0 - $1) / seconds }
        }
        previous[key] = (now, values)
    }

    /// Forgets what was not recorded since the last call (deleted queues).
    mutating func endRound() {
        for k in previous.keys where !seen.contains(k) {
            previous[k] = nil
            rates[k] = nil
        }
        seen.removeAll(keepingCapacity: true)
    }

    func rate(_ key: UInt64, _ index: Int) -> Double {
        guard let r = rates[key], index < r.count else { return 0 }
        return r[index]
    }
}
