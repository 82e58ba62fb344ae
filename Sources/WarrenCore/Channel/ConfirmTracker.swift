import DequeModule

/// Publisher confirms for one channel: numbers publishes, records how each was settled, and
/// turns settled runs into as few `basic.ack`/`basic.nack` frames as possible.
///
/// A publish may settle later than the ones after it (a durable store confirms after fsync), so
/// only the settled prefix is announced; a run of acks becomes one ack with `multiple`.
struct ConfirmTracker {
    enum Outcome { case ack, nack }
    enum Announcement: Equatable {
        case ack(UInt64, multiple: Bool)
        case nack(UInt64, multiple: Bool)
    }

    private(set) var nextSeq: UInt64 = 1
    /// Everything up to here has been announced.
    private var announced: UInt64 = 0
    /// Outcomes for seqs after `announced`, in order; nil while unsettled.
    private var outcomes = Deque<Outcome?>()

    /// Numbers the next publish.
    mutating func nextPublish() -> UInt64 {
        let s = nextSeq
        nextSeq += 1
        outcomes.append(nil)
        return s
    }

    mutating func settle(_ seq: UInt64, _ outcome: Outcome) {
        guard seq > announced else { return }
        let i = Int(seq - announced - 1)
        guard i < outcomes.count else { return }
        outcomes[i] = outcome
    }

    var hasPending: Bool { !outcomes.isEmpty }

    /// The frames that announce the settled prefix, coalescing runs.
    mutating func drainAnnouncements() -> [Announcement] {
        var out: [Announcement] = []
        var runStart = announced + 1
        var runOutcome: Outcome?
        func closeRun(upTo last: UInt64) {
            guard let o = runOutcome, last >= runStart else { return }
            let multiple = last > runStart
            out.append(o == .ack ? .ack(last, multiple: multiple) : .nack(last, multiple: multiple))
        }
        while let first = outcomes.first, let outcome = first {
            let seq = announced + 1
            if outcome != runOutcome {
                closeRun(upTo: seq - 1)
                runStart = seq
                runOutcome = outcome
            }
            outcomes.removeFirst()
            announced = seq
        }
        closeRun(upTo: announced)
        return out
    }
}
