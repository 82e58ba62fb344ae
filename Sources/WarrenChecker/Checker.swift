import Foundation

/// Reads a history and says what happened to every message (the rules of docs/failure-testing.md):
///
/// - **lost**: confirmed, never delivered. Must be 0: a confirm is a promise.
/// - **unexpected**: delivered, never sent. Must be 0.
/// - **duplicated**: delivered more than once (at-least-once delivery allows it; counted).
/// - **recovered**: sent, not confirmed (nacked, timed out, connection lost), delivered anyway.
///
/// And the service seen from the clients: confirms per second, confirm latency, and for each
/// fault the time until the next confirm (the longest is the run's unavailability).
public enum Checker {
    public struct Report: Codable, Sendable, Equatable {
        public var sent = 0
        public var confirmed = 0
        public var nacked = 0
        public var unconfirmed = 0
        public var delivered = 0
        public var lost: [Int64] = []
        public var unexpected: [Int64] = []
        /// Ids delivered more than once, and how many deliveries beyond the first in all.
        public var duplicatedIds = 0
        public var duplicateDeliveries = 0
        public var recovered = 0
        /// Confirms in each second of the run (index = second).
        public var confirmsPerSecond: [Int] = []
        /// Send-to-confirm latency, milliseconds.
        public var latencyP50 = 0.0
        public var latencyP99 = 0.0
        public var latencyMax = 0.0
        /// For each fault: when it began, what it was, and seconds until the next confirm (nil:
        /// none came).
        public var faults: [FaultOutcome] = []
        public var longestUnavailability: Double?

        public var ok: Bool { lost.isEmpty && unexpected.isEmpty }
    }

    public struct FaultOutcome: Codable, Sendable, Equatable {
        public var t: Double
        public var info: String
        public var nextConfirmAfter: Double?
    }

    public static func check(_ history: [HistoryEvent]) -> Report {
        var r = Report()
        var sentAt: [Int64: Double] = [:]
        var confirmed: Set<Int64> = []
        var deliveries: [Int64: Int] = [:]
        var latencies: [Double] = []
        var confirmTimes: [Double] = []
        var faults: [(Double, String)] = []
        for e in history {
            switch e.op {
            case .send:
                if let id = e.id, sentAt[id] == nil { sentAt[id] = e.t }
            case .ok:
                guard let id = e.id, confirmed.insert(id).inserted else { continue }
                confirmTimes.append(e.t)
                if let s = sentAt[id] { latencies.append((e.t - s) * 1000) }
            case .nack:
                r.nacked += 1
            case .fail:
                break
            case .recv:
                if let id = e.id { deliveries[id, default: 0] += 1 }
            case .fault:
                faults.append((e.t, e.info ?? "fault"))
            case .heal:
                break
            }
        }
        r.sent = sentAt.count
        r.confirmed = confirmed.count
        r.unconfirmed = r.sent - r.confirmed
        r.delivered = deliveries.values.reduce(0, +)
        r.lost = confirmed.filter { deliveries[$0] == nil }.sorted()
        r.unexpected = deliveries.keys.filter { sentAt[$0] == nil }.sorted()
        for (_, n) in deliveries where n > 1 {
            r.duplicatedIds += 1
            r.duplicateDeliveries += n - 1
        }
        r.recovered = deliveries.keys.filter { sentAt[$0] != nil && !confirmed.contains($0) }.count
        if let last = confirmTimes.max() {
            r.confirmsPerSecond = Array(repeating: 0, count: Int(last) + 1)
            for t in confirmTimes where t >= 0 { r.confirmsPerSecond[Int(t)] += 1 }
        }
        latencies.sort()
        func pct(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        r.latencyP50 = pct(0.5)
        r.latencyP99 = pct(0.99)
        r.latencyMax = latencies.last ?? 0
        confirmTimes.sort()
        for (t, info) in faults {
            // The first confirm after the fault began (binary search over the sorted times).
            var lo = 0
            var hi = confirmTimes.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if confirmTimes[mid] <= t { lo = mid + 1 } else { hi = mid }
            }
            r.faults.append(FaultOutcome(t: t, info: info, nextConfirmAfter: lo < confirmTimes.count ? confirmTimes[lo] - t : nil))
        }
        r.longestUnavailability = r.faults.compactMap(\.nextConfirmAfter).max()
        return r
    }

    /// The report in a few lines, for people.
    public static func summary(_ r: Report) -> String {
        func list(_ ids: [Int64]) -> String { ids.isEmpty ? "" : " " + ids.prefix(10).map(String.init).joined(separator: ", ") + (ids.count > 10 ? ", ..." : "") }
        var lines = [
            "\(r.ok ? "OK" : "FAILED"): \(r.sent) sent, \(r.confirmed) confirmed, \(r.nacked) nacked, \(r.unconfirmed) unconfirmed, \(r.delivered) deliveries",
            "lost (confirmed, never delivered): \(r.lost.count)\(list(r.lost))",
            "unexpected (delivered, never sent): \(r.unexpected.count)\(list(r.unexpected))",
            "duplicated: \(r.duplicatedIds) messages (\(r.duplicateDeliveries) extra deliveries)",
            "recovered (not confirmed, delivered anyway): \(r.recovered)",
            String(format: "confirm latency ms: p50 %.1f, p99 %.1f, max %.1f", r.latencyP50, r.latencyP99, r.latencyMax),
        ]
        for f in r.faults {
            let next = f.nextConfirmAfter.map { String(format: "%.2f s", $0) } ?? "never"
            lines.append(String(format: "  at %7.2f s ", f.t) + "\(f.info): next confirm after \(next)")
        }
        if let u = r.longestUnavailability { lines.append(String(format: "longest unavailability: %.2f s", u)) }
        return lines.joined(separator: "\n")
    }
}
