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

/// How many members a replicated queue should have, and which: from its arguments (a quorum
/// queue's `x-quorum-initial-group-size`) or its policy (a classic queue's `ha-mode`).
public enum ReplicaPlacement: Equatable, Sendable {
    /// This many (capped at the cluster's size).
    case size(Int)
    /// Every member of the cluster, as it grows (`ha-mode: all`).
    case all
    /// These nodes, those of them in the cluster (`ha-mode: nodes`).
    case nodes([String])

    /// How many members it should have in a cluster of these nodes.
    func target(in cluster: Set<String>) -> Int {
        switch self {
        case .size(let n): return max(1, min(n, cluster.count))
        case .all: return max(1, cluster.count)
        case .nodes(let list): return max(1, Set(list).intersection(cluster).count)
        }
    }

    /// Whether `node` may be one of its members.
    func allows(_ node: String) -> Bool {
        if case .nodes(let list) = self { return list.contains(node) }
        return true
    }
}

extension Broker {
    /// The global parameter that turns replicated queues on in a cluster's metadata. A new
    /// cluster has it from the start; a cluster made by an earlier Warren gets it when a node
    /// of this version starts, so the declarations it replays (quorum queues of one home node,
    /// with their messages in that node's store) stay what they were, and only queues declared
    /// from then on are replicated.
    public static let replicationFeature = "warren-replicated-queues"

    /// Whether a new queue is replicated, and how: quorum queues always (in a cluster); a
    /// classic queue when a policy in force gives it an `ha-mode` (RabbitMQ's mirroring,
    /// with Raft's safety). Exclusive queues never are (they live with their connection).
    func replicaPlacement(vhost: String, name: String, type: QueueType, arguments: FieldTable, exclusive: Bool) -> ReplicaPlacement? {
        guard replicatedQueues != nil, !exclusive, globalParameters[Self.replicationFeature] != nil else { return nil }
        if type == .quorum { return .size(Int(arguments["x-quorum-initial-group-size"]?.integerValue ?? 3)) }
        let definition = (matchingPolicy(in: policies, vhost: vhost, name: name, queueType: type)?.definition ?? [:])
        switch definition["ha-mode"]?.stringValue {
        case "all"?: return .all
        case "exactly"?: return .size(Int(definition["ha-params"]?.intValue ?? 1))
        case "nodes"?: return .nodes(definition["ha-params"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        default: return nil
        }
    }

    /// A new replicated queue's members: its home (which stands for leader first), then the
    /// members that hold the fewest replicas (by name on ties), as many as its placement asks
    /// or the cluster has. Computed from the metadata alone, so every node that applies the
    /// declaration places them the same way.
    func placeReplicas(home: String, placement: ReplicaPlacement) -> [String] {
        let nodes = Set(clusterNodes.keys).union([home])
        let target = placement.target(in: nodes)
        var members = placement.allows(home) ? [home] : []
        members += replicatedQueues?.fewestReplicas(among: nodes.filter { $0 != home && placement.allows($0) }) ?? []
        return Array(members.prefix(target))
    }
}
