import AMQPProtocol

/// exchange.* and queue.* methods.
extension ChannelSession {
    // MARK: exchanges

    func declareExchange(_ m: ExchangeDeclare) throws(AMQPError) {
        if m.passive {
            if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
            _ = try vhost.exchange(named: m.exchange)
        } else {
            // RabbitMQ checks the type before the name.
            guard ExchangeKind(rawValue: m.type) != nil else { throw .commandInvalid("unknown exchange type '\(m.type)'") }
            if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
            try vhost.declareExchange(
                name: m.exchange, type: m.type, durable: m.durable, autoDelete: m.autoDelete, internal: m.internal,
                arguments: m.arguments)
        }
        if !m.nowait { connection.send(number, .exchangeDeclareOk(ExchangeDeclareOk())) }
    }

    func deleteExchange(_ m: ExchangeDelete) throws(AMQPError) {
        try vhost.deleteExchange(named: m.exchange, ifUnused: m.ifUnused)
        if !m.nowait { connection.send(number, .exchangeDeleteOk(ExchangeDeleteOk())) }
    }

    func bindExchange(_ m: ExchangeBind) throws(AMQPError) {
        if m.source.isEmpty || m.destination.isEmpty {
            throw .accessRefused("operation not permitted on the default exchange")
        }
        let destination = try vhost.exchange(named: m.destination)
        let source = try vhost.exchange(named: m.source)
        try vhost.bind(source: source, destination: .exchange(destination), routingKey: m.routingKey, arguments: m.arguments)
        if !m.nowait { connection.send(number, .exchangeBindOk(ExchangeBindOk())) }
    }

    func unbindExchange(_ m: ExchangeUnbind) throws(AMQPError) {
        if m.source.isEmpty || m.destination.isEmpty {
            throw .accessRefused("operation not permitted on the default exchange")
        }
        if let destination = vhost.exchanges[m.destination], let source = vhost.exchanges[m.source] {
            try vhost.unbind(
                source: source, destination: .exchange(destination), routingKey: m.routingKey, arguments: m.arguments)
        }
        if !m.nowait { connection.send(number, .exchangeUnbindOk(ExchangeUnbindOk())) }
    }

    // MARK: queues

    func declareQueue(_ m: QueueDeclare) throws(AMQPError) {
        let queue: MessageQueue
        if m.passive {
            queue = try vhost.queue(named: try resolveQueueName(m.queue), for: connection.id)
        } else {
            let name = m.queue.isEmpty ? broker.generateName(prefix: "amq.gen-") : m.queue
            let (q, created) = try vhost.declareQueue(
                name: name, durable: m.durable, exclusive: m.exclusive, autoDelete: m.autoDelete,
                arguments: m.arguments, owner: connection.id, serverNamed: m.queue.isEmpty)
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

    func bindQueue(_ m: QueueBind) throws(AMQPError) {
        if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        let name = try resolveQueueName(m.queue)
        // RabbitMQ's shortcut: empty queue and key bind with the last declared queue's name.
        let key = m.queue.isEmpty && m.routingKey.isEmpty ? name : m.routingKey
        let queue = try vhost.queue(named: name, for: connection.id)
        let exchange = try vhost.exchange(named: m.exchange)
        try vhost.bind(source: exchange, destination: .queue(queue), routingKey: key, arguments: m.arguments)
        if !m.nowait { connection.send(number, .queueBindOk(QueueBindOk())) }
    }

    func unbindQueue(_ m: QueueUnbind) throws(AMQPError) {
        if m.exchange.isEmpty { throw .accessRefused("operation not permitted on the default exchange") }
        let name = try resolveQueueName(m.queue)
        let key = m.queue.isEmpty && m.routingKey.isEmpty ? name : m.routingKey
        // Unbinding what does not exist succeeds, as in RabbitMQ.
        if let queue = vhost.queues[name], let exchange = vhost.exchanges[m.exchange] {
            try vhost.checkExclusiveAccess(queue, connection: connection.id)
            try vhost.unbind(source: exchange, destination: .queue(queue), routingKey: key, arguments: m.arguments)
        }
        connection.send(number, .queueUnbindOk(QueueUnbindOk()))
    }

    func purgeQueue(_ m: QueuePurge) throws(AMQPError) {
        let queue = try vhost.queue(named: try resolveQueueName(m.queue), for: connection.id)
        let n = queue.purge()
        if !m.nowait { connection.send(number, .queuePurgeOk(QueuePurgeOk(messageCount: UInt32(clamping: n)))) }
    }

    func deleteQueue(_ m: QueueDelete) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        var n = 0
        // Deleting a queue that does not exist succeeds, as in RabbitMQ.
        if let queue = vhost.queues[name] {
            try vhost.checkExclusiveAccess(queue, connection: connection.id)
            n = try vhost.deleteQueue(queue, ifUnused: m.ifUnused, ifEmpty: m.ifEmpty)
        }
        if !m.nowait { connection.send(number, .queueDeleteOk(QueueDeleteOk(messageCount: UInt32(clamping: n)))) }
    }
}
