public import AMQPProtocol

/// A virtual host: an isolated namespace of exchanges, queues and bindings.
///
/// These are the operations behind the AMQP methods and, later, the management API. They check
/// the rules RabbitMQ applies to objects (reserved names, equivalence, in-use checks); who may
/// call them is decided by the caller.
public final class VirtualHost {
    public let name: String
    public unowned(unsafe) let broker: Broker
    public internal(set) var exchanges: [String: Exchange] = [:]
    public internal(set) var queues: [String: MessageQueue] = [:]
    /// Reused by `route` so routing allocates nothing.
    private var destinationScratch: [BindingDestination] = []
    public internal(set) var descriptionText = ""
    public internal(set) var tags: [String] = []
    public internal(set) var limits = VirtualHostLimits()

    /// The exchanges every vhost starts with, by name and type.
    public static let builtInExchanges: [(String, ExchangeKind)] = [
        ("amq.direct", .direct), ("amq.fanout", .fanout), ("amq.topic", .topic),
        ("amq.headers", .headers), ("amq.match", .headers),
    ]

    /// Bindings hold their exchange and their destination strongly, and queues and exchanges
    /// list their bindings, so a bound pair is a reference cycle; while the vhost lives that is
    /// the graph, and unbinding breaks it. When the vhost itself goes (a broker released, e.g.
    /// in tests or the fuzzer), its whole graph goes with it. Found by the fuzzer's leak check.
    deinit {
        for x in exchanges.values { x.dropAllBindings() }
        for q in queues.values { q.bindings.removeAll() }
    }

    init(name: String, broker: Broker) {
        self.name = name
        self.broker = broker
        let defaultRouter = DefaultExchangeRouter()
        exchanges[""] = Exchange(
            name: "", type: "direct", router: defaultRouter, durable: true, autoDelete: false, internal: false,
            arguments: [:], isBuiltIn: true)
        for (xname, kind) in Self.builtInExchanges {
            exchanges[xname] = Exchange(
                name: xname, type: kind.rawValue, router: kind.makeRouter(), durable: true, autoDelete: false,
                internal: false, arguments: [:], isBuiltIn: true)
        }
        defaultRouter.vhost = self
    }

    public var defaultExchange: Exchange { exchanges[""]! }

    func describe(exchange name: String) -> String { "exchange '\(name)' in vhost '\(self.name)'" }
    func describe(queue name: String) -> String { "queue '\(name)' in vhost '\(self.name)'" }

    // MARK: exchanges

    public func exchange(named name: String) throws(AMQPError) -> Exchange {
        guard let x = exchanges[name] else { throw .notFound("no \(describe(exchange: name))") }
        return x
    }

    /// Declares an exchange, or checks an existing one is equivalent. The caller has already
    /// refused the default exchange.
    @discardableResult
    public func declareExchange(
        name: String, type: String, durable: Bool, autoDelete: Bool, internal isInternal: Bool, arguments: FieldTable
    ) throws(AMQPError) -> Exchange {
        guard let kind = ExchangeKind(rawValue: type) else {
            throw .commandInvalid("unknown exchange type '\(type)'")
        }
        if let existing = exchanges[name] {
            try assertEquivalent(existing, type: type, durable: durable, autoDelete: autoDelete, internal: isInternal, arguments: arguments)
            return existing
        }
        if name.hasPrefix("amq.") {
            throw .accessRefused("exchange name '\(name)' contains reserved prefix 'amq.*'")
        }
        let x = Exchange(
            name: name, type: kind.rawValue, router: kind.makeRouter(arguments: arguments), durable: durable, autoDelete: autoDelete,
            internal: isInternal, arguments: arguments)
        exchanges[name] = x
        applyPolicy(to: x)
        if durable { broker.journal(Broker.putChange("exchanges", Broker.json(exchange: x, vhost: self.name))) }
        return x
    }

    func assertEquivalent(
        _ x: Exchange, type: String, durable: Bool, autoDelete: Bool, internal isInternal: Bool, arguments: FieldTable
    ) throws(AMQPError) {
        let what = describe(exchange: x.name)
        func differ(_ arg: String, _ received: String, _ current: String) -> AMQPError {
            .preconditionFailed("inequivalent arg '\(arg)' for \(what): received '\(received)' but current is '\(current)'")
        }
        if x.type != type { throw differ("type", type, x.type) }
        if x.durable != durable { throw differ("durable", "\(durable)", "\(x.durable)") }
        if x.autoDelete != autoDelete { throw differ("auto_delete", "\(autoDelete)", "\(x.autoDelete)") }
        if x.internal != isInternal { throw differ("internal", "\(isInternal)", "\(x.internal)") }
        if arguments["alternate-exchange"] != x.arguments["alternate-exchange"] {
            let received = arguments["alternate-exchange"].map(QueueArguments.display) ?? "none"
            let current = x.arguments["alternate-exchange"].map(QueueArguments.display) ?? "none"
            throw differ("alternate-exchange", received, current)
        }
    }

    /// Deletes an exchange and every binding to or from it. Missing exchanges are fine, as in
    /// RabbitMQ; built-in ones are refused.
    public func deleteExchange(named name: String, ifUnused: Bool) throws(AMQPError) {
        if name.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        guard let x = exchanges[name] else { return }
        if x.isBuiltIn { throw .accessRefused("deletion of system \(describe(exchange: name)) not allowed") }
        if ifUnused && !x.bindings.isEmpty { throw .preconditionFailed("\(describe(exchange: name)) in use") }
        removeExchange(x)
    }

    func removeExchange(_ x: Exchange) {
        exchanges[x.name] = nil
        // Replaying the delete removes the bindings too: they are not journaled one by one.
        for b in x.bindings { _ = removeBinding(b, autoDelete: true, journaled: false) }
        for b in x.incoming { _ = removeBinding(b, autoDelete: true, journaled: false) }
        if x.durable { broker.journal(Broker.deleteChange("exchange", ["vhost": .string(name), "name": .string(x.name)])) }
    }

    // MARK: queues

    /// `no queue 'x' in vhost 'v'`, or 405 when another connection owns it exclusively.
    public func queue(named name: String, for connection: QueueOwner? = nil) throws(AMQPError) -> MessageQueue {
        guard let q = queues[name] else { throw .notFound("no \(describe(queue: name))") }
        if connection != nil { try checkExclusiveAccess(q, connection: connection) }
        return q
    }

    func checkExclusiveAccess(_ q: MessageQueue, connection: QueueOwner?) throws(AMQPError) {
        if let owner = q.exclusiveOwner, owner != connection { throw lockedError(q.name) }
    }

    func lockedError(_ name: String) -> AMQPError {
        .resourceLocked(
            "cannot obtain exclusive access to locked \(describe(queue: name)). It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
        )
    }

    /// Checks that redeclaring an existing queue with `d` is allowed and equivalent (405 for
    /// another connection's exclusive queue, 406 `inequivalent arg`). Declaring channels call it
    /// before proposing: an equivalent redeclaration needs no change.
    public func checkRedeclaration(_ q: MessageQueue, _ d: QueueDeclaration) throws(AMQPError) {
        try checkExclusiveAccess(q, connection: d.requester)
        if q.isExclusive != d.exclusive { throw lockedError(q.name) }
        let what = describe(queue: q.name)
        if q.durable != d.durable {
            throw .preconditionFailed("inequivalent arg 'durable' for \(what): received '\(d.durable)' but current is '\(q.durable)'")
        }
        if q.autoDelete != d.autoDelete {
            throw .preconditionFailed(
                "inequivalent arg 'auto_delete' for \(what): received '\(d.autoDelete)' but current is '\(q.autoDelete)'")
        }
        try QueueArguments.assertEquivalent(current: q.arguments, received: d.arguments, resource: what)
    }

    /// The rules a new queue must meet (reserved names, arguments, quorum queues' properties,
    /// the vhost's queue limit), in RabbitMQ's order. Declaring channels check them before
    /// proposing, and applying the declaration checks them again.
    public func validateNewQueue(_ d: QueueDeclaration) throws(AMQPError) {
        let name = d.name
        if name.hasPrefix("amq.") && !d.serverNamed {
            throw .accessRefused("queue name '\(name)' contains reserved prefix 'amq.*'")
        }
        let type = QueueType(arguments: d.arguments)
        if type == .quorum && d.serverNamed {
            throw .preconditionFailed("Cannot declare a server-named queue for type \(type.moduleName)")
        }
        try QueueArguments.validate(d.arguments, queue: name, vhost: self.name)
        if type == .quorum {
            try QueueArguments.checkQuorum(
                d.arguments, queue: name, vhost: self.name, durable: d.durable, exclusive: d.exclusive, autoDelete: d.autoDelete)
        }
        if let max = limits.maxQueues, max >= 0, queues.count >= max {
            throw .preconditionFailed("cannot declare queue '\(name)': queue limit in vhost '\(self.name)' (\(max)) is reached")
        }
    }

    /// Declares a queue, or checks an existing one is equivalent. Returns it and whether it is new.
    public func declareQueue(
        _ d: QueueDeclaration, storeID: StoreQueueID? = nil, incarnation: UInt64? = nil
    ) throws(AMQPError) -> (queue: MessageQueue, created: Bool) {
        let name = d.name
        let durable = d.durable
        let exclusive = d.exclusive
        let autoDelete = d.autoDelete
        let arguments = d.arguments
        if let q = queues[name] {
            try checkRedeclaration(q, d)
            q.lastUsed = broker.clock.nowMilliseconds()
            return (q, false)
        }
        try validateNewQueue(d)
        let q = MessageQueue(
            name: name, vhost: self, durable: durable, autoDelete: autoDelete,
            exclusiveOwner: d.exclusiveOwner, arguments: arguments, settings: settings(forQueue: name, arguments: arguments),
            now: broker.clock.nowMilliseconds(), homeNode: d.node)
        q.incarnation = incarnation ?? broker.applyingIndex
        queues[name] = q
        // (A state snapshot says which of its queues are replicated: an empty list, none.)
        if let rq = broker.replicatedQueues, d.members?.isEmpty != true,
            let placement = broker.replicaPlacement(vhost: self.name, name: name, type: q.type, arguments: arguments, exclusive: exclusive)
        {
            // Its messages live in its group's log on each member, not in the store.
            let members = d.members ?? broker.placeReplicas(home: d.node, placement: placement)
            q.replicated = ReplicatedQueue(queue: q, members: members, placement: placement, leaderTerm: d.leaderTerm, manager: rq)
        }
        if durable && !exclusive && q.isLocal && q.replicated == nil, let store = broker.messageStore {
            if broker.definitionsInStore {
                // A durable queue's storage is named in its journaled definition; after a restart
                // the definition names it again and the queue takes back what the store recovered.
                q.storeQueue = store.openQueue(id: storeID, durable: true)
                if let id = storeID, let recovered = broker.recoveredQueues.removeValue(forKey: id) { q.attachRecovered(recovered) }
                broker.journal(Broker.putChange("queues", Broker.json(queue: q, withStorage: true)))
            } else {
                // The metadata log makes this incarnation again after a restart; the claim the
                // store journaled says which storage is its.
                let claim = StorageClaim(q)
                let id = broker.storageClaims.removeValue(forKey: claim)
                q.storeQueue = store.openQueue(id: id, durable: true)
                if let id, let recovered = broker.recoveredQueues.removeValue(forKey: id) { q.attachRecovered(recovered) }
                if id == nil, let opened = q.storeQueue?.id { store.appendMetadata(claim.json(storage: opened)) }
            }
        }
        if q.hasDeadlines { broker.watch(q) }
        // Every queue is bound to the default exchange implicitly; the default router looks
        // queues up by name, so nothing is stored.
        return (q, true)
    }

    /// The if-unused / if-empty checks of a queue deletion (RabbitMQ's texts).
    public func checkDeletable(_ q: MessageQueue, ifUnused: Bool, ifEmpty: Bool) throws(AMQPError) {
        try checkDeletable(q, ifUnused: ifUnused, ifEmpty: ifEmpty, consumers: q.consumerCount, messages: q.messageCount)
    }

    /// The same with the counts of the queue's home node.
    func checkDeletable(_ q: MessageQueue, ifUnused: Bool, ifEmpty: Bool, consumers: Int, messages: Int) throws(AMQPError) {
        if ifUnused && consumers > 0 { throw .preconditionFailed("\(q.resourceDescription) in use") }
        if ifEmpty && messages > 0 { throw .preconditionFailed("\(q.resourceDescription) not empty") }
    }

    /// Removes a queue unconditionally (exclusive owner gone, auto-delete, vhost deletion) and
    /// tells its consumers at once.
    @discardableResult
    func removeQueue(_ q: MessageQueue) -> Int {
        let (n, cancelled) = detachQueue(q)
        for c in cancelled { c.cancelledByBroker() }
        return n
    }

    func detachQueue(_ q: MessageQueue) -> (messages: Int, cancelled: [Consumer]) {
        guard !q.isDeleted, queues[q.name] === q else { return (0, []) }
        queues[q.name] = nil
        for b in q.bindings { _ = removeBinding(b, autoDelete: true, journaled: false) }
        if q.durable && !q.isExclusive { broker.journal(Broker.deleteChange("queue", ["vhost": .string(name), "name": .string(q.name)])) }
        if !broker.definitionsInStore, q.storeQueue?.durable == true, let store = broker.messageStore {
            store.appendMetadata(StorageClaim(q).unclaimJSON)
        }
        let (n, cancelled) = q.markDeleted()
        // A replicated queue's group goes; its consumers that wait for a leader are told too.
        let waiting = q.replicated?.close() ?? []
        if q.isLocal || q.replicated != nil { broker.clusterQueues?.queueDeleted(q) }
        // This node's consumers of a queue of another node hear of the deletion from here.
        if !q.isLocal, let cq = broker.clusterQueues { return (n, cancelled + cq.takeConsumers(of: q) + waiting) }
        return (n, cancelled + waiting)
    }

    // MARK: bindings

    /// Adds a binding; binding twice is not an error.
    public func bind(source: Exchange, destination: BindingDestination, routingKey: String, arguments: FieldTable)
        throws(AMQPError)
    {
        if source.isDefault || { if case .exchange(let d) = destination { return d.isDefault } else { return false } }() {
            throw .accessRefused("operation not permitted on the default exchange")
        }
        let b = Binding(source: source, destination: destination, routingKey: routingKey, arguments: arguments)
        guard source.addBinding(b) else { return }
        switch destination {
        case .queue(let q): q.bindings.insert(b)
        case .exchange(let x): x.incoming.insert(b)
        }
        if b.isDurable { broker.journal(Broker.putChange("bindings", Broker.json(b, vhost: name))) }
    }

    /// Removes a binding; a binding that does not exist is not an error, as in RabbitMQ.
    public func unbind(source: Exchange, destination: BindingDestination, routingKey: String, arguments: FieldTable)
        throws(AMQPError)
    {
        if source.isDefault { throw .accessRefused("operation not permitted on the default exchange") }
        let b = Binding(source: source, destination: destination, routingKey: routingKey, arguments: arguments)
        _ = removeBinding(b, autoDelete: true)
    }

    private func removeBinding(_ b: Binding, autoDelete: Bool, journaled: Bool = true) -> Bool {
        guard b.source.removeBinding(b) else { return false }
        switch b.destination {
        case .queue(let q): q.bindings.remove(b)
        case .exchange(let x): x.incoming.remove(b)
        }
        if journaled && b.isDurable {
            broker.journal(
                Broker.deleteChange(
                    "binding",
                    [
                        "vhost": .string(name), "source": .string(b.source.name), "destination": .string(b.destination.name),
                        "destination_type": .string(b.destination.kind), "routing_key": .string(b.routingKey),
                        "arguments": Broker.json(b.arguments),
                    ]))
        }
        // An auto-delete exchange goes when its last binding as a source goes.
        if autoDelete && b.source.autoDelete && b.source.bindings.isEmpty && exchanges[b.source.name] === b.source {
            removeExchange(b.source)
        }
        return true
    }

    // MARK: policies

    func settings(forQueue name: String, arguments: FieldTable) -> QueueSettings {
        let type = QueueType(arguments: arguments)
        return QueueSettings.resolve(
            type: type, arguments: arguments,
            policy: broker.matchingPolicy(in: broker.policies, vhost: self.name, name: name, queueType: type),
            operatorPolicy: broker.matchingPolicy(in: broker.operatorPolicies, vhost: self.name, name: name, queueType: type))
    }

    func applyPolicy(to x: Exchange) {
        guard !x.isBuiltIn || !x.isDefault else { return }
        let policy = broker.matchingPolicy(in: broker.policies, vhost: self.name, name: x.name, queueType: nil)
        x.policyName = policy?.name
        x.alternateExchange = x.arguments["alternate-exchange"]?.stringValue ?? policy?.definition["alternate-exchange"]?.stringValue
        x.federation = policy.flatMap { FederationSelection(policyDefinition: $0.definition) }
    }

    /// Re-resolves every queue's and exchange's settings after a policy change.
    func applyPolicies() {
        // In name order: mirroring changes place replicas by the counts so far, and every node
        // must place them the same way.
        for q in queues.values.sorted(by: { $0.name < $1.name }) {
            q.apply(settings(forQueue: q.name, arguments: q.arguments))
            applyMirroring(to: q)
        }
        for x in exchanges.values { applyPolicy(to: x) }
    }

    /// RabbitMQ applies `ha-mode` to queues that exist: a classic queue a mirroring policy now
    /// applies to becomes replicated; one whose `ha-mode`/`ha-params` changed gets its new
    /// members. (A policy that stops applying leaves the queue replicated.)
    func applyMirroring(to q: MessageQueue) {
        guard q.type == .classic, !q.isDeleted, let manager = broker.replicatedQueues,
            let placement = broker.replicaPlacement(vhost: name, name: q.name, type: q.type, arguments: q.arguments, exclusive: q.exclusiveOwner != nil)
        else { return }
        if let r = q.replicated {
            if placement != r.placement { r.placementChanged(placement) }
        } else {
            q.becomeReplicated(placement: placement, manager: manager)
        }
    }

    // MARK: routing

    /// Routes through `exchange`, and when nothing takes the message, through its alternate
    /// exchange (argument or policy), and that one's, each at most once.
    public func routeWithAlternates(_ exchange: Exchange, routingKey: String, headers: FieldTable?, into queues: inout [MessageQueue]) {
        let before = queues.count
        route(exchange, routingKey: routingKey, headers: headers, into: &queues)
        guard queues.count == before, var next = exchange.alternateExchange else { return }
        var visited: Set<ObjectIdentifier> = [ObjectIdentifier(exchange)]
        while let ae = exchanges[next], visited.insert(ObjectIdentifier(ae)).inserted {
            route(ae, routingKey: routingKey, headers: headers, into: &queues)
            if queues.count != before { return }
            guard let further = ae.alternateExchange else { return }
            next = further
        }
    }

    /// The queues a message published to `exchange` reaches, each once, following
    /// exchange-to-exchange bindings (cycles are cut).
    public func route(_ exchange: Exchange, routingKey: String, headers: FieldTable?, into queues: inout [MessageQueue]) {
        var destinations = destinationScratch
        destinationScratch = []
        destinations.removeAll(keepingCapacity: true)
        defer {
            destinations.removeAll(keepingCapacity: true)
            destinationScratch = destinations
        }
        exchange.router.route(routingKey: routingKey, headers: headers, into: &destinations)
        if destinations.isEmpty { return }
        // Queues only, few of them (fanout to a handful of queues): de-duplicate by scanning.
        if destinations.count <= 16 && !destinations.contains(where: { if case .exchange = $0 { return true } else { return false } }) {
            for d in destinations {
                guard case .queue(let q) = d else { continue }
                if !queues.contains(where: { $0 === q }) { queues.append(q) }
            }
            return
        }
        var seenQueues = Set<ObjectIdentifier>()
        var seenExchanges: Set<ObjectIdentifier> = [ObjectIdentifier(exchange)]
        var i = 0
        while i < destinations.count {
            switch destinations[i] {
            case .queue(let q):
                if seenQueues.insert(ObjectIdentifier(q)).inserted { queues.append(q) }
            case .exchange(let x):
                if seenExchanges.insert(ObjectIdentifier(x)).inserted {
                    x.router.route(routingKey: routingKey, headers: headers, into: &destinations)
                }
            }
            i += 1
        }
    }
}
