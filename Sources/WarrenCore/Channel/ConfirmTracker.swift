import DequeModule

/// Publisher confirms for one channel: numbers publishes, records how each was settled, and
/// announces them with the frames RabbitMQ would send, so that clients which watch the
/// `multiple` flag and the order (php-amqp's and the Go clients' suites do) see what they see
/// against RabbitMQ.
///
/// RabbitMQ's channel (`rabbit_channel:send_confirms_and_nacks`) announces what was settled
/// since its last turn: one settled message as `ack(tag, multiple=false)`; several as one
/// `multiple=true` ack for those below the oldest still unsettled (or nacked) publish, and one
/// `multiple=false` ack each for the rest; nacks likewise, below the oldest unsettled or acked
/// one. Warren's turn is a read batch (or one store fsync): what settles during it is
/// announced at its end in one write. A message that reached no queue is confirmed at once,
/// right after its `basic.return`, as RabbitMQ confirms it while handling the publish.
struct ConfirmTracker {
    enum Outcome { case ack, nack }
    enum Announcement: Equatable {
        case ack(UInt64, multiple: Bool)
        case nack(UInt64, multiple: Bool)
    }

    private(set) var nextSeq: UInt64 = 1
    /// Publishes not settled yet, ascending. Settlements come almost always in order, so
    /// removal is from the front; a store fsync or a refusal can settle out of order.
    private var unsettled = Deque<UInt64>()
    /// Settled since the last announcement.
    private var acked: [UInt64] = []
    private var nacked: [UInt64] = []

    /// Numbers the next publish.
    mutating func nextPublish() -> UInt64 {
        let s = nextSeq
        nextSeq += 1
        unsettled.append(s)
        return s
    }

    /// Records an outcome, to be announced by the next `drainAnnouncements`.
    mutating func settle(_ seq: UInt64, _ outcome: Outcome) {
        guard remove(seq) else { return }
        switch outcome {
        case .ack: acked.append(seq)
        case .nack: nacked.append(seq)
        }
    }

    /// Settles a message that reached no queue: RabbitMQ acks it on its own, at once.
    mutating func settleAtOnce(_ seq: UInt64) -> Announcement? {
        guard remove(seq) else { return nil }
        return .ack(seq, multiple: false)
    }

    private mutating func remove(_ seq: UInt64) -> Bool {
        if unsettled.first == seq {
            unsettled.removeFirst()
            return true
        }
        // Out of order: binary search (the deque is sorted).
        var lo = 0
        var hi = unsettled.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if unsettled[mid] < seq { lo = mid + 1 } else { hi = mid }
        }
        guard lo < unsettled.count, unsettled[lo] == seq else { return false }
        unsettled.remove(at: lo)
        return true
    }

    var hasPending: Bool { !unsettled.isEmpty || !acked.isEmpty || !nacked.isEmpty }
    var hasAnnouncements: Bool { !acked.isEmpty || !nacked.isEmpty }

    /// The frames for everything settled since the last call, acks first, as RabbitMQ orders
    /// them.
    mutating func drainAnnouncements(_ emit: (Announcement) -> Void) {
        if acked.count == 1 {
            emit(.ack(acked[0], multiple: false))
        } else if !acked.isEmpty {
            coalesce(&acked, below: nacked.min() ?? .max, emit: { emit(.ack($0, multiple: $1)) })
        }
        if !nacked.isEmpty {
            coalesce(&nacked, below: acked.min() ?? .max, emit: { emit(.nack($0, multiple: $1)) })
        }
        acked.removeAll(keepingCapacity: true)
        nacked.removeAll(keepingCapacity: true)
    }

    /// RabbitMQ's `coalesce_and_send`: those below the cutoff as one multiple, the rest singly.
    private func coalesce(_ seqs: inout [UInt64], below other: UInt64, emit: (UInt64, Bool) -> Void) {
        if !isSorted(seqs) { seqs.sort() }
        let cutoff = min(unsettled.first ?? seqs[seqs.count - 1] + 1, other)
        var split = 0
        while split < seqs.count && seqs[split] < cutoff { split += 1 }
        if split > 0 { emit(seqs[split - 1], true) }
        for s in seqs[split...] { emit(s, false) }
    }

    private func isSorted(_ a: [UInt64]) -> Bool {
        var i = 1
        while i < a.count {
            if a[i - 1] > a[i] { return false }
            i += 1
        }
        return true
    }
}
