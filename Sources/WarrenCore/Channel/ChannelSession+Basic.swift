import AMQPProtocol
import NIOCore

/// basic.*, confirm.* and tx.* methods, and deliveries to this channel's consumers.
extension ChannelSession {
    enum Settlement { case ack, requeue, drop }

    /// A transaction's buffered work (tx.select): publishes and settlements wait for tx.commit.
    struct Transaction {
        var publishes: [(exchange: Exchange, message: Message, mandatory: Bool)] = []
        var settlements: [(deliveries: [Delivery], outcome: Settlement)] = []
    }

    // MARK: publish

    func publish(_ m: borrowing BasicPublish, header: borrowing ContentHeader, body: ByteBuffer) throws(AMQPError) {
        if m.immediate { throw .notImplemented("immediate=true") }
        guard let exchange = vhost.exchanges[m.exchange] else {
            throw .notFound("no exchange '\(m.exchange)' in vhost '\(vhost.name)'")
        }
        if exchange.internal {
            throw .accessRefused("cannot publish to internal exchange '\(m.exchange)' in vhost '\(vhost.name)'")
        }
        let message = Message(
            exchange: m.exchange, routingKey: m.routingKey, properties: header.properties,
            encodedProperties: header.encodedProperties, body: body)
        if transaction != nil {
            transaction!.publishes.append((exchange, message, m.mandatory))
            return
        }
        route(message, via: exchange, mandatory: m.mandatory)
    }

    /// Routes a message to its queues; returns it if unroutable and mandatory; confirms it.
    func route(_ message: Message, via exchange: Exchange, mandatory: Bool) {
        let seq = confirmMode ? confirms.nextPublish() : 0
        var queues = connection.takeRouteScratch()
        if exchange.isDefault {
            // The default exchange: the queue named by the routing key, if any (most publishes).
            if let q = vhost.queues[message.routingKey] { queues.append(q) }
        } else {
            vhost.route(exchange, routingKey: message.routingKey, headers: message.properties.headers, into: &queues)
        }
        if queues.isEmpty {
            if mandatory {
                connection.sendContent(
                    number,
                    .basicReturn(
                        BasicReturn(
                            replyCode: AMQPReplyCode.noRoute.rawValue, replyText: "NO_ROUTE", exchange: message.exchange,
                            routingKey: message.routingKey)),
                    message)
            }
        } else {
            for q in queues {
                q.enqueue(message)
                if q.messageCount > MessageQueue.flowHighWater && q.pressures(connection) { q.pausePublisher(connection) }
            }
        }
        connection.returnRouteScratch(consume queues)
        if confirmMode {
            // In memory, a routed message is safe as soon as its queues hold it.
            confirms.settle(seq, .ack)
            connection.confirmsPending(on: self)
        }
    }

    /// Sends the settled prefix of publisher confirms (called once per read batch).
    func flushConfirms() {
        for a in confirms.drainAnnouncements() {
            switch a {
            case .ack(let tag, let multiple):
                connection.send(number, .basicAck(BasicAck(deliveryTag: tag, multiple: multiple)))
            case .nack(let tag, let multiple):
                connection.send(number, .basicNack(BasicNack(deliveryTag: tag, multiple: multiple, requeue: false)))
            }
        }
    }

    // MARK: consumers

    func qos(_ m: BasicQos) throws(AMQPError) {
        if m.prefetchSize != 0 { throw .notImplemented("prefetch_size!=0 (\(m.prefetchSize))") }
        if m.global {
            channelPrefetch = Int(m.prefetchCount)
        } else {
            consumerPrefetch = Int(m.prefetchCount)
        }
        connection.send(number, .basicQosOk(BasicQosOk()))
        if m.global { dispatchConsumerQueues() }
    }

    func consume(_ m: BasicConsume) throws(AMQPError) {
        let queue = try vhost.queue(named: try resolveQueueName(m.queue), for: connection.id)
        let tag = m.consumerTag.isEmpty ? broker.generateName(prefix: "amq.ctag-") : m.consumerTag
        if consumers[tag] != nil { throw .notAllowed("attempt to reuse consumer tag '\(tag)'") }
        if queue.hasExclusiveConsumer || (m.exclusive && queue.consumerCount > 0) {
            throw .accessRefused("\(queue.resourceDescription) in exclusive use")
        }
        let consumer = Consumer(
            tag: tag, channel: self, queue: queue, noAck: m.noAck, exclusive: m.exclusive,
            prefetchCount: consumerPrefetch, arguments: m.arguments)
        consumers[tag] = consumer
        // consume-ok goes out before the first delivery.
        if !m.nowait { connection.send(number, .basicConsumeOk(BasicConsumeOk(consumerTag: tag))) }
        queue.addConsumer(consumer)
    }

    func cancel(_ m: BasicCancel) {
        if let consumer = consumers.removeValue(forKey: m.consumerTag), consumer.queue.removeConsumer(consumer) {
            consumer.queue.vhost.removeQueue(consumer.queue)
        }
        // An unknown tag is not an error (the broker may have cancelled it already).
        if !m.nowait { connection.send(number, .basicCancelOk(BasicCancelOk(consumerTag: m.consumerTag))) }
    }

    /// The queue went away under a consumer: forget it, and tell clients that understand
    /// `consumer_cancel_notify`.
    func consumerCancelledByBroker(_ consumer: Consumer) {
        guard consumers[consumer.tag] === consumer else { return }
        consumers[consumer.tag] = nil
        if state == .open && connection.clientSupportsCancelNotify {
            connection.send(number, .basicCancel(BasicCancel(consumerTag: consumer.tag, nowait: true)))
        }
    }

    /// Called by a queue to hand a message to one of this channel's consumers.
    func deliver(_ entry: QueueEntry, from queue: MessageQueue, to consumer: Consumer) {
        let tag = nextDeliveryTag
        nextDeliveryTag += 1
        if !consumer.noAck {
            unacked.append(Delivery(tag: tag, entry: entry, queue: queue, consumer: consumer))
            consumer.unacked += 1
        }
        connection.sendDeliver(number, consumer: consumer, deliveryTag: tag, redelivered: entry.redelivered, message: entry.message)
    }

    func get(_ m: BasicGet) throws(AMQPError) {
        let queue = try vhost.queue(named: try resolveQueueName(m.queue), for: connection.id)
        guard let entry = queue.get(noAck: m.noAck) else {
            connection.send(number, .basicGetEmpty(BasicGetEmpty()))
            return
        }
        let tag = nextDeliveryTag
        nextDeliveryTag += 1
        if !m.noAck { unacked.append(Delivery(tag: tag, entry: entry, queue: queue, consumer: nil)) }
        connection.sendContent(
            number,
            .basicGetOk(
                BasicGetOk(
                    deliveryTag: tag, redelivered: entry.redelivered, exchange: entry.message.exchange,
                    routingKey: entry.message.routingKey, messageCount: UInt32(clamping: queue.messageCount))),
            entry.message)
    }

    // MARK: settling

    func acknowledge(tag: UInt64, multiple: Bool, outcome: Settlement) throws(AMQPError) {
        if !multiple && outcome == .ack && transaction == nil {
            // The usual case, without building an array.
            let d = try unacked.takeOne(tag: tag)
            d.consumer?.unacked -= 1
            d.queue.acknowledged(d.entry)
            if channelPrefetch > 0 {
                dispatchConsumerQueues()
            } else if d.consumer != nil {
                d.queue.dispatch()
            }
            return
        }
        let deliveries = try unacked.take(tag: tag, multiple: multiple)
        if transaction != nil {
            transaction!.settlements.append((deliveries, outcome))
            return
        }
        settle(deliveries, outcome)
    }

    /// Applies acks, requeues or drops, then lets queues whose consumers got room deliver.
    func settle(_ deliveries: [Delivery], _ outcome: Settlement) {
        guard !deliveries.isEmpty else { return }
        for d in deliveries { d.consumer?.unacked -= 1 }
        switch outcome {
        case .ack:
            for d in deliveries { d.queue.acknowledged(d.entry) }
        case .drop:
            for d in deliveries { d.queue.rejected(d.entry) }
        case .requeue:
            // Group by queue, keeping each queue's order.
            if deliveries.count == 1 || deliveries.allSatisfy({ $0.queue === deliveries[0].queue }) {
                deliveries[0].queue.requeue(deliveries.map(\.entry))
            } else {
                var order: [ObjectIdentifier] = []
                var groups: [ObjectIdentifier: (MessageQueue, [QueueEntry])] = [:]
                for d in deliveries {
                    let id = ObjectIdentifier(d.queue)
                    if groups[id] == nil {
                        order.append(id)
                        groups[id] = (d.queue, [])
                    }
                    groups[id]!.1.append(d.entry)
                }
                for id in order { groups[id]!.0.requeue(groups[id]!.1) }
            }
        }
        if channelPrefetch > 0 {
            dispatchConsumerQueues()
        } else {
            var last: MessageQueue?
            for d in deliveries where d.consumer != nil && d.queue !== last {
                d.queue.dispatch()
                last = d.queue
            }
        }
    }

    func recover(requeue: Bool) throws(AMQPError) {
        guard requeue else { throw .notImplemented("requeue=false") }
        settle(unacked.takeAll(), .requeue)
    }

    // MARK: confirms and transactions

    func selectConfirm(_ m: ConfirmSelect) throws(AMQPError) {
        if transaction != nil { throw .preconditionFailed("cannot switch from tx to confirm mode") }
        confirmMode = true
        if !m.nowait { connection.send(number, .confirmSelectOk(ConfirmSelectOk())) }
    }

    func selectTransaction() throws(AMQPError) {
        if confirmMode { throw .preconditionFailed("cannot switch from confirm to tx mode") }
        if transaction == nil { transaction = Transaction() }
        connection.send(number, .txSelectOk(TxSelectOk()))
    }

    func commitTransaction() throws(AMQPError) {
        guard let tx = transaction else { throw .preconditionFailed("channel is not transactional") }
        transaction = Transaction()
        // Publishes first, then settlements, as RabbitMQ commits.
        for p in tx.publishes where vhost.exchanges[p.exchange.name] === p.exchange {
            route(p.message, via: p.exchange, mandatory: p.mandatory)
        }
        for s in tx.settlements { settle(s.deliveries, s.outcome) }
        connection.send(number, .txCommitOk(TxCommitOk()))
    }

    func rollbackTransaction() throws(AMQPError) {
        guard let tx = transaction else { throw .preconditionFailed("channel is not transactional") }
        transaction = Transaction()
        unacked.restore(tx.settlements.flatMap(\.deliveries))
        connection.send(number, .txRollbackOk(TxRollbackOk()))
    }
}
