import AMQPProtocol

/// exchange.* and queue.* methods, with permission checks where (and in the order) RabbitMQ
/// makes them.
extension ChannelSession {
    var userName: String { connection.user?.name ?? "" }

    func check(_ kind: AccessKind, _ resource: Resource) throws(AMQPError) {
        try broker.checkAccess(kind, resource, user: userName, vhost: vhost.name)
    }

    /// This channel's connection, as an exclusive queue names its owner.
    var owner: QueueOwner { QueueOwner(node: broker.nodeName, connection: connection.id) }

    // MARK: exchanges

    func declareExchange(_ m: ExchangeDeclare) throws(AMQPError) {
        let reply = { [self] in if !m.nowait { connection.send(number, .exchangeDeclareOk(ExchangeDeclareOk())) } }
        if m.passive {
            if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
            _ = try vhost.exchange(named: m.exchange)
            return reply()
        }
        // RabbitMQ checks the type before the name, then permissions, then the rest.
        guard ExchangeKind(rawValue: m.type) != nil else { throw .commandInvalid("unknown exchange type '\(m.type)'") }
        if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        try check(.configure, .exchange(m.exchange))
        if let x = vhost.exchanges[m.exchange] {
            // An equivalent redeclaration changes nothing: answered here, nothing proposed.
            try vhost.assertEquivalent(x, type: m.type, durable: m.durable, autoDelete: m.autoDelete, internal: m.internal, arguments: m.arguments)
            return reply()
        }
        if let ae = m.arguments["alternate-exchange"]?.stringValue {
            try check(.read, .exchange(m.exchange))
            try check(.write, .exchange(ae))
        }
        if m.exchange.hasPrefix("amq.") { throw .accessRefused("exchange name '\(m.exchange)' contains reserved prefix 'amq.*'") }
        propose(
            .declareExchange(
                vhost: vhost.name, name: m.exchange, type: m.type, durable: m.durable, autoDelete: m.autoDelete, internal: m.internal,
                arguments: m.arguments), for: (40, 10)
        ) { _ in reply() }
    }

    func deleteExchange(_ m: ExchangeDelete) throws(AMQPError) {
        let reply = { [self] in if !m.nowait { connection.send(number, .exchangeDeleteOk(ExchangeDeleteOk())) } }
        if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        if let x = vhost.exchanges[m.exchange], x.isBuiltIn {
            throw .accessRefused("deletion of system exchange '\(m.exchange)' in vhost '\(vhost.name)' not allowed")
        }
        try check(.configure, .exchange(m.exchange))
        // Deleting what does not exist succeeds, as in RabbitMQ.
        guard let x = vhost.exchanges[m.exchange] else { return reply() }
        if m.ifUnused && !x.bindings.isEmpty { throw .preconditionFailed("\(vhost.describe(exchange: m.exchange)) in use") }
        propose(.deleteExchange(vhost: vhost.name, name: m.exchange, ifUnused: m.ifUnused), for: (40, 20)) { _ in reply() }
    }

    /// The checks of RabbitMQ's `binding_action`: write on the destination, no default
    /// exchange, read on the source, topic read permission on the key.
    func checkBinding(destination: Resource, source: String, key: String) throws(AMQPError) {
        try check(.write, destination)
        if case .exchange(let d) = destination, d.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        if source.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        try check(.read, .exchange(source))
        if let x = vhost.exchanges[source], x.type == ExchangeKind.topic.rawValue {
            try broker.checkTopicAccess(.read, exchange: source, key: key, user: userName, vhost: vhost.name)
        }
    }

    /// Binds, proposing only when the binding is not there yet (binding twice is no error).
    private func bind(_ source: Exchange, _ destination: BindingDestination, key: String, arguments: FieldTable, method: (UInt16, UInt16),
                      reply: @escaping () -> Void) {
        if source.bindings.contains(Binding(source: source, destination: destination, routingKey: key, arguments: arguments)) {
            return reply()
        }
        propose(
            .bind(vhost: vhost.name, source: source.name, destination: destination.name, toExchange: destination.isExchange, routingKey: key, arguments: arguments),
            for: method
        ) { _ in reply() }
    }

    /// Unbinds, proposing only when the binding exists (unbinding nothing is no error).
    private func unbind(_ source: String, _ destination: BindingDestination?, key: String, arguments: FieldTable, method: (UInt16, UInt16),
                        reply: @escaping () -> Void) {
        guard let x = vhost.exchanges[source], let destination,
            x.bindings.contains(Binding(source: x, destination: destination, routingKey: key, arguments: arguments))
        else { return reply() }
        propose(
            .unbind(vhost: vhost.name, source: source, destination: destination.name, toExchange: destination.isExchange, routingKey: key, arguments: arguments),
            for: method
        ) { _ in reply() }
    }

    func bindExchange(_ m: ExchangeBind) throws(AMQPError) {
        try checkBinding(destination: .exchange(m.destination), source: m.source, key: m.routingKey)
        let destination = try vhost.exchange(named: m.destination)
        let source = try vhost.exchange(named: m.source)
        bind(source, .exchange(destination), key: m.routingKey, arguments: m.arguments, method: (40, 30)) { [self] in
            if !m.nowait { connection.send(number, .exchangeBindOk(ExchangeBindOk())) }
        }
    }

    func unbindExchange(_ m: ExchangeUnbind) throws(AMQPError) {
        try checkBinding(destination: .exchange(m.destination), source: m.source, key: m.routingKey)
        unbind(m.source, vhost.exchanges[m.destination].map(BindingDestination.exchange), key: m.routingKey, arguments: m.arguments, method: (40, 40)) {
            [self] in
            if !m.nowait { connection.send(number, .exchangeUnbindOk(ExchangeUnbindOk())) }
        }
    }

    // MARK: queues

    func declareQueue(_ m: QueueDeclare) throws(AMQPError) {
        if m.passive && m.queue.hasPrefix(Self.replyToPseudoQueue) {
            try declareReplyTo(m)
            return
        }
        if m.passive {
            let queue = try vhost.queue(named: try resolveQueueName(m.queue), for: owner)
            queue.lastUsed = broker.clock.nowMilliseconds()
            return try declared(queue, nowait: m.nowait)
        }
        let serverNamed = m.queue.isEmpty
        let name = serverNamed ? broker.generateName(prefix: "amq.gen-") : m.queue
        if !serverNamed && name.hasPrefix("amq.") {
            throw .accessRefused("queue name '\(name)' contains reserved prefix 'amq.*'")
        }
        try check(.configure, .queue(name))
        let declaration = QueueDeclaration(
            vhost: vhost.name, name: name, durable: m.durable, exclusive: m.exclusive, autoDelete: m.autoDelete, arguments: m.arguments,
            node: broker.chooseHome(vhost: vhost, name: name, arguments: m.arguments, exclusive: m.exclusive), requester: owner,
            serverNamed: serverNamed)
        if let q = vhost.queues[name] {
            // An equivalent redeclaration changes nothing: answered here, nothing proposed.
            try vhost.checkRedeclaration(q, declaration)
            q.lastUsed = broker.clock.nowMilliseconds()
            return try declared(q, nowait: m.nowait)
        }
        if let dlx = m.arguments["x-dead-letter-exchange"]?.stringValue {
            try check(.read, .queue(name))
            try check(.write, .exchange(dlx))
        }
        try vhost.validateNewQueue(declaration)
        propose(.declareQueue(declaration), for: (50, 10)) { [self] (reply) throws(AMQPError) in
            guard let q = reply.queue else { throw .internalError("queue '\(name)' was not declared") }
            if reply.created && m.exclusive { connection.exclusiveQueues.append(q) }
            try declared(q, nowait: m.nowait)
        }
    }

    /// declare-ok with the counts of the queue's home node.
    private func declared(_ queue: MessageQueue, nowait: Bool) throws(AMQPError) {
        lastDeclaredQueue = queue.name
        guard !nowait else { return }
        try awaitAnswer((50, 10), { queue.contents.counts(then: $0) }) { [self] counts in
            connection.send(
                number,
                .queueDeclareOk(
                    QueueDeclareOk(
                        queue: queue.name, messageCount: UInt32(clamping: counts.messages), consumerCount: UInt32(clamping: counts.consumers))))
        }
    }

    /// Direct reply-to: a responder may check that the requester is still there with a passive
    /// declare of its reply-to name (RabbitMQ answers declare-ok with one consumer while the
    /// requester's reply consumer exists, 404 after). The pseudo-queue itself always exists.
    private func declareReplyTo(_ m: QueueDeclare) throws(AMQPError) {
        var consumers: UInt32 = 0
        if m.queue != Self.replyToPseudoQueue {
            guard broker.replyTargets[m.queue] != nil else { throw .notFound("no \(vhost.describe(queue: m.queue))") }
            consumers = 1
        }
        if !m.nowait {
            connection.send(number, .queueDeclareOk(QueueDeclareOk(queue: m.queue, messageCount: 0, consumerCount: consumers)))
        }
    }

    func bindQueue(_ m: QueueBind) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        // RabbitMQ's shortcut: empty queue and key bind with the last declared queue's name.
        let key = m.queue.isEmpty && m.routingKey.isEmpty ? name : m.routingKey
        try checkBinding(destination: .queue(name), source: m.exchange, key: key)
        let queue = try vhost.queue(named: name, for: owner)
        let exchange = try vhost.exchange(named: m.exchange)
        bind(exchange, .queue(queue), key: key, arguments: m.arguments, method: (50, 20)) { [self] in
            if !m.nowait { connection.send(number, .queueBindOk(QueueBindOk())) }
        }
    }

    func unbindQueue(_ m: QueueUnbind) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        let key = m.queue.isEmpty && m.routingKey.isEmpty ? name : m.routingKey
        try checkBinding(destination: .queue(name), source: m.exchange, key: key)
        if let queue = vhost.queues[name] { try vhost.checkExclusiveAccess(queue, connection: owner) }
        unbind(m.exchange, vhost.queues[name].map(BindingDestination.queue), key: key, arguments: m.arguments, method: (50, 50)) { [self] in
            connection.send(number, .queueUnbindOk(QueueUnbindOk()))
        }
    }

    func purgeQueue(_ m: QueuePurge) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        try check(.read, .queue(name))
        let queue = try vhost.queue(named: name, for: owner)
        try awaitAnswer((50, 30), { queue.contents.purge(then: $0) }) { [self] n in
            if !m.nowait { connection.send(number, .queuePurgeOk(QueuePurgeOk(messageCount: UInt32(clamping: n)))) }
        }
    }

    func deleteQueue(_ m: QueueDelete) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        try check(.configure, .queue(name))
        let reply = { [self] (n: Int, cancelled: [Consumer]) in
            if !m.nowait { connection.send(number, .queueDeleteOk(QueueDeleteOk(messageCount: UInt32(clamping: n)))) }
            // Consumers hear of it after delete-ok, this channel's own too (kombu's py-amqp
            // transport expects delete-ok first, as RabbitMQ sends them).
            for c in cancelled { c.cancelledByBroker() }
        }
        // Deleting a queue that does not exist succeeds, as in RabbitMQ.
        guard let queue = vhost.queues[name] else { return reply(0, []) }
        try vhost.checkExclusiveAccess(queue, connection: owner)
        if queue.isLocal {
            // The counts live where the queue's messages do: checked here, before proposing.
            try vhost.checkDeletable(queue, ifUnused: m.ifUnused, ifEmpty: m.ifEmpty)
            propose(.deleteQueue(vhost: vhost.name, name: name), for: (50, 40)) { r in reply(r.messages, r.cancelled) }
            return
        }
        // A queue of another node: its counts from there, for the checks and delete-ok (a node
        // that is down cannot say: the queue is deleted all the same, as RabbitMQ does).
        let ask: (@escaping (Result<QueueCounts?, AMQPError>) -> Void) -> Void = { done in queue.contents.counts { done(.success(try? $0.get())) } }
        try awaitAnswer((50, 40), ask) { [self] (counts: QueueCounts?) throws(AMQPError) in
            try vhost.checkDeletable(queue, ifUnused: m.ifUnused, ifEmpty: m.ifEmpty, consumers: counts?.consumers ?? 0, messages: counts?.messages ?? 0)
            propose(.deleteQueue(vhost: vhost.name, name: name), for: (50, 40)) { r in reply(counts?.messages ?? r.messages, r.cancelled) }
        }
    }
}
