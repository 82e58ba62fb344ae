import Logging

/// Leaders of replicated queues spread over the nodes: `rebalance` (rabbitmq-queues rebalance)
/// on request, and on its own once the cluster has been whole for a while.
///
/// Every move costs the queue a redelivery of what its consumers had not acked (a new leader
/// delivers again what the old one had handed out), so the automatic round is careful: it runs
/// only when every node has been up for `settledFor` (a node that comes back after a failover
/// gets its share, not one that flaps), moves at most `movesPerRound` leaders a round, and
/// only where a node leads at least two more queues than the member it would go to; a round
/// waits until the previous round's moves are recorded (12 s at most).
extension ReplicatedQueues {
    /// The global parameter of automatic spreading: "off", or the seconds every node must have
    /// been up before leaders move (default `settledFor`).
    public static let spreadingParameter = "warren-leader-spreading"

    /// One leadership move: the queue, where it is led now, where it should be.
    public struct LeaderMove: Sendable {
        public var vhost: String
        public var name: String
        public var incarnation: UInt64
        public var from: String
        public var to: String
        public var command: MetadataCommand {
            .queueTransfer(vhost: vhost, name: name, incarnation: incarnation, node: to)
        }
    }

    /// The moves that spread the leaders of `queues` over the cluster's nodes as evenly as their
    /// members allow: the busiest nodes' queues first; a leader moves to the member leading the
    /// fewest, while that member leads at least two fewer (so every move narrows the spread and
    /// none is undone by the next). At most `limit` moves.
    public func spreadingMoves(_ queues: [MessageQueue], among nodes: Set<String>? = nil, limit: Int = .max) -> [LeaderMove] {
        let nodes = nodes ?? Set(broker.clusterNodes.keys)
        var leads: [String: Int] = [:]
        for node in nodes { leads[node] = 0 }
        let chosen = queues.filter { $0.replicated != nil }
        for q in chosen { leads[q.homeNode, default: 0] += 1 }
        var moves: [LeaderMove] = []
        for q in chosen.sorted(by: { (leads[$0.homeNode] ?? 0, $1.vhost.name, $1.name) > (leads[$1.homeNode] ?? 0, $0.vhost.name, $0.name) }) {
            guard moves.count < limit, let rq = q.replicated else { break }
            let from = q.homeNode
            let mine = leads[from] ?? 0
            guard let target = rq.members.filter({ $0 != from && leads[$0] != nil }).min(by: { (leads[$0]!, $0) < (leads[$1]!, $1) }),
                leads[target]! + 1 < mine
            else { continue }
            leads[from] = mine - 1
            leads[target]! += 1
            moves.append(LeaderMove(vhost: q.vhost.name, name: q.name, incarnation: q.incarnation, from: from, to: target))
        }
        return moves
    }

    /// How long every node must have been up before leaders move on their own, and how many
    /// move per round (a round every `spreadingInterval`).
    static let settledFor: Int64 = 60_000
    static let spreadingInterval: Int64 = 15_000
    static let movesPerRound = 64

    /// Every second (from `tick`): one node of the cluster (the first by name among those up,
    /// so normally one proposes) spreads the leaders once the cluster has been whole for
    /// `settledFor`.
    func spreadLeadersIfSettled(now t: Int64) {
        let setting = broker.globalParameters[Self.spreadingParameter]
        guard let cq = broker.clusterQueues, setting?.stringValue != "off" else { return }
        let settled = (setting?.intValue ?? setting?.stringValue.flatMap { Int64($0) }).map { $0 * 1000 } ?? Self.settledFor
        let nodes = Set(broker.clusterNodes.keys)
        guard nodes.count > 1, nodes.allSatisfy({ $0 == broker.nodeName || cq.isUp($0) }) else {
            wholeSince = nil
            return
        }
        let since = wholeSince ?? t
        wholeSince = since
        guard t - since >= settled, t - lastSpreading >= min(settled, Self.spreadingInterval), nodes.min() == broker.nodeName else { return }
        // The last round's handovers first: planned from records that do not show them yet,
        // a round would move more than it should and the next would move some back.
        if t < spreadingUnderway.until && spreadingUnderway.moves.contains(where: { !isDone($0) }) { return }
        lastSpreading = t
        let queues = broker.vhosts.values.flatMap { $0.queues.values }
        // Only queues that are led (a recorded leader that is up): a queue in an election waits.
        let led = queues.filter { q in q.replicated.map { $0.members.contains(q.homeNode) } ?? false }
        let moves = spreadingMoves(led, among: nodes, limit: Self.movesPerRound)
        guard !moves.isEmpty else { return }
        broker.logger.info(
            "replicated queues: spreading leaders over the nodes (global parameter \(Self.spreadingParameter) = off turns this off)",
            metadata: ["moves": "\(moves.count)", "first": "\(moves[0].vhost)/\(moves[0].name) \(moves[0].from) -> \(moves[0].to)"])
        for m in moves { broker.metadataLog.propose(m.command) { _ in } }
        spreadingUnderway = (moves, t + Self.handoverTimeout)
    }

    /// How long a round waits for the previous one's handovers (a group gives up a transfer
    /// after 10 s: `QueueGroups.transferLeadership`).
    static let handoverTimeout: Int64 = 12_000

    /// Whether a move is recorded, or can no longer be (the queue or the member gone).
    private func isDone(_ m: LeaderMove) -> Bool {
        guard let q = broker.vhosts[m.vhost]?.queues[m.name], q.incarnation == m.incarnation, let r = q.replicated,
            r.members.contains(m.to)
        else { return true }
        return q.homeNode == m.to
    }
}
