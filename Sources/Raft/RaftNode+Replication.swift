extension RaftNode {
    // MARK: leader side

    func broadcastAppend() {
        for pid in progress.keys.sorted() where pid != id { sendAppend(to: pid, evenIfEmpty: true) }
    }

    func broadcastHeartbeat(context: UInt64) {
        // In id order: the core's output must not depend on hash seeds, so a run replays.
        for pid in progress.keys.sorted() where pid != id {
            send(to: pid, .heartbeat(commit: min(progress[pid]!.match, log.committed), context: context))
        }
    }

    /// Sends what `to` is missing: appends (pipelined while replicating, up to the in-flight
    /// bound), or the snapshot if the entries it needs are compacted away.
    func sendAppend(to pid: NodeID, evenIfEmpty: Bool = false) {
        var sentOne = false
        while var p = progress[pid], !p.isPaused(maxInflight: config.maxInflight) {
            let prevIndex = p.next - 1
            guard let prevTerm = log.term(at: prevIndex) else {
                sendSnapshot(to: pid)
                return
            }
            let entries = log.slice(from: p.next, to: log.lastIndex + 1, maxBytes: config.maxAppendBytes)
            if entries.isEmpty && (sentOne || (!evenIfEmpty && p.state == .replicate)) { return }
            send(to: pid, .append(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: log.committed))
            sentOne = true
            switch p.state {
            case .replicate:
                if let last = entries.last {
                    p.next = last.index + 1
                    p.inflight.append(last.index)
                }
            case .probe:
                p.paused = true
            case .snapshot:
                break
            }
            progress[pid] = p
            if entries.isEmpty { return }
        }
    }

    func sendSnapshot(to pid: NodeID) {
        guard let snap = latestSnapshot else { return }
        send(to: pid, .snapshot(snap))
        progress[pid]?.state = .snapshot(snap.index)
        progress[pid]?.clearInflight()
    }

    func handleAppendResponse(from: NodeID, reject: Bool, index: LogIndex, hintIndex: LogIndex, hintTerm: Term) {
        guard var p = progress[from] else { return }
        p.recentActive = true
        p.heardSinceHeartbeat = true
        if reject {
            // Fast backtracking: skip to the last entry of ours that can match the follower's
            // hint, one round trip per differing term instead of per entry.
            var next = hintIndex
            if hintTerm > 0 { next = log.lastIndex(atOrBefore: hintIndex, termAtMost: hintTerm) }
            if p.maybeDecrease(rejected: index, hint: next) {
                if p.state == .replicate { p.becomeProbe() }
                progress[from] = p
                sendAppend(to: from)
            } else {
                progress[from] = p
            }
            return
        }
        let wasPaused = p.isPaused(maxInflight: config.maxInflight)
        if p.maybeUpdate(index) {
            switch p.state {
            case .probe: p.becomeReplicate()
            case .snapshot(let pending) where p.match >= pending: p.becomeProbe()
            case .replicate: p.freeInflight(upTo: index)
            default: break
            }
            progress[from] = p
            if maybeCommit() {
                broadcastAppend()
            } else if wasPaused || p.next <= log.lastIndex {
                // A follower that was waiting learns the commit index now (etcd does the same).
                sendAppend(to: from, evenIfEmpty: wasPaused)
            }
            if from == transferee && p.match == log.lastIndex { send(to: from, .timeoutNow) }
        } else {
            progress[from] = p
            if wasPaused { sendAppend(to: from) }
        }
    }

    func handleHeartbeatResponse(from: NodeID, context: UInt64) {
        guard var p = progress[from] else { return }
        p.recentActive = true
        p.heardSinceHeartbeat = true
        p.paused = false
        if p.match < log.lastIndex {
            // Two heartbeat answers in a row without progress while behind: an append (or the
            // snapshot) was lost. Probe again from what is known to match.
            if p.match == p.matchAtLastHeartbeat {
                p.stalledHeartbeats += 1
                if p.stalledHeartbeats >= 1 {
                    p.becomeProbe()
                    p.stalledHeartbeats = 0
                }
            } else {
                p.stalledHeartbeats = 0
            }
        }
        p.matchAtLastHeartbeat = p.match
        progress[from] = p
        if p.match < log.lastIndex { sendAppend(to: from) }
        if context != 0 { ackRead(context, from: from) }
    }

    /// Moves the commit index to what a majority of voters has stored, if that entry is of the
    /// current term (Figure 8: entries of earlier terms commit only indirectly).
    @discardableResult
    func maybeCommit() -> Bool {
        var matches: [LogIndex] = []
        matches.reserveCapacity(membership.voters.count)
        for v in membership.voters { matches.append(v == id ? log.stable : (progress[v]?.match ?? 0)) }
        guard !matches.isEmpty else { return false }
        matches.sort(by: >)
        let q = matches[membership.quorum - 1]
        guard q > log.committed, log.term(at: q) == term else { return false }
        log.committed = q
        committedAdvanced()
        return true
    }

    // MARK: follower side

    func handleAppend(from: NodeID, prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex) {
        var prevIndex = prevIndex
        var prevTerm = prevTerm
        var entries = entries
        if prevIndex < log.committed {
            // Our log is committed past prevIndex (a late or repeated append): keep only what
            // comes after our commit point, if the message reaches it.
            guard let at = entries.firstIndex(where: { $0.index == log.committed }),
                entries[at].term == log.term(at: log.committed)
            else {
                send(to: from, .appendResponse(reject: false, index: log.committed, hintIndex: 0, hintTerm: 0))
                return
            }
            prevIndex = log.committed
            prevTerm = entries[at].term
            entries = Array(entries[(at + 1)...])
        }
        guard log.matches(index: prevIndex, term: prevTerm) else {
            // Hint: our last index that could match, at or before prevIndex, with its term.
            let hintIndex = log.lastIndex(atOrBefore: prevIndex, termAtMost: prevTerm)
            let hintTerm = log.term(at: hintIndex) ?? 0
            send(to: from, .appendResponse(reject: true, index: prevIndex, hintIndex: hintIndex, hintTerm: hintTerm))
            return
        }
        let membershipBefore = membershipIndex
        let (changedFrom, last) = log.append(after: prevIndex, entries)
        if let changedFrom {
            if changedFrom <= membershipBefore { recomputeMembership() }
            for e in entries where e.index >= changedFrom {
                if case .config(let change) = e.payload { applyConfEntry(change, at: e.index) }
            }
        }
        let newCommit = min(commit, last)
        if newCommit > log.committed { log.committed = newCommit }
        send(to: from, .appendResponse(reject: false, index: last, hintIndex: 0, hintTerm: 0))
    }

    func handleSnapshot(from: NodeID, _ snap: Snapshot) {
        if snap.index <= log.committed {
            send(to: from, .appendResponse(reject: false, index: log.committed, hintIndex: 0, hintTerm: 0))
            return
        }
        if log.matches(index: snap.index, term: snap.term) {
            // We have the entries: just commit up to it.
            log.committed = snap.index
            send(to: from, .appendResponse(reject: false, index: log.lastIndex, hintIndex: 0, hintTerm: 0))
            return
        }
        log.restore(index: snap.index, term: snap.term)
        latestSnapshot = snap
        pendingSnapshot = snap
        snapshotMembership = snap.membership
        membership = snap.membership
        membershipIndex = snap.index
        send(to: from, .appendResponse(reject: false, index: snap.index, hintIndex: 0, hintTerm: 0))
    }
}
