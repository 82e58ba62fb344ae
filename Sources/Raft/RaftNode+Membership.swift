extension RaftNode {
    /// A configuration entry entered the log (leader: proposed; follower: appended).
    func applyConfEntry(_ change: ConfChange, at index: LogIndex) {
        membership = membership.applying(change)
        membershipIndex = index
        if role == .leader {
            pendingConfIndex = index
            syncProgressWithMembership()
        }
    }

    /// After a truncation removed configuration entries: the latest one left in the log, or
    /// the snapshot's.
    func recomputeMembership() {
        membership = snapshotMembership
        membershipIndex = log.snapshotIndex
        for e in log.entries {
            if case .config(let change) = e.payload {
                membership = membership.applying(change)
                membershipIndex = e.index
            }
        }
    }

    /// The configuration in force at `index` (for a snapshot taken there).
    func membership(at index: LogIndex) -> Membership {
        var m = snapshotMembership
        for e in log.entries where e.index <= index {
            if case .config(let change) = e.payload { m = m.applying(change) }
        }
        return m
    }

    func syncProgressWithMembership() {
        for m in membership.members where progress[m] == nil {
            var p = Progress(next: log.lastIndex + 1, isLearner: membership.learners.contains(m))
            p.recentActive = true
            progress[m] = p
        }
        for m in progress.keys where !membership.members.contains(m) && m != id { progress[m] = nil }
        for m in progress.keys { progress[m]!.isLearner = membership.learners.contains(m) }
    }

    /// Called when the commit index moved.
    func committedAdvanced() {
        // A leader that committed its own removal steps down (dissertation 4.2.2); it stays
        // out of elections since it is no longer a voter.
        if role == .leader && membershipIndex <= log.committed && !membership.voters.contains(id) {
            becomeFollower(term: term, leader: 0)
            return
        }
        if role == .leader && log.term(at: log.committed) == term && !readsAwaitingCommit.isEmpty {
            let waiting = readsAwaitingCommit
            readsAwaitingCommit = []
            for c in waiting { startRead(c) }
        }
    }
}
