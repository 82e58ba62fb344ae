/// What a user may do in a vhost: three regular expressions over resource names, as RabbitMQ's
/// `set_permissions` takes them. An empty pattern matches nothing.
public struct Permission: Sendable, Hashable {
    public var configure: String
    public var write: String
    public var read: String

    public init(configure: String, write: String, read: String) {
        self.configure = configure
        self.write = write
        self.read = read
    }

    public static let all = Permission(configure: ".*", write: ".*", read: ".*")
}

/// Per-exchange limits on routing keys for topic exchanges (`set_topic_permissions`).
public struct TopicPermission: Sendable, Hashable {
    public var exchange: String
    public var write: String
    public var read: String

    public init(exchange: String, write: String, read: String) {
        self.exchange = exchange
        self.write = write
        self.read = read
    }
}

/// The three kinds of access RabbitMQ checks.
public enum AccessKind: String, Sendable {
    case configure, write, read
}

/// Limits that can be set on a user.
public struct UserLimits: Sendable, Hashable {
    /// -1 or nil: no limit.
    public var maxConnections: Int?
    public var maxChannels: Int?
    public init(maxConnections: Int? = nil, maxChannels: Int? = nil) {
        self.maxConnections = maxConnections
        self.maxChannels = maxChannels
    }
}

/// Limits that can be set on a vhost.
public struct VirtualHostLimits: Sendable, Hashable {
    public var maxConnections: Int?
    public var maxQueues: Int?
    public init(maxConnections: Int? = nil, maxQueues: Int? = nil) {
        self.maxConnections = maxConnections
        self.maxQueues = maxQueues
    }
}

/// A compiled permission pattern. RabbitMQ matches with Erlang's `re:run` (a search, not an
/// anchored match); Swift's Regex `firstMatch` does the same. Invalid patterns match nothing.
public final class CompiledPattern: @unchecked Sendable {
    let source: String
    private let regex: Regex<AnyRegexOutput>?

    public init(_ source: String) {
        self.source = source
        self.regex = source.isEmpty ? nil : try? Regex(source)
    }

    public func matches(_ name: String) -> Bool {
        guard let regex else { return false }
        return (try? regex.firstMatch(in: name)) != nil
    }

    static func isValid(_ source: String) -> Bool {
        source.isEmpty || (try? Regex(source)) != nil
    }
}
