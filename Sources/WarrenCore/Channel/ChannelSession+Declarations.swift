import AMQPProtocol

/// exchange.* and queue.* methods, with permission checks where (and in the order) RabbitMQ
/// makes them.
extension ChannelSession {
    var userName: String { connection.user?.name ?? "" }

    func check(_ kind: AccessKind, _ resource: Resource) throws(AMQPError) {
        try broker.checkAccess(kind, resource, user: userName, vhost: vhost.name)
    }

    // MARK: exchanges

    func declareExchange(_ m: ExchangeDeclare) throws(AMQPError) {
        if m.passive {
            if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
            _ = try vhost.exchange(named: m.exchange)
        } else {
            // RabbitMQ checks the type before the name, then permissions, then the rest.
            guard ExchangeKind(rawValue: m.type) != nil else { throw .commandInvalid("unknown exchange type '\(m.type)'") }
            if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
            try check(.configure, .exchange(m.exchange))
            if vhost.exchanges[m.exchange] == nil, let ae = m.arguments["alternate-exchange"]?.stringValue {
                try check(.read, .exchange(m.exchange))
                try check(.write, .exchange(ae))
            }
            try vhost.declareExchange(
                name: m.exchange, type: m.type, durable: m.durable, autoDelete: m.autoDelete, internal: m.internal,
                arguments: m.arguments)
        }
        if !m.nowait { connection.send(number, .exchangeDeclareOk(ExchangeDeclareOk())) }
    }

    func deleteExchange(_ m: ExchangeDelete) throws(AMQPError) {
        if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        if let x = vhost.exchanges[m.exchange], x.isBuiltIn {
            throw .accessRefused("deletion of system exchange '\(m.exchange)' in vhost '\(vhost.name)' not allowed")
        }
        try check(.configure, .exchange(m.exchange))
        try vhost.deleteExchange(named: m.exchange, ifUnused: m.ifUnused)
        if !m.nowait { connection.send(number, .exchangeDeleteOk(ExchangeDeleteOk())) }
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

    func bindExchange(_ m: ExchangeBind) throws(AMQPError) {
        try checkBinding(destination: .exchange(m.destination), source: m.source, key: m.routingKey)
        let destination = try vhost.exchange(named: m.destination)
        let source = try vhost.exchange(named: m.source)
        try vhost.bind(source: source, destination: .exchange(destination), routingKey: m.routingKey, arguments: m.arguments)
        if !m.nowait { connection.send(number, .exchangeBindOk(ExchangeBindOk())) }
    }

    func unbindExchange(_ m: ExchangeUnbind) throws(AMQPError) {
        try checkBinding(destination: .exchange(m.destination), source: m.source, key: m.routingKey)
        if let destination = vhost.exchanges[m.destination], let source = vhost.exchanges[m.source] {
            try vhost.unbind(
                source: source, destination: .exchange(destination), routingKey: m.routingKey, arguments: m.arguments)
        }
        if !m.nowait { connection.send(number, .exchangeUnbindOk(ExchangeUnbindOk())) }
    }

    // MARK: queues

    func declareQueue(_ m: QueueDeclare) throws(AMQPError) {
        let queue: MessageQueue
        if m.passive && m.queue.hasPrefix(Self.replyToPseudoQueue) {
            try declareReplyTo(m)
            return
        }
        if m.passive {
            queue = try vhost.queue(named: try resolveQueueName(m.queue), for: connection.id)
            queue.lastUsed = broker.clock.nowMilliseconds()
        } else {
            let serverNamed = m.queue.isEmpty
            let name = serverNamed ? broker.generateName(prefix: "amq.gen-") : m.queue
            if !serverNamed && name.hasPrefix("amq.") {
                throw .accessRefused("queue name '\(name)' contains reserved prefix 'amq.*'")
            }
            try check(.configure, .queue(name))
            if vhost.queues[name] == nil, let dlx = m.arguments["x-dead-letter-exchange"]?.stringValue {
                try check(.read, .queue(name))
                try check(.write, .exchange(dlx))
            }
            let (q, created) = try vhost.declareQueue(
                name: name, durable: m.durable, exclusive: m.exclusive, autoDelete: m.autoDelete,
                arguments: m.arguments, owner: connection.id, serverNamed: serverNamed)
            if created && m.exclusive { connection.exclusiveQueues.append(q) }
            queue = q
        }
        lastDeclaredQueue = queue.name
        if !m.nowait {
            connection.send(
                number,
                .queueDeclareOk(
                    QueueDeclareOk(
                        queue: queue.name, messageCount: UInt32(clamping: queue.messageCount),
                        consumerCount: UInt32(clamping: queue.consumerCount))))
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
        let queue = try vhost.queue(named: name, for: connection.id)
        let exchange = try vhost.exchange(named: m.exchange)
        try vhost.bind(source: exchange, destination: .queue(queue), routingKey: key, arguments: m.arguments)
        if !m.nowait { connection.send(number, .queueBindOk(QueueBindOk())) }
    }

    func unbindQueue(_ m: QueueUnbind) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        let key = m.queue.isEmpty && m.routingKey.isEmpty ? name : m.routingKey
        try checkBinding(destination: .queue(name), source: m.exchange, key: key)
        // Unbinding what does not exist succeeds, as in RabbitMQ.
        if let queue = vhost.queues[name], let exchange = vhost.exchanges[m.exchange] {
            try vhost.checkExclusiveAccess(queue, connection: connection.id)
            try vhost.unbind(source: exchange, destination: .queue(queue), routingKey: key, arguments: m.arguments)
        }
        connection.send(number, .queueUnbindOk(QueueUnbindOk()))
    }

    func purgeQueue(_ m: QueuePurge) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        try check(.read, .queue(name))
        let queue = try vhost.queue(named: name, for: connection.id)
        let n = queue.purge()
        if !m.nowait { connection.send(number, .queuePurgeOk(QueuePurgeOk(messageCount: UInt32(clamping: n)))) }
    }

    func deleteQueue(_ m: QueueDelete) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        try check(.configure, .queue(name))
        var n = 0
        var cancelled: [Consumer] = []
        // Deleting a queue that does not exist succeeds, as in RabbitMQ.
        if let queue = vhost.queues[name] {
            try vhost.checkExclusiveAccess(queue, connection: connection.id)
            (n, cancelled) = try vhost.deleteQueue(queue, ifUnused: m.ifUnused, ifEmpty: m.ifEmpty)
        }
        if !m.nowait { connection.send(number, .queueDeleteOk(QueueDeleteOk(messageCount: UInt32(clamping: n)))) }
        // Consumers hear of it after delete-ok, this channel's own too (kombu's py-amqp
        // transport expects delete-ok first, as RabbitMQ sends them).
        for c in cancelled { c.cancelledByBroker() }
    }
}
