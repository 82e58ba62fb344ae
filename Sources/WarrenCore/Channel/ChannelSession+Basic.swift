import AMQPProtocol
import NIOCore

/// basic.*, confirm.* and tx.* methods, and deliveries to this channel's consumers.
extension ChannelSession {
    enum Settlement { case ack, requeue, drop }

    /// A transaction's buffered work (tx.select): publishes and settlements wait for tx.commit.
    struct Transaction {
        var publishes: [(exchange: Exchange, message: Message, mandatory: Bool, bcc: [String])] = []
        var settlements: [(deliveries: [Delivery], outcome: Settlement)] = []
    }

    // MARK: publish

    static let replyToPseudoQueue = "amq.rabbitmq.reply-to"
    static let replyToPrefix = "amq.rabbitmq.reply-to."

    /// Write permission on an exchange, remembered per channel (RabbitMQ keeps a similar cache)
    /// so a steady publisher pays the regex once.
    func checkWriteCached(_ exchange: String) throws(AMQPError) {
        if writeCacheVersion != broker.permissionsVersion {
            writeCache.removeAll(keepingCapacity: true)
            lastWriteChecked = nil
            writeCacheVersion = broker.permissionsVersion
        }
        if exchange == lastWriteChecked { return }
        defer { lastWriteChecked = exchange }
        if writeCache.contains(exchange) { return }
        try check(.write, .exchange(exchange))
        if writeCache.count >= 16 { writeCache.removeFirst() }
        writeCache.append(exchange)
    }

    func publish(_ m: borrowing BasicPublish, header: borrowing ContentHeader, body: ByteBuffer) throws(AMQPError) {
        if m.immediate { throw .notImplemented("immediate=true") }
        // RabbitMQ's order: permission, existence, internal, topic permission, then properties.
        try checkWriteCached(m.exchange)
        guard let exchange = vhost.exchanges[m.exchange] else {
            throw .notFound("no exchange '\(m.exchange)' in vhost '\(vhost.name)'")
        }
        if exchange.internal {
            throw .accessRefused("cannot publish to internal exchange '\(m.exchange)' in vhost '\(vhost.name)'")
        }
        if exchange.isTopic && broker.hasTopicPermissions {
            try broker.checkTopicAccess(.write, exchange: m.exchange, key: m.routingKey, user: userName, vhost: vhost.name)
        }
        connection.notePublish()
        if header.properties.isEmpty {
            // No properties: nothing to validate or rewrite (most publishes of load tests).
            let message = Message(
                exchange: m.exchange, routingKey: m.routingKey, properties: header.properties,
                encodedProperties: header.encodedProperties, body: body)
            if transaction != nil {
                transaction!.publishes.append((exchange, message, m.mandatory, []))
                return
            }
            route(message, via: exchange, mandatory: m.mandatory)
            return
        }
        var properties = header.properties
        var encoded = header.encodedProperties
        var bcc: [String] = []
        do {
            if let e = properties.expiration { try Self.validateExpiration(e) }
            if let uid = properties.userID, uid != userName, connection.user?.hasTag("impersonator") != true {
                throw .preconditionFailed("user_id property set to '\(uid)' but authenticated user was '\(userName)'")
            }
            if properties.replyTo == Self.replyToPseudoQueue {
                guard let token = replyToken else { throw .preconditionFailed("fast reply consumer does not exist") }
                properties.replyTo = token
                encoded = nil
            }
            if properties.headers?["BCC"] != nil {
                // BCC keys route the message but never reach consumers.
                bcc = properties.headers!["BCC"]!.stringArray
                properties.headers!["BCC"] = nil
                encoded = nil
            }
        }
        let message = Message(exchange: m.exchange, routingKey: m.routingKey, properties: properties, encodedProperties: encoded, body: body)
        if transaction != nil {
            transaction!.publishes.append((exchange, message, m.mandatory, bcc))
            return
        }
        route(message, via: exchange, mandatory: m.mandatory, bcc: bcc)
    }

    /// RabbitMQ's check of the expiration property: a non-negative integer, as a string.
    static func validateExpiration(_ e: String) throws(AMQPError) {
        let bytes = Array(e.utf8)
        var i = 0
        var negative = false
        if i < bytes.count && (bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+")) {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        let digitsStart = i
        while i < bytes.count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9") { i += 1 }
        guard i > digitsStart else { throw .preconditionFailed("invalid expiration '\(e)': no_integer") }
        if i < bytes.count {
            throw .preconditionFailed("invalid expiration '\(e)': {leftover_string,\"\(String(decoding: bytes[i...], as: UTF8.self))\"}")
        }
        if negative, let n = Int64(e), n != 0 { throw .preconditionFailed("invalid expiration '\(e)': {value_negative,\(n)}") }
    }

    /// Routes a message to its queues (its routing key, CC and BCC keys; the alternate exchange
    /// when nothing matches), returns it if unroutable and mandatory, and settles its confirm:
    /// a nack when a queue refused it (x-overflow reject-publish).
    /// Returns, when `durablePosition` is asked for (a transaction's commit), the log position
    /// the message must reach on disk before its publish counts (nil: it was not persisted).
    @discardableResult
    func route(_ message: Message, via exchange: Exchange, mandatory: Bool, bcc: [String] = [], durablePosition: Bool = false) -> UInt64? {
        let seq = confirmMode ? confirms.nextPublish() : 0
        broker.stats.received &+= 1
        if confirmMode { broker.stats.receivedConfirm &+= 1 }
        var queues = connection.takeRouteScratch()
        // (No queue can have the reply-to prefix, amq. being reserved, so without reply
        // consumers there is nothing to check.)
        if exchange.isDefault && !broker.replyTargets.isEmpty && message.routingKey.hasPrefix(Self.replyToPrefix) {
            // Direct reply-to: straight to the requesting channel, no queue.
            connection.returnRouteScratch(consume queues)
            if let target = broker.replyTargets[message.routingKey] {
                broker.stats.routed &+= 1
                target.deliverDirectReply(message)
                if confirmMode { settleConfirm(seq, .ack) }
            } else {
                unroutable(message, mandatory: mandatory, confirm: seq)
            }
            return nil
        }
        let cc = message.properties.headers?["CC"]?.stringArray ?? []
        if exchange.isDefault && cc.isEmpty && bcc.isEmpty {
            // The default exchange: the queue named by the routing key, if any (most publishes).
            if let q = vhost.queues[message.routingKey] { queues.append(q) }
        } else if cc.isEmpty && bcc.isEmpty {
            vhost.routeWithAlternates(exchange, routingKey: message.routingKey, headers: message.properties.headers, into: &queues)
        } else {
            for key in [message.routingKey] + cc + bcc {
                vhost.route(exchange, routingKey: key, headers: message.properties.headers, into: &queues)
            }
            if queues.isEmpty {
                for key in [message.routingKey] + cc + bcc {
                    vhost.routeWithAlternates(exchange, routingKey: key, headers: message.properties.headers, into: &queues)
                }
            }
            var seen = Set<ObjectIdentifier>()
            queues = queues.filter { seen.insert(ObjectIdentifier($0)).inserted }
        }
        if queues.isEmpty {
            connection.returnRouteScratch(consume queues)
            unroutable(message, mandatory: mandatory, confirm: seq)
            return nil
        }
        var refused = false
        // Queues of other nodes: the first one, and whether there are others (the usual case
        // is one queue, so no grouping).
        var firstRemote: MessageQueue?
        var remoteCount = 0
        // Replicated queues this node leads: each answers when its group committed the message.
        var replicatedCount = 0
        var replicatedParts = 0
        broker.stats.routed &+= 1
        for q in queues {
            guard q.isLocal else {
                if firstRemote == nil { firstRemote = q }
                remoteCount += 1
                continue
            }
            if let r = q.replicated {
                replicatedCount += 1
                let answerSeq: UInt64? = confirmMode ? seq : (durablePosition ? 0 : nil)
                if let answerSeq {
                    if r.publish(message, completion: { [self] ok in remoteConfirm(answerSeq, ok: ok) }) { replicatedParts += 1 } else { refused = true }
                } else if !r.publish(message, completion: nil) {
                    refused = true
                }
                continue
            }
            if !q.enqueue(message) { refused = true }
            if q.messageCount > MessageQueue.flowHighWater && q.pressures(connection) { q.pausePublisher(connection) }
        }
        if durablePosition && !confirmMode { txRemoteParts += replicatedParts }
        let localCount = queues.count - remoteCount - replicatedCount
        // The message crosses to each node that has some of its queues once, for all of them.
        var sent = 0
        if let firstRemote {
            let answer = confirmMode ? (self, seq) : (durablePosition ? (self, 0) : nil)
            var groups: [(node: String, queues: [String])] = []
            if remoteCount == 1 {
                groups = [(firstRemote.homeNode, [firstRemote.name])]
            } else {
                for q in queues where !q.isLocal {
                    if let i = groups.firstIndex(where: { $0.node == q.homeNode }) { groups[i].queues.append(q.name) } else { groups.append((q.homeNode, [q.name])) }
                }
            }
            for g in groups {
                if broker.clusterQueues?.publish(message, vhost: vhost.name, queues: g.queues, to: g.node, confirm: answer, publisher: connection) == true {
                    sent += 1
                } else {
                    refused = true
                }
            }
            if localCount == 0 && replicatedCount == 0 && sent == 0 && mandatory {
                // Every queue it was routed to is on a node that is down: back to the publisher.
                broker.stats.unroutableReturned &+= 1
                returnUnroutable(message)
            }
            if durablePosition && !confirmMode { txRemoteParts += sent }
        }
        connection.returnRouteScratch(consume queues)
        guard confirmMode || durablePosition else { return nil }
        // A routed message is safe once its queues hold it; a persisted one once the store has
        // it on disk; one sent to other nodes once they say they have it.
        let position = refused || localCount == 0 ? nil : broker.messageStore?.persistedPosition(of: message)
        sent += replicatedParts
        if confirmMode {
            if sent > 0 {
                confirmParts[seq] = (sent + (position == nil ? 0 : 1), refused)
                if let position { awaitDurable(position, confirm: seq) }
            } else if let position {
                awaitDurable(position, confirm: seq)
            } else {
                settleConfirm(seq, refused ? .nack : .ack)
            }
        }
        return position
    }

    /// Another node answered for a publish routed to its queues (`seq` 0: a transaction's).
    func remoteConfirm(_ seq: UInt64, ok: Bool) {
        guard state == .open else { return }
        if seq == 0 {
            txRemoteParts -= 1
            if txRemoteParts == 0 && awaitingMetadata && transaction != nil { finishCommit() }
            return
        }
        partDone(seq, ok: ok)
        if !confirmFlushPending, let cq = broker.clusterQueues {
            confirmFlushPending = true
            cq.confirmChannels.append(self)
        }
    }

    /// One of the answers a confirm waits for came; the last one settles it.
    private func partDone(_ seq: UInt64, ok: Bool) {
        guard var parts = confirmParts[seq] else { return }
        parts.remaining -= 1
        parts.nack = parts.nack || !ok
        if parts.remaining > 0 {
            confirmParts[seq] = parts
            return
        }
        confirmParts[seq] = nil
        confirms.settle(seq, parts.nack ? .nack : .ack)
        if !parts.nack { broker.stats.confirmed &+= 1 }
    }

    /// Holds a confirm (or, with `confirm` 0, a tx.commit-ok) until the store reports
    /// `position` durable.
    func awaitDurable(_ position: UInt64, confirm: UInt64) {
        durableWaits.append((position, confirm))
        if durableWaits.count == 1 { broker.waitForDurability(self) }
    }

    /// The store is durable up to `position`: settles what waited for it. True when nothing
    /// waits any more.
    func durableReached(_ position: UInt64) -> Bool {
        guard state == .open else {
            durableWaits.removeAll()
            return true
        }
        var confirmed = false
        while let first = durableWaits.first, first.position <= position {
            durableWaits.removeFirst()
            if first.confirm == 0 {
                connection.send(number, .txCommitOk(TxCommitOk()))
            } else if !confirmParts.isEmpty && confirmParts[first.confirm] != nil {
                partDone(first.confirm, ok: true)
                confirmed = true
            } else {
                confirms.settle(first.confirm, .ack)
                broker.stats.confirmed &+= 1
                confirmed = true
            }
        }
        if confirmed { connection.confirmsPending(on: self) }
        if durableWaits.isEmpty { return true }
        broker.messageStore?.requestSync()
        return false
    }

    /// A message no queue took: returned if mandatory, then (in confirm mode) acked on its own
    /// at once, as RabbitMQ does while it handles the publish.
    private func unroutable(_ message: Message, mandatory: Bool, confirm seq: UInt64) {
        if mandatory {
            broker.stats.unroutableReturned &+= 1
            returnUnroutable(message)
        } else {
            broker.stats.unroutableDropped &+= 1
        }
        guard confirmMode, let announcement = confirms.settleAtOnce(seq) else { return }
        broker.stats.confirmed &+= 1
        announce(announcement)
    }

    func settleConfirm(_ seq: UInt64, _ outcome: ConfirmTracker.Outcome) {
        confirms.settle(seq, outcome)
        if outcome == .ack { broker.stats.confirmed &+= 1 }
        connection.confirmsPending(on: self)
    }

    func returnUnroutable(_ message: Message) {
        connection.sendContent(
            number,
            .basicReturn(
                BasicReturn(
                    replyCode: AMQPReplyCode.noRoute.rawValue, replyText: "NO_ROUTE", exchange: message.exchange,
                    routingKey: message.routingKey)),
            message)
    }

    /// Announces the publisher confirms settled since the last call (once per read batch, or
    /// per store fsync).
    func flushConfirms() {
        confirms.drainAnnouncements { announce($0) }
    }

    private func announce(_ a: ConfirmTracker.Announcement) {
        switch a {
        case .ack(let tag, let multiple):
            connection.send(number, .basicAck(BasicAck(deliveryTag: tag, multiple: multiple)))
        case .nack(let tag, let multiple):
            // RabbitMQ's publisher nacks carry requeue=true (the method's default); clients
            // ignore it, but some compare frames.
            connection.send(number, .basicNack(BasicNack(deliveryTag: tag, multiple: multiple, requeue: true)))
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
        if m.queue == Self.replyToPseudoQueue {
            try consumeReplies(m)
            return
        }
        let name = try resolveQueueName(m.queue)
        try check(.read, .queue(name))
        let queue = try vhost.queue(named: name, for: owner)
        if queue.type == .quorum && channelPrefetch > 0 {
            // RabbitMQ refuses it as a connection error (540), not a channel one.
            throw .notImplemented("\(queue.resourceDescription) does not support global qos")
        }
        let tag = m.consumerTag.isEmpty ? broker.generateName(prefix: "amq.ctag-") : m.consumerTag
        if consumers[tag] != nil || tag == replyConsumerTag { throw .notAllowed("attempt to reuse consumer tag '\(tag)'") }
        let consumer = Consumer(
            tag: tag, channel: self, queue: queue, noAck: m.noAck, exclusive: m.exclusive,
            prefetchCount: consumerPrefetch, arguments: m.arguments)
        // The queue answers before the consumer's first delivery, so consume-ok goes out first.
        try awaitAnswer((60, 20), { done in queue.contents.addConsumer(consumer) { done($0.map { .failure($0) } ?? .success(())) } }) {
            [self] (_: Void) throws(AMQPError) in
            consumers[tag] = consumer
            if !m.nowait { connection.send(number, .basicConsumeOk(BasicConsumeOk(consumerTag: tag))) }
        }
    }

    /// Direct reply-to: a no-ack consumer of the pseudo-queue; replies addressed to this
    /// channel's token come straight here.
    private func consumeReplies(_ m: BasicConsume) throws(AMQPError) {
        guard m.noAck else { throw .preconditionFailed("reply consumer cannot acknowledge") }
        guard replyConsumerTag == nil else { throw .preconditionFailed("reply consumer already set") }
        let tag = m.consumerTag.isEmpty ? broker.generateName(prefix: "amq.ctag-") : m.consumerTag
        if consumers[tag] != nil { throw .notAllowed("attempt to reuse consumer tag '\(tag)'") }
        let token = broker.replyToName(connection: connection.id, channel: number)
        replyConsumerTag = tag
        replyToken = token
        replyPrefix = ByteBuffer.amqpDeliverPrefix(consumerTag: tag)
        broker.replyTargets[token] = self
        if !m.nowait { connection.send(number, .basicConsumeOk(BasicConsumeOk(consumerTag: tag))) }
    }

    func deliverDirectReply(_ message: Message) {
        guard state == .open, let prefix = replyPrefix else { return }
        let tag = nextDeliveryTag
        nextDeliveryTag += 1
        connection.sendDeliver(number, prefix: prefix, deliveryTag: tag, redelivered: false, message: message)
    }

    func stopReplies() {
        if let token = replyToken { broker.replyTargets[token] = nil }
        replyConsumerTag = nil
        replyToken = nil
        replyPrefix = nil
    }

    func cancel(_ m: BasicCancel) {
        if m.consumerTag == replyConsumerTag { stopReplies() }
        if let consumer = consumers.removeValue(forKey: m.consumerTag), consumer.queue.contents.removeConsumer(consumer) {
            broker.proposeDeletion(of: consumer.queue, why: "auto-delete: its last consumer went")
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
    func deliver(_ entry: QueueEntry, from queue: MessageQueue, to consumer: Consumer, message: Message, session: UInt64 = 0) {
        let tag = nextDeliveryTag
        nextDeliveryTag += 1
        if !consumer.noAck {
            unacked.append(Delivery(tag: tag, entry: entry, queue: queue, consumer: consumer, session: session))
            consumer.unacked += 1
        }
        connection.sendDeliver(number, prefix: consumer.deliverPrefix, deliveryTag: tag, redelivered: entry.redelivered, message: message)
    }

    func get(_ m: BasicGet) throws(AMQPError) {
        let name = try resolveQueueName(m.queue)
        try check(.read, .queue(name))
        let queue = try vhost.queue(named: name, for: owner)
        try awaitAnswer((60, 70), { queue.contents.get(noAck: m.noAck, then: $0) }) { [self] answer in
            guard let answer else {
                connection.send(number, .basicGetEmpty(BasicGetEmpty()))
                return
            }
            let tag = nextDeliveryTag
            nextDeliveryTag += 1
            if !m.noAck { unacked.append(Delivery(tag: tag, entry: answer.entry, queue: queue, consumer: nil, session: answer.session)) }
            connection.sendContent(
                number,
                .basicGetOk(
                    BasicGetOk(
                        deliveryTag: tag, redelivered: answer.entry.redelivered, exchange: answer.message.exchange,
                        routingKey: answer.message.routingKey, messageCount: UInt32(clamping: answer.remaining))),
                answer.message)
        }
    }

    // MARK: settling

    func acknowledge(tag: UInt64, multiple: Bool, outcome: Settlement) throws(AMQPError) {
        if !multiple && outcome == .ack && transaction == nil {
            // The usual case, without building an array.
            let d = try unacked.takeOne(tag: tag)
            d.consumer?.unacked -= 1
            let contents = d.queue.contents
            contents.acknowledge(d)
            if channelPrefetch > 0 {
                dispatchConsumerQueues()
            } else if let c = d.consumer {
                contents.dispatch(for: c)
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

    /// Applies acks, requeues or drops, queue by queue (each in delivery order), then lets queues
    /// whose consumers got room deliver.
    func settle(_ deliveries: [Delivery], _ outcome: Settlement) {
        guard !deliveries.isEmpty else { return }
        for d in deliveries { d.consumer?.unacked -= 1 }
        if deliveries.count == 1 || deliveries.allSatisfy({ $0.queue === deliveries[0].queue }) {
            deliveries[0].queue.contents.settle(deliveries, outcome)
        } else {
            var order: [ObjectIdentifier] = []
            var groups: [ObjectIdentifier: (MessageQueue, [Delivery])] = [:]
            for d in deliveries {
                let id = ObjectIdentifier(d.queue)
                if groups[id] == nil {
                    order.append(id)
                    groups[id] = (d.queue, [])
                }
                groups[id]!.1.append(d)
            }
            for id in order { groups[id]!.0.contents.settle(groups[id]!.1, outcome) }
        }
        if channelPrefetch > 0 {
            dispatchConsumerQueues()
        } else {
            var last: MessageQueue?
            for d in deliveries where d.consumer != nil && d.queue !== last {
                d.queue.contents.dispatch(for: d.consumer!)
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
        // Publishes first, then settlements, as RabbitMQ commits. Persistent messages committed
        // to durable queues: commit-ok once the last of them is on disk (each one's position is
        // taken as it is routed: the store can answer for the message it committed last only),
        // and once other nodes that took some said they have them.
        var durableAt: UInt64?
        for p in tx.publishes where vhost.exchanges[p.exchange.name] === p.exchange {
            if let position = route(p.message, via: p.exchange, mandatory: p.mandatory, bcc: p.bcc, durablePosition: true) {
                durableAt = max(durableAt ?? 0, position)
            }
        }
        for s in tx.settlements { settle(s.deliveries, s.outcome) }
        txCommitDurableAt = durableAt
        if txRemoteParts > 0 {
            // Later commands wait behind the commit-ok.
            awaitingMetadata = true
            return
        }
        finishCommit()
    }

    /// Commit-ok, once the store has the commit's messages on disk.
    func finishCommit() {
        let resume = awaitingMetadata
        awaitingMetadata = false
        if let durableAt = txCommitDurableAt {
            awaitDurable(durableAt, confirm: 0)
        } else {
            connection.send(number, .txCommitOk(TxCommitOk()))
        }
        txCommitDurableAt = nil
        if resume { connection.resumeHeld(self) }
    }

    func rollbackTransaction() throws(AMQPError) {
        guard let tx = transaction else { throw .preconditionFailed("channel is not transactional") }
        transaction = Transaction()
        unacked.restore(tx.settlements.flatMap(\.deliveries))
        connection.send(number, .txRollbackOk(TxRollbackOk()))
    }
}
