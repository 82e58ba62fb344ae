/// A link's state as the management API shows it (RabbitMQ's fields, /api/federation-links).
public struct FederationLinkStatus: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Connecting, declaring, or waiting to connect again after a failure.
        case starting
        case running
        /// The last attempt failed; `error` says why; the link tries again after
        /// reconnect-delay.
        case error
    }

    public var spec: FederationLinkSpec
    public var state: State
    public var error: String?
    /// The URI in use, without credentials.
    public var uri: String?
    /// The name of the link's connection to its own node.
    public var localConnection: String?
    /// When the state last changed (broker clock, ms since the epoch).
    public var since: Int64
    /// The node running the link.
    public var node: String

    public init(spec: FederationLinkSpec, state: State, error: String? = nil, uri: String? = nil, localConnection: String? = nil, since: Int64, node: String) {
        self.spec = spec
        self.state = state
        self.error = error
        self.uri = uri
        self.localConnection = localConnection
        self.since = since
        self.node = node
    }
}
