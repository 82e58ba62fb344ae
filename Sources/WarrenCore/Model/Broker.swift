public import Logging

/// Settings of the broker core that clients can observe. Defaults are RabbitMQ's.
public struct BrokerConfiguration: Sendable {
    public var defaultUser = "guest"
    public var defaultPassword = "guest"
    public var defaultVirtualHost = "/"
    /// Create the default user and vhost at start. Off when definitions are imported at boot:
    /// RabbitMQ then creates only what the definitions say (no stray guest account).
    public var seedDefaults = true
    /// Users that may connect from loopback addresses only (RabbitMQ's `loopback_users`).
    public var loopbackUsers: Set<String> = ["guest"]
    public var channelMax: UInt16 = 2047
    public var frameMax: UInt32 = 131_072
    /// Heartbeat the server proposes, in seconds.
    public var heartbeat: UInt16 = 60
    /// Largest message body accepted: 128 MiB, RabbitMQ 3.x's limit (4.x lowered it to 16 MiB,
    /// which refuses messages clients written for 3.x send; docs/protocol.md).
    public var maxMessageSize: UInt64 = 128 * 1024 * 1024
    /// Messages per queue (per priority level) kept in memory when the store holds them anyway
    /// (persistent messages on durable queues); the rest of a backlog waits in the store.
    public var queueWindowMessages = 2048
    /// The same for lazy queues (`x-queue-mode: lazy`), whatever the messages.
    public var lazyWindowMessages = 64
    /// Body bytes a queue keeps in memory before even transient messages go to the store.
    public var transientWindowBytes = 64 * 1024 * 1024
    public var clusterName = "warren"
    /// This node's name (`warren@host`): in direct reply-to names, management views, logs.
    public var nodeName = "warren@localhost"
    public var productVersion = "0.1.0"

    public init() {}
}

/// A user account: a RabbitMQ-format password hash (nil: no password login), tags, limits.
public struct User: Sendable, Hashable {
    public var name: String
    public var passwordHash: PasswordHash?
    public var tags: [String]
    public var limits: UserLimits

    public init(name: String, password: String?, tags: [String] = [], limits: UserLimits = UserLimits()) {
        self.name = name
        self.passwordHash = password.map { PasswordHash.make(password: $0) }
        self.tags = tags
        self.limits = limits
    }

    public init(name: String, passwordHash: PasswordHash?, tags: [String] = [], limits: UserLimits = UserLimits()) {
        self.name = name
        self.passwordHash = passwordHash
        self.tags = tags
        self.limits = limits
    }

    public func authenticate(password: String) -> Bool {
        passwordHash?.matches(password) ?? false
    }

    public func hasTag(_ tag: String) -> Bool { tags.contains(tag) }
}

/// The root of a node's broker state: virtual hosts, users and live connections.
///
/// Not thread-safe by design: one broker lives on one event loop, and every connection that
/// touches it runs on that loop (see docs/architecture.md).
public final class Broker {
    public let configuration: BrokerConfiguration
    public let logger: Logger
    public internal(set) var vhosts: [String: VirtualHost] = [:]
    public internal(set) var users: [String: User] = [:]
    public private(set) var connections: [ConnectionID: AMQPConnection] = [:]
    /// Permissions by vhost, then user.
    public internal(set) var permissions: [String: [String: Permission]] = [:]
    /// Topic permissions by vhost, then user, then exchange.
    public internal(set) var topicPermissions: [String: [String: [String: TopicPermission]]] = [:] {
        didSet { hasTopicPermissions = topicPermissions.values.contains { !$0.isEmpty } }
    }
    /// False while no topic permission exists anywhere: publishes skip the check.
    public private(set) var hasTopicPermissions = false
    var compiledPermissions: [String: [String: CompiledPermission]] = [:]
    /// Topic permission patterns after {username}/{vhost} expansion, compiled once each.
    var compiledTopicPatterns: [String: CompiledPattern] = [:]
    /// Bumped whenever permissions change, so channels drop what they cached.
    public internal(set) var permissionsVersion: UInt64 = 0
    /// Runtime parameters by vhost, component and name (federation upstreams, ...), and global
    /// ones by name; stored as JSON-like values.
    public internal(set) var parameters: [String: [String: [String: JSONValue]]] = [:]
    public internal(set) var globalParameters: [String: JSONValue] = [:]
    /// Policies and operator policies by vhost, then name.
    public internal(set) var policies: [String: [String: Policy]] = [:]
    public internal(set) var operatorPolicies: [String: [String: Policy]] = [:]
    public let clock: any BrokerClock
    /// Queues with deadlines, looked at by `tick()`.
    var timedQueues: [ObjectIdentifier: MessageQueue] = [:]
    /// Direct reply-to: the channel each reply token belongs to.
    var replyTargets: [String: ChannelSession] = [:]
    /// Resource alarms in force anywhere in the cluster (memory, disk); publishers are blocked
    /// while any is.
    public internal(set) var activeAlarms: Set<String> = []
    /// This node's own alarms.
    public internal(set) var localAlarms: Set<String> = []
    /// Other members' alarms, by node.
    public internal(set) var remoteAlarms: [String: Set<String>] = [:]
    /// Where durable state goes; nil keeps everything in memory (unit tests, microbench).
    public internal(set) var messageStore: (any MessageStore)?
    /// True while recovered metadata is applied: nothing is journaled a second time.
    public internal(set) var isReplaying = false
    /// What the store recovered for durable queues, by storage id, until their queues exist.
    var recoveredQueues: [StoreQueueID: RecoveredQueue] = [:]
    /// True: the store's journal holds the definitions (a broker whose metadata log applies at
    /// once: unit tests, the fuzzer). False: a replicated log holds them (the node's Raft
    /// group) and the store records only which storage each durable queue of this node has
    /// (`StorageClaim`).
    public var definitionsInStore = true
    /// Storage the store recovered, by the queue incarnation that owns it, until that queue is
    /// made again by replaying the metadata log.
    var storageClaims: [StorageClaim: StoreQueueID] = [:]
    /// The position of the command being applied (0 outside `apply`): new queues take it as
    /// their incarnation.
    public internal(set) var applyingIndex: UInt64 = 0
    /// Channels with publisher confirms or a tx.commit-ok waiting for the store's fsync.
    var durabilityWaiters: [ObjectIdentifier: ChannelSession] = [:]
    /// Memory is tight: queues send new messages to the store instead of keeping them.
    public var pagingActive = false
    /// Message counters since start (management API, Prometheus).
    @exclusivity(unchecked) public internal(set) var stats = BrokerStats()
    /// The cluster's name (`set_cluster_name`): a definition like the others.
    public internal(set) var clusterName: String
    /// The cluster's members by node name, with the address each is reached at on the cluster
    /// port (empty for a broker that is no cluster's member).
    public internal(set) var clusterNodes: [String: String] = [:]
    /// Called after a committed change of `clusterNodes` or `clusterName` (the cluster layer
    /// dials new members).
    public var onClusterChange: (() -> Void)?
    /// The secret the node's own clients (federation links) log in with over loopback (see
    /// Broker+InternalLogin.swift); nil: no internal login.
    public var internalLoginSecret: [UInt8]?
    /// Federation links' states as their node's link supervisor last reported them (the
    /// management API lists them); keyed by link id.
    public var federationLinks: [String: FederationLinkStatus] = [:]
    /// Restarts a link this node runs (set by the node's federation supervisor).
    public var restartFederationLink: ((String) -> Bool)?
    /// Queues of other nodes used from here and this node's queues used from there; nil for a
    /// broker that is no cluster's member (`enableClusterQueues`).
    public private(set) var clusterQueues: ClusterQueues?
    /// This node's replicated queues (a node in a cluster): their groups' logs and leaders.
    public internal(set) var replicatedQueues: ReplicatedQueues?

    /// Makes queues of every member usable from this node (a cluster node calls it at start).
    public func enableClusterQueues() -> ClusterQueues {
        if let cq = clusterQueues { return cq }
        let cq = ClusterQueues(broker: self)
        clusterQueues = cq
        return cq
    }
    /// Where definition changes go to be ordered and made durable (`MetadataLog`): applied at
    /// once by default; a node puts its Raft group here.
    public var metadataLog: any MetadataLog {
        get { _metadataLog ?? LocalMetadataLog(broker: self) }
        set { _metadataLog = newValue }
    }
    private var _metadataLog: (any MetadataLog)?
    private var nextConnectionID: ConnectionID = 1
    private var queueSerial: UInt64 = 0
    /// `LocalMetadataLog`'s positions.
    var localLogIndex: UInt64 = 0

    func nextQueueSerial() -> UInt64 {
        queueSerial += 1
        return queueSerial
    }
    private var randomSource: any RandomNumberGenerator

    public init(
        configuration: BrokerConfiguration = BrokerConfiguration(),
        logger: Logger = Logger(label: "warren.broker"),
        clock: any BrokerClock = SystemClock(),
        random: any RandomNumberGenerator = SystemRandomNumberGenerator()
    ) {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        self.clusterName = configuration.clusterName
        self.randomSource = random
        // As RabbitMQ on first boot: the default user, an administrator with full permissions
        // on the default vhost.
        guard configuration.seedDefaults else { return }
        addVirtualHost(configuration.defaultVirtualHost, description: "Default virtual host")
        putUser(User(name: configuration.defaultUser, password: configuration.defaultPassword, tags: ["administrator"]))
        setPermissions(user: configuration.defaultUser, vhost: configuration.defaultVirtualHost, .all)
    }

    /// This node's name (`warren@host`).
    public var nodeName: String { configuration.nodeName }

    // MARK: connections

    func register(_ connection: AMQPConnection) -> ConnectionID {
        let id = nextConnectionID
        nextConnectionID += 1
        connections[id] = connection
        return id
    }

    func unregister(_ id: ConnectionID) {
        connections[id] = nil
    }

    // MARK: names

    /// A direct reply-to address, shaped as RabbitMQ's: `amq.rabbitmq.reply-to.` + base64 of
    /// who the requester is (node, connection, channel) + `.` + base64 of 16 random bytes. The
    /// first part lets a reply find the requester's node; the second makes it unguessable.
    func replyToName(connection: ConnectionID, channel: UInt16) -> String {
        var who = Array(configuration.nodeName.utf8)
        who.append(0)
        withUnsafeBytes(of: connection.bigEndian) { who.append(contentsOf: $0) }
        withUnsafeBytes(of: channel.bigEndian) { who.append(contentsOf: $0) }
        var key: [UInt8] = []
        key.reserveCapacity(16)
        for _ in 0..<2 { withUnsafeBytes(of: randomSource.next() as UInt64) { key.append(contentsOf: $0) } }
        return "amq.rabbitmq.reply-to." + Base64.encode(who) + "." + Base64.encode(key)
    }

    /// A server-generated name: `prefix` and 22 URL-safe base64 characters of 128 random bits,
    /// the shape of RabbitMQ's `amq.gen-…` and `amq.ctag-…`.
    func generateName(prefix: String) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var a = randomSource.next() as UInt64
        var b = randomSource.next() as UInt64
        var out = [UInt8]()
        out.reserveCapacity(22)
        for i in 0..<22 {
            if i < 11 {
                out.append(alphabet[Int(a & 63)])
                a >>= 6
            } else {
                out.append(alphabet[Int(b & 63)])
                b >>= 6
            }
        }
        return prefix + String(decoding: out, as: UTF8.self)
    }
}
