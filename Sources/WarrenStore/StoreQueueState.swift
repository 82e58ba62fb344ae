import DequeModule
import WarrenCore

/// A run of one queue's paged messages (one priority level) in one segment: every record in
/// [start, end) that names this queue with a sequence number in [firstSeq, lastSeq] (and the
/// same relocated flag) is a member. Paging appends whole messages at the tail, so a backlog of
/// millions is a handful of extents.
struct Extent: Equatable {
    var segment: UInt32
    /// Offset of the first member not yet paged in (or a record before it).
    var start: UInt32
    /// Offset just after the last member.
    var end: UInt32
    var count: Int
    var bytes: Int
    /// Every member's sequence number is at least this (raised as members are paged in).
    var firstSeq: UInt64
    var lastSeq: UInt64
    /// Members are compaction copies (flagged records), not original records.
    var relocated: Bool
    /// Built by recovery: only persisted copies are members (records that held a paged
    /// transient message for this queue before the restart are not).
    var persistedOnly = false

    /// Takes one more member, the record ending at `end`.
    mutating func append(end: UInt32, bytes: Int, seq: UInt64) {
        self.end = end
        count += 1
        self.bytes += bytes
        lastSeq = seq
    }

    func isMember(_ seq: UInt64, relocated flag: Bool, persisted: Bool) -> Bool {
        flag == relocated && seq >= firstSeq && seq <= lastSeq && (persisted || !persistedOnly)
    }
}

/// The store's side of one queue.
final class StoreQueueState: StoreQueue {
    let id: StoreQueueID
    let durable: Bool
    /// Persisted messages that have not left the queue, and the segment of each.
    var live = SeqSegmentMap()
    /// Persisted messages handed to a consumer at least once.
    var delivered = RangeSet()
    /// Paged messages by priority level, oldest first.
    var extents: [UInt8: Deque<Extent>] = [:]
    /// Written into the log at the next flush.
    var pendingRemoved = RangeSet()
    var pendingDelivered = RangeSet()
    var isDirty = false
    /// Highest sequence number seen (low 56 bits), so numbering continues after a restart.
    var maxSeq: UInt64 = 0
    var hasSeq = false
    var dropped = false

    init(id: StoreQueueID, durable: Bool) {
        self.id = id
        self.durable = durable
    }

    func noteSeq(_ seq: UInt64) {
        let n = seq & 0x00FF_FFFF_FFFF_FFFF
        if !hasSeq || n > maxSeq {
            maxSeq = n
            hasSeq = true
        }
    }

    var nextSeq: UInt64 { hasSeq ? maxSeq + 1 : 0 }

    var pagedCount: Int { extents.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } }
}
