public import Raft

/// The client history of the replicated counter: increments (each returns the counter's new
/// value) and linearizable reads (read-index), with invocation and completion times in steps.
public final class History {
    public enum Kind: Sendable { case increment, read }
    public struct Operation: Sendable {
        public var op: UInt64
        public var kind: Kind
        public var node: NodeID
        public var invokedAt: Int
        public var completedAt: Int?
        public var result: UInt64?
    }

    public private(set) var operations: [UInt64: Operation] = [:]
    public init() {}

    func invoke(op: UInt64, node: NodeID, kind: Kind, at t: Int) {
        operations[op] = Operation(op: op, kind: kind, node: node, invokedAt: t)
    }

    /// An increment is complete when the node it was proposed at applies it; a read when the
    /// node that asked has applied up to the read index.
    func complete(op: UInt64, node: NodeID, result: UInt64, index: LogIndex, at t: Int) {
        guard var o = operations[op], o.completedAt == nil, o.node == node else { return }
        o.completedAt = t
        o.result = result
        operations[op] = o
    }

    /// Checks the history against the counter's sequential specification, given the committed
    /// log (which fixes the order of increments):
    ///
    /// 1. an increment's result is its position among the increments of the committed log;
    /// 2. if A completed before B was invoked, A's position is before B's (real time);
    /// 3. a read returns v: every increment completed before the read was invoked is among the
    ///    first v, every one of the first v was invoked before the read completed, and reads
    ///    ordered in real time see non-decreasing values.
    public func checkLinearizable(committed: [LogIndex: Entry]) throws {
        var position: [UInt64: UInt64] = [:]
        var n: UInt64 = 0
        for i in committed.keys.sorted() {
            if case .normal(let data) = committed[i]!.payload {
                n += 1
                position[Simulation.decode(data)] = n
            }
        }
        var invokedOfPosition: [UInt64: Int] = [:]
        for (op, p) in position { if let o = operations[op] { invokedOfPosition[p] = o.invokedAt } }
        let incs = operations.values.filter { $0.kind == .increment }
        for o in incs {
            if let r = o.result {
                guard position[o.op] == r else {
                    throw InvariantViolation(description: "linearizability: increment \(o.op) returned \(r) but is at position \(String(describing: position[o.op]))")
                }
            }
        }
        // Real-time order of increments (sorted by completion, compared with later invocations).
        let done = incs.filter { $0.completedAt != nil }.sorted { $0.completedAt! < $1.completedAt! }
        var maxDoneBefore: [(t: Int, pos: UInt64)] = []
        var best: UInt64 = 0
        for o in done {
            best = max(best, position[o.op] ?? 0)
            maxDoneBefore.append((o.completedAt!, best))
        }
        func maxPositionCompleted(before t: Int) -> UInt64 {
            var lo = 0, hi = maxDoneBefore.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if maxDoneBefore[mid].t < t { lo = mid + 1 } else { hi = mid }
            }
            return lo == 0 ? 0 : maxDoneBefore[lo - 1].pos
        }
        for o in incs {
            guard let p = position[o.op] else { continue }
            let mustFollow = maxPositionCompleted(before: o.invokedAt)
            if mustFollow >= p {
                throw InvariantViolation(description: "linearizability: increment \(o.op) (invoked at step \(o.invokedAt)) is at position \(p), before an increment completed earlier (position \(mustFollow))")
            }
        }
        let reads = operations.values.filter { $0.kind == .read && $0.completedAt != nil }.sorted { $0.completedAt! < $1.completedAt! }
        for r in reads {
            let v = r.result!
            let mustSee = maxPositionCompleted(before: r.invokedAt)
            if v < mustSee {
                throw InvariantViolation(description: "linearizability: read \(r.op) at node \(r.node) returned \(v) (stale): increments up to \(mustSee) completed before it was invoked at step \(r.invokedAt)")
            }
            if v > 0, let inv = invokedOfPosition[v], inv > r.completedAt! {
                throw InvariantViolation(description: "linearizability: read \(r.op) returned \(v), which includes an increment invoked later")
            }
        }
        var maxRead: [(t: Int, v: UInt64)] = []
        var top: UInt64 = 0
        for r in reads {
            top = max(top, r.result!)
            maxRead.append((r.completedAt!, top))
        }
        for r in reads {
            // The largest value returned by a read that completed before this one was invoked.
            var lo = 0, hi = maxRead.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if maxRead[mid].t < r.invokedAt { lo = mid + 1 } else { hi = mid }
            }
            let earlier = lo == 0 ? 0 : maxRead[lo - 1].v
            if r.result! < earlier {
                throw InvariantViolation(description: "linearizability: read \(r.op) returned \(r.result!) after an earlier read returned \(earlier)")
            }
        }
    }
}
