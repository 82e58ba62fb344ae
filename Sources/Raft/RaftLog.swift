/// A node's log in memory: a snapshot's position, then entries. It tracks how much is on stable
/// storage (`stable`), committed, handed out for persisting (`unstableFrom`), and for applying.
struct RaftLog {
    var snapshotIndex: LogIndex = 0
    var snapshotTerm: Term = 0
    /// entries[i].index == snapshotIndex + 1 + i
    var entries: [Entry] = []
    /// Persisted up to here.
    var stable: LogIndex = 0
    /// Entries from here on have not been handed out in a Ready yet.
    var unstableFrom: LogIndex = 1
    var committed: LogIndex = 0
    /// Handed out for applying up to here.
    var applying: LogIndex = 0
    /// Applied up to here (set by advance).
    var applied: LogIndex = 0

    var firstIndex: LogIndex { snapshotIndex + 1 }
    var lastIndex: LogIndex { snapshotIndex + LogIndex(entries.count) }
    var lastTerm: Term { entries.last?.term ?? snapshotTerm }

    /// The term of the entry at `index`; nil if compacted away or beyond the end.
    func term(at index: LogIndex) -> Term? {
        if index == snapshotIndex { return snapshotTerm }
        guard index > snapshotIndex, index <= lastIndex else { return nil }
        return entries[Int(index - snapshotIndex - 1)].term
    }

    func entry(at index: LogIndex) -> Entry {
        entries[Int(index - snapshotIndex - 1)]
    }

    func matches(index: LogIndex, term: Term) -> Bool { self.term(at: index) == term }

    /// Entries in `from..<to`, stopping after `maxBytes` (at least one).
    func slice(from: LogIndex, to: LogIndex, maxBytes: Int = .max, maxCount: Int = .max) -> [Entry] {
        guard from < to else { return [] }
        let lo = Int(from - snapshotIndex - 1)
        var hi = Int(to - snapshotIndex - 1)
        if hi - lo > maxCount { hi = lo + maxCount }
        if maxBytes != .max {
            var bytes = 0
            var i = lo
            while i < hi {
                bytes += entries[i].size
                if bytes > maxBytes && i > lo { break }
                i += 1
            }
            hi = i
        }
        return Array(entries[lo..<hi])
    }

    func isUpToDate(lastIndex li: LogIndex, lastTerm lt: Term) -> Bool {
        lt > lastTerm || (lt == lastTerm && li >= lastIndex)
    }

    /// Appends entries from a leader after `prevIndex` matched: entries already present with the
    /// same term are skipped, the first conflicting one truncates the log from there. Returns the
    /// index of the first entry that changed the log (nil if none), and the last index the
    /// append covers.
    mutating func append(after prevIndex: LogIndex, _ new: [Entry]) -> (changedFrom: LogIndex?, last: LogIndex) {
        var k = 0
        while k < new.count {
            let e = new[k]
            if e.index <= snapshotIndex {
                k += 1
                continue
            }
            guard let t = term(at: e.index) else { break }
            if t != e.term {
                truncate(after: e.index - 1)
                break
            }
            k += 1
        }
        let last = prevIndex + LogIndex(new.count)
        guard k < new.count else { return (nil, last) }
        let from = new[k].index
        entries.append(contentsOf: new[k...])
        unstableFrom = min(unstableFrom, from)
        return (from, last)
    }

    /// Drops every entry after `index` (never committed ones: the caller checked).
    mutating func truncate(after index: LogIndex) {
        precondition(index >= committed, "raft: truncating committed entries")
        entries.removeLast(Int(lastIndex - index))
        stable = min(stable, index)
        unstableFrom = min(unstableFrom, index + 1)
    }

    /// The largest index ≤ `index` whose term is ≤ `term` (fast backtracking, both sides).
    func lastIndex(atOrBefore index: LogIndex, termAtMost t: Term) -> LogIndex {
        var i = min(index, lastIndex)
        while i > snapshotIndex, let ti = term(at: i), ti > t { i -= 1 }
        return i
    }

    /// Forgets everything up to `index` (a snapshot covers it).
    mutating func compact(upTo index: LogIndex) {
        guard index > snapshotIndex, index <= lastIndex else { return }
        let t = term(at: index)!
        entries.removeFirst(Int(index - snapshotIndex))
        snapshotIndex = index
        snapshotTerm = t
    }

    /// Replaces the whole log by a snapshot's position.
    mutating func restore(index: LogIndex, term: Term) {
        entries.removeAll()
        snapshotIndex = index
        snapshotTerm = term
        committed = index
        stable = index
        unstableFrom = index + 1
        applying = index
    }
}
