
/// Identifies a queue's storage across restarts (kept in the queue's durable definition).
public typealias StoreQueueID = UInt32

/// A queue's storage, opened from the store and handed back to it on every call.
public protocol StoreQueue: AnyObject {
    var id: StoreQueueID { get }
    /// Durable queues' stored messages survive restarts; other queues use the store for paging.
    var durable: Bool { get }
}

/// A message read back from the store (paged in, or recovered after a restart).
public struct PagedMessage {
    public var message: Message
    /// The queue's sequence number (the priority level in the top byte).
    public var seq: UInt64
    public var expiresAt: Int64
    /// It may have been delivered before a restart: a consumer sees redelivered=true.
    public var redelivered: Bool
    /// Kept by the store until acknowledged (a persistent message on a durable queue).
    public var stored: Bool

    public init(message: Message, seq: UInt64, expiresAt: Int64, redelivered: Bool, stored: Bool) {
        self.message = message
        self.seq = seq
        self.expiresAt = expiresAt
        self.redelivered = redelivered
        self.stored = stored
    }
}

/// What a durable queue had when the node stopped: its messages wait in the store (all paged)
/// until consumers ask for them.
public struct RecoveredQueue: Sendable {
    public var id: StoreQueueID
    /// Paged messages and their body bytes, per priority level.
    public var pagedCounts: [UInt8: Int]
    public var pagedBytes: [UInt8: Int]
    /// New messages are numbered from here (the low 56 bits of a sequence number).
    public var nextSeq: UInt64

    public init(id: StoreQueueID, pagedCounts: [UInt8: Int], pagedBytes: [UInt8: Int], nextSeq: UInt64) {
        self.id = id
        self.pagedCounts = pagedCounts
        self.pagedBytes = pagedBytes
        self.nextSeq = nextSeq
    }
}

/// Durable metadata as the store kept it: a snapshot of definitions and the changes since.
public struct RecoveredMetadata: Sendable {
    public var snapshot: JSONValue?
    public var changes: [JSONValue]

    public init(snapshot: JSONValue?, changes: [JSONValue]) {
        self.snapshot = snapshot
        self.changes = changes
    }
}

/// Where durable state goes: messages of durable queues, the metadata journal, and the
/// backlogs too long to keep in memory.
///
/// Calls come from the broker's event loop. Writes are appended in order; the store reports
/// through `onDurable` how far they have reached the disk (fsync), which is when publisher
/// confirms and tx.commit-ok for persistent messages go out.
public protocol MessageStore: AnyObject {
    /// Storage for a queue: an existing durable queue's (by the id in its definition) or a
    /// new one.
    func openQueue(id: StoreQueueID?, durable: Bool) -> any StoreQueue
    /// The queue is gone, with every message it had.
    func dropQueue(_ queue: any StoreQueue)

    /// One queue's copy of a message: `persist` keeps it until acknowledged (persistent message,
    /// durable queue), `page` keeps it only until paged back in. A message staged for several
    /// queues in a row is written once.
    func stage(_ message: Message, queue: any StoreQueue, seq: UInt64, expiresAt: Int64, persist: Bool, page: Bool)
    /// The log position after `message`'s record when some queue persisted it (nil otherwise):
    /// durable once `onDurable` reports that far. Writes the staged record if it is still
    /// staged.
    func persistedPosition(of message: Message) -> UInt64?

    /// A persisted message left its queue (ack, reject, expiry, purge, drop-head).
    func removed(_ queue: any StoreQueue, seq: UInt64)
    /// A persisted message was handed to a consumer (so after a restart it is redelivered).
    func delivered(_ queue: any StoreQueue, seq: UInt64)
    /// Paged messages of one priority level, oldest first, up to `max`.
    func pageIn(_ queue: any StoreQueue, level: UInt8, max: Int) -> [PagedMessage]
    /// Drops every paged message of the queue (purge); persisted ones count as removed.
    func dropPaged(_ queue: any StoreQueue)

    /// Appends a metadata change (a declare, a delete, a user...); written before this returns,
    /// so it outlives a crash of the process from then on.
    func appendMetadata(_ change: JSONValue)

    /// Called on the event loop with the log position known to be on disk.
    var onDurable: ((UInt64) -> Void)? { get set }
    /// Asks for everything written so far to be made durable soon.
    func requestSync()
}

extension UInt64 {
    /// The priority level a queue sequence number carries in its top byte.
    @inlinable public var priorityLevel: UInt8 { UInt8(truncatingIfNeeded: self >> 56) }
}
