public import Logging

/// Settings of the broker core that clients can observe. Defaults are RabbitMQ's.
public struct BrokerConfiguration: Sendable {
    public var defaultUser = "guest"
    public var defaultPassword = "guest"
    public var defaultVirtualHost = "/"
    /// Users that may connect from loopback addresses only (RabbitMQ's `loopback_users`).
    public var loopbackUsers: Set<String> = ["guest"]
    public var channelMax: UInt16 = 2047
    public var frameMax: UInt32 = 131_072
    /// Heartbeat the server proposes, in seconds.
    public var heartbeat: UInt16 = 60
    /// Largest message body accepted.
    public var maxMessageSize: UInt64 = 16 * 1024 * 1024
    public var clusterName = "warren"
    public var productVersion = "0.1.0"

    public init() {}
}

/// A user account. Passwords are compared as given here; hashed storage comes with access control.
public struct User: Sendable, Hashable {
    public var name: String
    public var password: String
    public var tags: [String]

    public init(name: String, password: String, tags: [String] = []) {
        self.name = name
        self.password = password
        self.tags = tags
    }
}

/// The root of a node's broker state: virtual hosts, users and live connections.
///
/// Not thread-safe by design: one broker lives on one event loop, and every connection that
/// touches it runs on that loop (see docs/architecture.md).
public final class Broker {
    public let configuration: BrokerConfiguration
    public let logger: Logger
    public private(set) var vhosts: [String: VirtualHost] = [:]
    public var users: [String: User] = [:]
    public private(set) var connections: [ConnectionID: AMQPConnection] = [:]
    private var nextConnectionID: ConnectionID = 1
    private var randomSource: any RandomNumberGenerator

    public init(
        configuration: BrokerConfiguration = BrokerConfiguration(),
        logger: Logger = Logger(label: "warren.broker"),
        random: any RandomNumberGenerator = SystemRandomNumberGenerator()
    ) {
        self.configuration = configuration
        self.logger = logger
        self.randomSource = random
        self.users[configuration.defaultUser] = User(
            name: configuration.defaultUser, password: configuration.defaultPassword, tags: ["administrator"])
        _ = self.addVirtualHost(configuration.defaultVirtualHost)
    }

    @discardableResult
    public func addVirtualHost(_ name: String) -> VirtualHost {
        if let v = vhosts[name] { return v }
        let v = VirtualHost(name: name, broker: self)
        vhosts[name] = v
        return v
    }

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
