/// What a failure test's clients did and saw, in order: the input of `Checker`. Written by
/// `warren-cluster run` as JSON lines (one event per line), so a history can be kept, read, and
/// checked again (`warren-cluster check FILE`).
public struct HistoryEvent: Codable, Sendable, Equatable {
    public enum Op: String, Codable, Sendable {
        /// A publish of message `id` was written (with confirms on).
        case send
        /// The broker confirmed `id`.
        case ok
        /// The broker refused `id` (basic.nack).
        case nack
        /// No confirm came for `id` (timeout, connection lost): its fate is unknown.
        case fail
        /// A consumer got `id` (push or basic.get; `redelivered` as the broker said).
        case recv
        /// A fault began (`info` says which) or every fault was taken off (`heal`).
        case fault
        case heal
    }

    /// Seconds since the run began.
    public var t: Double
    public var op: Op
    public var id: Int64?
    /// The client or the node, as the writer found useful (`p1@warren-2`, `get@warren-3`).
    public var by: String?
    public var redelivered: Bool?
    public var info: String?

    public init(t: Double, op: Op, id: Int64? = nil, by: String? = nil, redelivered: Bool? = nil, info: String? = nil) {
        self.t = t
        self.op = op
        self.id = id
        self.by = by
        self.redelivered = redelivered
        self.info = info
    }
}
