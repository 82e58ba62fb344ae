extension RaftNode {
    /// Read-index (dissertation 6.4): remember the commit index, confirm leadership with a
    /// heartbeat round, then the read may be served once that index is applied.
    func startRead(_ context: UInt64) {
        if membership.quorum <= 1 {
            readStates.append(ReadState(context: context, index: log.committed))
            return
        }
        pendingReads.append((context, log.committed, [id]))
        broadcastHeartbeat(context: context)
    }

    func ackRead(_ context: UInt64, from: NodeID) {
        guard membership.voters.contains(from), let at = pendingReads.firstIndex(where: { $0.context == context }) else { return }
        pendingReads[at].acks.insert(from)
        guard pendingReads[at].acks.filter({ membership.voters.contains($0) }).count >= membership.quorum else { return }
        // This read and every earlier one are confirmed (leadership was confirmed after they
        // were asked).
        for r in pendingReads[...at] { readStates.append(ReadState(context: r.context, index: r.index)) }
        pendingReads.removeFirst(at + 1)
    }
}
