import DequeModule

/// A queue's ready messages: one FIFO per priority level (one level without `x-max-priority`),
/// each ordered by arrival (`seq`). The next message is the head of the highest non-empty level.
struct ReadyList {
    private(set) var levels: [Deque<QueueEntry>]
    private(set) var count = 0
    private(set) var bytes = 0

    init(maxPriority: UInt8?) {
        levels = Array(repeating: Deque(), count: Int(maxPriority ?? 0) + 1)
    }

    var isEmpty: Bool { count == 0 }
    var maxPriority: Int { levels.count - 1 }

    mutating func append(_ e: QueueEntry) {
        levels[Int(e.priority)].append(e)
        count += 1
        bytes += e.message.bodySize
    }

    /// The entry `popFirst` would return.
    var first: QueueEntry? {
        if levels.count == 1 { return levels[0].first }
        for l in levels.indices.reversed() where !levels[l].isEmpty { return levels[l].first }
        return nil
    }

    mutating func popFirst() -> QueueEntry? {
        let l = levels.count == 1 ? 0 : (levels.indices.reversed().first { !levels[$0].isEmpty } ?? 0)
        guard let e = levels[l].popFirst() else { return nil }
        count -= 1
        bytes -= e.message.bodySize
        return e
    }

    /// Puts delivered entries back in their places (by level and arrival order).
    mutating func requeue(_ entries: [QueueEntry]) {
        var byLevel: [Int: [QueueEntry]] = [:]
        for e in entries { byLevel[Int(e.priority), default: []].append(e) }
        for (level, list) in byLevel {
            let sorted = list.sorted { $0.seq < $1.seq }
            var ready = levels[level]
            levels[level] = Deque()
            if let first = ready.first, sorted.last!.seq > first.seq {
                var merged = Deque<QueueEntry>()
                merged.reserveCapacity(ready.count + sorted.count)
                var i = 0
                while let head = ready.first {
                    if i < sorted.count && sorted[i].seq < head.seq {
                        merged.append(sorted[i])
                        i += 1
                    } else {
                        merged.append(ready.removeFirst())
                    }
                }
                merged.append(contentsOf: sorted[i...])
                ready = merged
            } else {
                ready.prepend(contentsOf: sorted)
            }
            levels[level] = ready
        }
        count += entries.count
        bytes += entries.reduce(0) { $0 + $1.message.bodySize }
    }

    /// Removes expired entries from the head of every level (RabbitMQ expires messages from the
    /// head; the rest are never delivered expired, which `popFirst` callers check).
    mutating func popExpiredHeads(now: Int64) -> [QueueEntry] {
        var out: [QueueEntry] = []
        for l in levels.indices {
            while let head = levels[l].first, head.expiresAt != 0, head.expiresAt <= now {
                out.append(levels[l].removeFirst())
            }
        }
        count -= out.count
        bytes -= out.reduce(0) { $0 + $1.message.bodySize }
        return out
    }

    mutating func removeAll() -> [QueueEntry] {
        let all = levels.flatMap { $0 }
        for l in levels.indices { levels[l].removeAll() }
        count = 0
        bytes = 0
        return all
    }
}
