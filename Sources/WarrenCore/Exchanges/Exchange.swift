public import AMQPProtocol

/// An exchange in a virtual host: its declared properties and the bindings it is the source of.
public final class Exchange {
    public let name: String
    /// The type name as declared ("direct", "fanout", "topic", "headers").
    public let type: String
    public let durable: Bool
    public let autoDelete: Bool
    public let `internal`: Bool
    public let arguments: FieldTable
    /// Set for the exchanges every vhost has (`amq.*` and the default); they cannot be deleted.
    public let isBuiltIn: Bool
    /// A topic exchange (topic permissions apply).
    public let isTopic: Bool

    /// Bindings with this exchange as their source.
    public private(set) var bindings: Set<Binding> = []
    /// Bindings with this exchange as their destination (exchange-to-exchange).
    public internal(set) var incoming: Set<Binding> = []

    let router: any ExchangeRouter
    /// Where unroutable messages go: the `alternate-exchange` argument, else a policy's.
    public internal(set) var alternateExchange: String?
    public internal(set) var policyName: String?
    /// The federation upstream (or set) its policy names.
    public internal(set) var federation: FederationSelection?
    /// Bumped by every binding added or removed here: federation links poll it to know when to
    /// send the bindings upstream again.
    public private(set) var bindingsVersion: UInt64 = 0

    init(
        name: String, type: String, router: any ExchangeRouter, durable: Bool, autoDelete: Bool,
        internal: Bool, arguments: FieldTable, isBuiltIn: Bool = false
    ) {
        self.name = name
        self.type = type
        self.router = router
        self.durable = durable
        self.autoDelete = autoDelete
        self.internal = `internal`
        self.arguments = arguments
        self.isBuiltIn = isBuiltIn
        self.isTopic = type == ExchangeKind.topic.rawValue
    }

    /// True for the nameless default exchange.
    public var isDefault: Bool { name.isEmpty }

    func addBinding(_ binding: Binding) -> Bool {
        guard bindings.insert(binding).inserted else { return false }
        bindingsVersion &+= 1
        router.add(binding)
        return true
    }

    func removeBinding(_ binding: Binding) -> Bool {
        guard bindings.remove(binding) != nil else { return false }
        bindingsVersion &+= 1
        router.remove(binding)
        return true
    }

    /// Drops every binding from and to this exchange (the vhost is going away).
    func dropAllBindings() {
        for b in bindings { router.remove(b) }
        bindings.removeAll()
        incoming.removeAll()
    }
}

/// The default exchange: every queue is reachable by its name as the routing key. It keeps no
/// binding index of its own and looks the queue up in its vhost.
final class DefaultExchangeRouter: ExchangeRouter {
    unowned(unsafe) var vhost: VirtualHost?

    func add(_ binding: Binding) {}
    func remove(_ binding: Binding) {}

    func route(routingKey: String, headers: FieldTable?, into out: inout [BindingDestination]) {
        if let q = vhost?.queues[routingKey] { out.append(.queue(q)) }
    }
}
