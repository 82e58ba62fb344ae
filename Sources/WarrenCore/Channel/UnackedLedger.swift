import AMQPProtocol
import DequeModule

/// A message delivered on a channel and not yet settled.
public struct Delivery {
    public let tag: UInt64
    public let entry: QueueEntry
    public let queue: MessageQueue
    /// The consumer it went to; nil for `basic.get`.
    public let consumer: Consumer?
    /// For a queue of another node: the session with that node it was delivered in (an ack in
    /// a later session would be for a message already requeued there).
    public var session: UInt64 = 0
}

/// A channel's unacknowledged deliveries, in delivery-tag order.
///
/// Tags only grow, so deliveries append at the back and the usual in-order ack pops the front in
/// O(1). An ack out of order marks its slot settled (found by binary search); settled slots at
/// the front are dropped as they surface.
struct UnackedLedger {
    private var slots = Deque<Delivery?>()
    private var tags = Deque<UInt64>()
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    mutating func append(_ d: Delivery) {
        slots.append(d)
        tags.append(d.tag)
        count += 1
    }

    /// Removes and returns the deliveries an ack/nack with this tag settles: the tag itself, or
    /// with `multiple` every delivery up to it (tag 0 with `multiple`: all). As in RabbitMQ the
    /// tag must name an outstanding delivery (406 "unknown delivery tag N").
    mutating func take(tag: UInt64, multiple: Bool) throws(AMQPError) -> [Delivery] {
        if multiple && tag == 0 { return takeAll() }
        guard let i = index(of: tag), slots[i] != nil else {
            throw .preconditionFailed("unknown delivery tag \(tag)")
        }
        if !multiple {
            let d = slots[i]!
            slots[i] = nil
            count -= 1
            trimFront()
            return [d]
        }
        var out: [Delivery] = []
        out.reserveCapacity(i + 1)
        for _ in 0...i {
            tags.removeFirst()
            if let d = slots.removeFirst() { out.append(d) }
        }
        count -= out.count
        trimFront()
        return out
    }

    /// The usual ack: one tag, no array.
    mutating func takeOne(tag: UInt64) throws(AMQPError) -> Delivery {
        guard let i = index(of: tag), let d = slots[i] else {
            throw .preconditionFailed("unknown delivery tag \(tag)")
        }
        slots[i] = nil
        count -= 1
        trimFront()
        return d
    }

    mutating func takeAll() -> [Delivery] {
        let out = slots.compactMap { $0 }
        slots.removeAll()
        tags.removeAll()
        count = 0
        return out
    }

    /// Puts deliveries back (a rolled-back transaction), keeping tag order.
    mutating func restore(_ deliveries: [Delivery]) {
        guard !deliveries.isEmpty else { return }
        var all = slots.compactMap { $0 } + deliveries
        all.sort { $0.tag < $1.tag }
        slots = Deque(all.map { Optional($0) })
        tags = Deque(all.map(\.tag))
        count = all.count
    }

    private func index(of tag: UInt64) -> Int? {
        if let first = tags.first, first == tag { return 0 }
        var lo = 0
        var hi = tags.count - 1
        while lo <= hi {
            let mid = (lo + hi) / 2
            let t = tags[mid]
            if t == tag { return mid }
            if t < tag { lo = mid + 1 } else { hi = mid - 1 }
        }
        return nil
    }

    private mutating func trimFront() {
        while let first = slots.first, first == nil {
            slots.removeFirst()
            tags.removeFirst()
        }
    }
}
