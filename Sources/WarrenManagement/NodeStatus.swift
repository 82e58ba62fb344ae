public import WarrenCore

/// What the API reports about the node itself that the broker core does not know: process,
/// memory, disk, file descriptors, listeners. The node shell measures it for each request.
public struct NodeStatus: Sendable {
    public struct Listener: Sendable {
        public var protocolName: String
        public var ip: String
        public var port: Int
        public init(protocolName: String, ip: String, port: Int) {
            self.protocolName = protocolName
            self.ip = ip
            self.port = port
        }
    }

    public var name: String
    public var pid: Int32 = 0
    public var uptimeMilliseconds: Int64 = 0
    public var memoryUsed: Int = 0
    public var memoryLimit: Int = 0
    public var diskFree: Int = 0
    public var diskFreeLimit: Int = 0
    public var fdUsed: Int = 0
    public var fdTotal: Int = 0
    public var processors: Int = 1
    public var listeners: [Listener] = []
    public var managementPort: Int = 0
    /// The cluster as this node sees it (nil: a broker without a cluster layer, in tests).
    public var cluster: ClusterStatus?

    public init(name: String) { self.name = name }
}

/// The cluster's members as this node sees them, for `/api/nodes` and `cluster_status`.
public struct ClusterStatus: Sendable {
    public struct Member: Sendable {
        public var name: String
        /// Reachable from this node now (itself always).
        public var running: Bool
        public var voter: Bool
        /// What it last said of itself (`NodeStatus.gossip`), if recently.
        public var status: JSONValue?
        public init(name: String, running: Bool, voter: Bool, status: JSONValue?) {
            self.name = name
            self.running = running
            self.voter = voter
            self.status = status
        }
    }

    public var name: String
    public var members: [Member]
    public var leader: String?
    public var term: UInt64
    /// Members this node cannot reach now.
    public var partitions: [String]
    /// Nodes that refused this one, and why.
    public var refusals: [String: String]
    /// This node's AMQP listeners are stopped (`stop_app`).
    public var appStopped: Bool

    public init(name: String, members: [Member], leader: String?, term: UInt64, partitions: [String], refusals: [String: String], appStopped: Bool) {
        self.name = name
        self.members = members
        self.leader = leader
        self.term = term
        self.partitions = partitions
        self.refusals = refusals
        self.appStopped = appStopped
    }
}

extension NodeStatus {
    /// What a node tells the others about itself every few seconds: the figures its
    /// `/api/nodes` entry shows, and its alarms (which block publishers cluster-wide).
    public func gossip(alarms: Set<String>, connections: Int) -> JSONValue {
        var o: [String: JSONValue] = [:]
        o["name"] = .string(name)
        o["os_pid"] = .string(String(pid))
        o["uptime"] = .int(uptimeMilliseconds)
        o["mem_used"] = .int(Int64(memoryUsed))
        o["mem_limit"] = .int(Int64(memoryLimit))
        o["mem_alarm"] = .bool(alarms.contains("memory"))
        o["disk_free"] = .int(Int64(diskFree))
        o["disk_free_limit"] = .int(Int64(diskFreeLimit))
        o["disk_free_alarm"] = .bool(alarms.contains("disk"))
        o["fd_used"] = .int(Int64(fdUsed))
        o["fd_total"] = .int(Int64(fdTotal))
        o["sockets_used"] = .int(Int64(connections))
        o["sockets_total"] = .int(Int64(fdTotal))
        o["processors"] = .int(Int64(processors))
        o["alarms"] = .array(alarms.sorted().map(JSONValue.string))
        var ls: [JSONValue] = []
        for l in listeners {
            ls.append(.object(["protocol": .string(l.protocolName), "ip_address": .string(l.ip), "port": .int(Int64(l.port))]))
        }
        o["listeners"] = .array(ls)
        return .object(o)
    }
}

/// What only the node shell can do, asked for through the API (after the API checked who asks):
/// the shell carries it out and answers.
public enum NodeAction: Sendable, Equatable {
    case clusterStatus
    /// `GET /api/health/checks/node-is-quorum-critical`: the replicated queues that would lose
    /// their majority if this node stopped (the broker's part); the node adds the metadata's.
    case quorumCritical([QuorumCriticalQueue])
    case forgetNode(String)
    case joinCluster(String)
    case reset
    case stopApp
    case startApp
}

/// A replicated queue with a member on this node whose other online members are fewer than a
/// majority of its members: stopping this node would leave it unavailable.
public struct QuorumCriticalQueue: Sendable, Equatable {
    public var name: String
    public var vhost: String
    public var type: String
    public var members: [String]
    public var online: [String]
    public init(name: String, vhost: String, type: String, members: [String], online: [String]) {
        self.name = name
        self.vhost = vhost
        self.type = type
        self.members = members
        self.online = online
    }
}
