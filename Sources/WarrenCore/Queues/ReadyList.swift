import DequeModule

/// A queue's ready messages: one FIFO per priority level (one level without `x-max-priority`),
/// each ordered by arrival (`seq`). The next message is the head of the highest non-empty level.
///
/// Each level is a window of entries in memory followed by a tail of messages paged out to the
/// store (only counted here). Paging happens at the tail only, so every paged message of a
/// level is newer than every entry in its window; the queue pages the tail back in when the
/// window runs dry.
struct ReadyList {
    private(set) var levels: [Deque<QueueEntry>]
    /// Messages of each level waiting in the store, and their body bytes.
    private(set) var paged: [Int]
    private(set) var pagedBytes: [Int]
    /// Messages in memory and their body bytes.
    private(set) var windowCount = 0
    private(set) var windowBytes = 0
    private(set) var pagedTotal = 0
    private var pagedBytesTotal = 0

    init(maxPriority: UInt8?) {
        let n = Int(maxPriority ?? 0) + 1
        levels = Array(repeating: Deque(), count: n)
        paged = Array(repeating: 0, count: n)
        pagedBytes = Array(repeating: 0, count: n)
    }

    /// Ready messages, in memory and paged.
    var count: Int { windowCount + pagedTotal }
    var bytes: Int { windowBytes + pagedBytesTotal }
    var isEmpty: Bool { count == 0 }
    var maxPriority: Int { levels.count - 1 }

    mutating func append(_ e: QueueEntry) {
        levels[Int(e.priority)].append(e)
        windowCount += 1
        windowBytes += e.message.bodySize
    }

    /// A message went to the store instead of the window.
    mutating func addPaged(level: Int, bytes: Int, count: Int = 1) {
        paged[level] += count
        pagedBytes[level] += bytes
        pagedTotal += count
        pagedBytesTotal += bytes
    }

    /// Messages paged back in: appended to their level's window (they are newer than it).
    mutating func pagedIn(_ entries: [QueueEntry], level: Int) {
        var bytes = 0
        for e in entries {
            levels[level].append(e)
            bytes += e.message.bodySize
        }
        windowCount += entries.count
        windowBytes += bytes
        let n = min(entries.count, paged[level])
        let b = min(bytes, pagedBytes[level])
        paged[level] -= n
        pagedBytes[level] -= b
        pagedTotal -= n
        pagedBytesTotal -= b
    }

    /// The store had fewer messages for the level than counted (it cannot, unless records were
    /// lost): forget the difference rather than wait for them forever.
    mutating func forgetPaged(level: Int) {
        pagedTotal -= paged[level]
        pagedBytesTotal -= pagedBytes[level]
        paged[level] = 0
        pagedBytes[level] = 0
    }

    /// Drops the paged counts of every level (the store dropped the messages).
    mutating func dropAllPaged() -> Int {
        let n = pagedTotal
        for l in paged.indices { forgetPaged(level: l) }
        return n
    }

    /// The level the next message comes from: the highest with messages in memory or paged.
    var headLevel: Int? {
        if levels.count == 1 { return count > 0 ? 0 : nil }
        for l in levels.indices.reversed() where !levels[l].isEmpty || paged[l] > 0 { return l }
        return nil
    }

    /// Whether the head level's next message is in the store rather than in memory.
    var headNeedsPageIn: Bool {
        guard pagedTotal > 0, let l = headLevel else { return false }
        return levels[l].isEmpty
    }

    /// The entry `popFirst` would return (nil when it is still paged).
    var first: QueueEntry? {
        guard let l = headLevel else { return nil }
        return levels[l].first
    }

    /// The head of the highest level; nil when that level's head is paged (page it in first).
    mutating func popFirst() -> QueueEntry? {
        let l: Int
        if levels.count == 1 {
            l = 0
        } else {
            guard let h = headLevel else { return nil }
            l = h
        }
        guard let e = levels[l].popFirst() else { return nil }
        windowCount -= 1
        windowBytes -= e.message.bodySize
        return e
    }

    /// Puts delivered entries back in their places (by level and arrival order). They are older
    /// than anything paged, so they go into the windows.
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
        windowCount += entries.count
        windowBytes += entries.reduce(0) { $0 + $1.message.bodySize }
    }

    /// Removes expired entries from the head of every level's window (RabbitMQ expires messages
    /// from the head; the rest are never delivered expired, which `popFirst` callers check).
    mutating func popExpiredHeads(now: Int64) -> [QueueEntry] {
        var out: [QueueEntry] = []
        for l in levels.indices {
            while let head = levels[l].first, head.expiresAt != 0, head.expiresAt <= now {
                out.append(levels[l].removeFirst())
            }
        }
        windowCount -= out.count
        windowBytes -= out.reduce(0) { $0 + $1.message.bodySize }
        return out
    }

    /// Empties the windows (paged messages are the caller's to drop).
    mutating func removeWindow() -> [QueueEntry] {
        let all = levels.flatMap { $0 }
        for l in levels.indices { levels[l].removeAll() }
        windowCount = 0
        windowBytes = 0
        return all
    }

    func windowCount(level: Int) -> Int { levels[level].count }

    // MARK: by sequence number (replicated queues' followers apply their leader's decisions)

    /// Where `seq` is in its level's window (each window is in arrival order), if there.
    private func find(_ seq: UInt64) -> (level: Int, index: Int)? {
        let level = min(Int(seq >> 56), levels.count - 1)
        let d = levels[level]
        var lo = 0
        var hi = d.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if d[mid].seq < seq { lo = mid + 1 } else { hi = mid }
        }
        return lo < d.count && d[lo].seq == seq ? (level, lo) : nil
    }

    /// Takes out the entry numbered `seq` wherever it is in the window.
    mutating func remove(seq: UInt64) -> QueueEntry? {
        guard let (l, i) = find(seq) else { return nil }
        let e = levels[l].remove(at: i)
        windowCount -= 1
        windowBytes -= e.message.bodySize
        return e
    }

    /// Changes the entry numbered `seq` in place (its position does not depend on what changes).
    mutating func update(seq: UInt64, _ body: (inout QueueEntry) -> Void) {
        guard let (l, i) = find(seq) else { return }
        body(&levels[l][i])
    }

    /// Every entry of the window, in order within each level.
    var allEntries: [QueueEntry] { levels.flatMap { $0 } }
}
