/// What a leader knows of one follower's log.
struct Progress {
    enum State: Equatable {
        /// Unknown where the follower's log ends: one append at a time, backing off on rejects.
        case probe
        /// The follower matched: appends are pipelined up to the in-flight limit.
        case replicate
        /// A snapshot was sent; waiting for the follower to report it applied.
        case snapshot(LogIndex)
    }

    var match: LogIndex = 0
    var next: LogIndex
    var state = State.probe
    /// Probe: an append is out and unanswered.
    var paused = false
    /// Last index of each append in flight (replicate state), oldest first.
    var inflight: [LogIndex] = []
    var inflightStart = 0
    /// Heard from since the last check-quorum round.
    var recentActive = false
    var isLearner: Bool
    var matchAtLastHeartbeat: LogIndex = 0
    /// Answered since the leader's last heartbeat round (quiescence waits for every member).
    var heardSinceHeartbeat = false
    var stalledHeartbeats = 0

    init(next: LogIndex, isLearner: Bool) {
        self.next = next
        self.isLearner = isLearner
    }

    var inflightCount: Int { inflight.count - inflightStart }

    mutating func becomeProbe() {
        if case .snapshot(let pending) = state {
            next = max(match + 1, pending + 1)
        } else {
            next = match + 1
        }
        state = .probe
        paused = false
        clearInflight()
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        paused = false
        clearInflight()
    }

    mutating func clearInflight() {
        inflight.removeAll(keepingCapacity: true)
        inflightStart = 0
    }

    /// The follower acknowledged up to `index`: frees the appends it covers.
    mutating func freeInflight(upTo index: LogIndex) {
        while inflightStart < inflight.count && inflight[inflightStart] <= index { inflightStart += 1 }
        if inflightStart > 64 && inflightStart * 2 > inflight.count {
            inflight.removeFirst(inflightStart)
            inflightStart = 0
        }
    }

    /// True if `index` advanced what is known to match.
    mutating func maybeUpdate(_ index: LogIndex) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            paused = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// A rejection of the append at `rejected`: moves `next` back. False if it was stale.
    mutating func maybeDecrease(rejected: LogIndex, hint: LogIndex) -> Bool {
        if state == .replicate {
            guard rejected > match else { return false }
            next = match + 1
            return true
        }
        guard next == rejected + 1 else { return false }
        next = max(min(rejected, hint + 1), match + 1)
        paused = false
        return true
    }

    func isPaused(maxInflight: Int) -> Bool {
        switch state {
        case .probe: return paused
        case .replicate: return inflightCount >= maxInflight
        case .snapshot: return true
        }
    }
}
