/// Where a new queue lives (its home node): RabbitMQ's queue locators, from the
/// `x-queue-leader-locator` / `x-queue-master-locator` argument or the `queue-leader-locator` /
/// `queue-master-locator` policy key. The declaring node chooses, once, and the choice is part
/// of the declaration every node applies.
public import AMQPProtocol

enum QueueLocator: String {
    /// The node the declaring client is connected to (the default).
    case clientLocal = "client-local"
    /// The running member with the fewest queues.
    case balanced
    /// RabbitMQ's older names for the same.
    case minMasters = "min-masters"
    case leastLeaders = "least-leaders"
    /// A running member at random.
    case random
}

extension Broker {
    /// The home of a new queue declared on this node.
    public func chooseHome(vhost: VirtualHost, name: String, arguments: FieldTable, exclusive: Bool) -> String {
        guard !exclusive, clusterNodes.count > 1 else { return nodeName }  // an exclusive queue lives with its connection
        let type = QueueType(arguments: arguments)
        let fromPolicy = { (set: [String: [String: Policy]]) -> String? in
            let d = self.matchingPolicy(in: set, vhost: vhost.name, name: name, queueType: type)?.definition
            return d?["queue-leader-locator"]?.stringValue ?? d?["queue-master-locator"]?.stringValue
        }
        let raw = arguments["x-queue-leader-locator"]?.stringValue ?? arguments["x-queue-master-locator"]?.stringValue
            ?? fromPolicy(policies) ?? fromPolicy(operatorPolicies)
        guard let raw, let locator = QueueLocator(rawValue: raw), locator != .clientLocal else { return nodeName }
        // Members this node reaches now (a node that is down takes no new queues).
        let running = clusterNodes.keys.filter { $0 == nodeName || clusterQueues?.peers[$0]?.up == true }.sorted()
        if locator == .random { return running.randomElement() ?? nodeName }
        var counts: [String: Int] = [:]
        for v in vhosts.values { for q in v.queues.values { counts[q.homeNode, default: 0] += 1 } }
        return running.min { (counts[$0] ?? 0, $0) < (counts[$1] ?? 0, $1) } ?? nodeName
    }
}

extension Broker {
    /// A new replicated queue's members: its home (which leads first), then the members that
    /// hold the fewest replicas (by name on ties), up to `x-quorum-initial-group-size` (default
    /// 3) or the cluster's size. Computed from the metadata alone, so every node that applies
    /// the declaration places them the same way.
    func placeReplicas(home: String, arguments: FieldTable) -> [String] {
        let size = max(1, Int(arguments["x-quorum-initial-group-size"]?.integerValue ?? 3))
        let counts = replicatedQueues?.memberCounts ?? [:]
        let others = clusterNodes.keys.filter { $0 != home }.sorted { (counts[$0] ?? 0, $0) < (counts[$1] ?? 0, $1) }
        return [home] + others.prefix(size - 1)
    }
}
