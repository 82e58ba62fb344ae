import AMQPProtocol
import NIOCore

/// This node as the home of queues that other nodes' channels use.
extension ClusterQueues {
    /// A publish routed on another node to queues of this one. It is confirmed once every queue
    /// took it and, when one of them keeps it on disk, once it is there; refused (nack) when a
    /// queue refuses it (`x-overflow` reject-publish). A queue deleted since it was routed is
    /// as good as taken, as on one node.
    func takePublish(confirm: UInt64, vhost: String, queues: [String], message: Message, from p: QueuePeer) {
        var ok = true
        // Replicated queues answer once their groups committed it; the confirm waits for them.
        var replicated: ReplicatedParts?
        if let v = broker.vhosts[vhost] {
            broker.stats.routed &+= 1
            for name in queues {
                guard let q = v.queues[name] else { continue }
                if let r = q.replicated {
                    // (If its leader moved since the sender routed it, it is passed on.)
                    if confirm == 0 {
                        _ = r.publish(message, completion: nil)
                        continue
                    }
                    let parts = replicated ?? ReplicatedParts()
                    replicated = parts
                    parts.remaining += 1
                    let taken = r.publish(message) { done in
                        parts.ok = parts.ok && done
                        parts.remaining -= 1
                        if parts.remaining == 0, let finish = parts.finish { finish(parts.ok) }
                    }
                    if !taken {
                        parts.remaining -= 1
                        parts.ok = false
                    }
                    continue
                }
                guard q.isLocal else { continue }
                if !q.enqueue(message) { ok = false }
                if q.messageCount > MessageQueue.flowHighWater && q.pressures(nil) { q.pausePublisher(p) }
            }
        }
        let cost = UInt32(Self.cost(message))
        if p.pausingQueues.isEmpty {
            p.publishCreditDue += cost
            requestFlush()
        } else {
            p.publishCreditOwed += cost
        }
        guard confirm != 0 else { return }
        let generation = p.generation
        let answer = { [self] (ok: Bool) in
            // (Not in a later session: the peer nacked it when the session ended.)
            guard p.generation == generation else { return }
            if ok, let position = broker.messageStore?.persistedPosition(of: message) {
                p.durableConfirms.append((position, confirm))
                broker.messageStore?.requestSync()
            } else {
                send(.confirm(id: confirm, ok: ok), to: p)
            }
        }
        guard let parts = replicated, parts.remaining > 0 else { return answer(ok && (replicated?.ok ?? true)) }
        parts.ok = parts.ok && ok
        parts.finish = answer
    }

    /// The store is durable up to `position`: confirms that waited for it go out.
    func durable(upTo position: UInt64) {
        var waiting = false
        for p in peers.values where !p.durableConfirms.isEmpty {
            while let first = p.durableConfirms.first, first.position <= position {
                p.durableConfirms.removeFirst()
                send(.confirm(id: first.id, ok: true), to: p)
            }
            if !p.durableConfirms.isEmpty { waiting = true }
        }
        if waiting { broker.messageStore?.requestSync() }
    }

    func addProxy(
        request: UInt64, id: UInt64, vhost: String, queue: String, tag: String, noAck: Bool, exclusive: Bool, prefetch: Int,
        arguments: FieldTable, for p: QueuePeer
    ) {
        guard let v = broker.vhosts[vhost], let q = v.queues[queue], q.isLocal, !q.isDeleted else {
            // (A replicated queue whose leader moved: the consumer's node attaches it to the new
            // one when it applies the record.)
            return send(.reply(request: request, result: .failure(.notFound("no queue '\(queue)' in vhost '\(vhost)' on this node"))), to: p)
        }
        if let refusal = q.refusal(exclusive: exclusive) { return send(.reply(request: request, result: .failure(refusal)), to: p) }
        let c = Consumer(
            tag: tag, channel: nil, queue: q, noAck: noAck, exclusive: exclusive, prefetchCount: prefetch, arguments: arguments,
            proxy: ConsumerProxy(peer: p, id: id))
        p.proxies[id] = c
        send(.reply(request: request, result: .success((0, 0))), to: p)
        q.addConsumer(c)
    }

    func removeProxy(_ id: UInt64, for p: QueuePeer) {
        guard let c = p.proxies.removeValue(forKey: id) else { return }
        if c.queue.removeConsumer(c) { broker.proposeDeletion(of: c.queue, why: "auto-delete: its last consumer went") }
    }

    /// A queue of this node hands a message to a consumer on another node.
    func deliver(_ entry: QueueEntry, from queue: MessageQueue, to consumer: Consumer, message: Message) {
        let proxy = consumer.proxy!
        let p = proxy.peer
        proxy.inFlight += Self.cost(message)
        if !consumer.noAck {
            consumer.unacked += 1
            p.unacked[QueuePeer.HeldKey(queue: queue.serial, seq: entry.seq)] = QueuePeer.HeldDelivery(entry: entry, queue: queue, consumer: consumer)
        }
        send(.deliver(consumer: proxy.id, seq: entry.seq, redelivered: entry.redelivered, message: message), to: p)
    }

    func proxyCredit(_ id: UInt64, _ n: Int, from p: QueuePeer) {
        guard let c = p.proxies[id], let proxy = c.proxy else { return }
        proxy.inFlight = max(0, proxy.inFlight - n)
        c.queue.dispatch()
    }

    func settled(_ outcome: UInt8, vhost: String, queue: String, seqs: [UInt64], from p: QueuePeer) {
        guard let q = broker.vhosts[vhost]?.queues[queue], q.isLocal else { return }
        var entries: [QueueEntry] = []
        entries.reserveCapacity(seqs.count)
        var fromConsumers = false
        for s in seqs {
            guard let held = p.unacked.removeValue(forKey: QueuePeer.HeldKey(queue: q.serial, seq: s)) else { continue }
            if let c = held.consumer {
                c.unacked -= 1
                fromConsumers = true
            }
            entries.append(held.entry)
        }
        guard !entries.isEmpty else { return }
        switch outcome {
        case QueueLinkMessage.ack: for e in entries { q.acknowledged(e) }
        case QueueLinkMessage.drop: for e in entries { q.rejected(e) }
        default: q.requeue(entries)
        }
        if fromConsumers { q.dispatch() }
    }

    func serveGet(request: UInt64, vhost: String, queue: String, noAck: Bool, for p: QueuePeer) {
        guard let q = broker.vhosts[vhost]?.queues[queue], q.isLocal, !q.isDeleted else {
            return send(.reply(request: request, result: .failure(.notFound("no queue '\(queue)' in vhost '\(vhost)'"))), to: p)
        }
        if waitsForElection(q, request: request, for: p, then: { [self] in serveGet(request: request, vhost: vhost, queue: queue, noAck: noAck, for: p) }) {
            return
        }
        guard let e = q.get(noAck: noAck) else {
            return send(.getReply(request: request, seq: 0, redelivered: false, remaining: 0, message: nil), to: p)
        }
        if !noAck { p.unacked[QueuePeer.HeldKey(queue: q.serial, seq: e.seq)] = QueuePeer.HeldDelivery(entry: e, queue: q, consumer: nil) }
        send(
            .getReply(request: request, seq: e.seq, redelivered: e.redelivered, remaining: UInt32(clamping: q.messageCount), message: q.onWire(e, always: true)),
            to: p)
    }

    /// A replicated queue recorded here whose leadership this node has not taken up yet (an
    /// election): the request is served once it does, or refused if it does not in time. True
    /// when it waits.
    private func waitsForElection(_ q: MessageQueue, request: UInt64, for p: QueuePeer, then serve: @escaping () -> Void) -> Bool {
        guard let r = q.replicated, !r.serving else { return false }
        let generation = p.generation
        r.whenServing { [self] ok in
            guard p.generation == generation else { return }
            guard ok, q.isLocal, !q.isDeleted else {
                return send(.reply(request: request, result: .failure(.notFound("no leader of \(q.resourceDescription) on this node"))), to: p)
            }
            serve()
        }
        return true
    }

    func servePurge(request: UInt64, vhost: String, queue: String, for p: QueuePeer) {
        guard let q = broker.vhosts[vhost]?.queues[queue], q.isLocal, !q.isDeleted else {
            return send(.reply(request: request, result: .failure(.notFound("no queue '\(queue)' in vhost '\(vhost)'"))), to: p)
        }
        if waitsForElection(q, request: request, for: p, then: { [self] in servePurge(request: request, vhost: vhost, queue: queue, for: p) }) {
            return
        }
        send(.reply(request: request, result: .success((UInt32(clamping: q.purge()), 0))), to: p)
    }

    func serveCounts(request: UInt64, vhost: String, queue: String, for p: QueuePeer) {
        guard let q = broker.vhosts[vhost]?.queues[queue], q.isLocal, !q.isDeleted else {
            return send(.reply(request: request, result: .failure(.notFound("no queue '\(queue)' in vhost '\(vhost)'"))), to: p)
        }
        // A declare on another node counts as a use (x-expires), as one here does.
        q.lastUsed = now
        send(.reply(request: request, result: .success((UInt32(clamping: q.messageCount), UInt32(clamping: q.consumerCount)))), to: p)
    }

    /// A replicated queue's leadership here ended: deliveries of it to other nodes are
    /// forgotten (their acks would be for messages handed out again).
    func forgetDeliveries(of q: MessageQueue) {
        for p in peers.values where !p.unacked.isEmpty {
            for (key, held) in p.unacked where key.queue == q.serial {
                p.unacked[key] = nil
                held.consumer?.unacked -= 1
            }
        }
    }

    /// A queue of this node became replicated: the messages other nodes' consumers hold are
    /// taken back (they go into its group's first state, to be delivered again; their acks
    /// are ignored from now on).
    func takeDeliveries(of q: MessageQueue) -> [QueueEntry] {
        var taken: [QueueEntry] = []
        for p in peers.values where !p.unacked.isEmpty {
            for (key, held) in p.unacked where key.queue == q.serial {
                p.unacked[key] = nil
                held.consumer?.unacked -= 1
                taken.append(held.entry)
            }
        }
        return taken
    }

    /// Other nodes' consumers a replicated queue let go (its leader moved).
    func forgetProxies(_ gone: [Consumer]) {
        for c in gone {
            guard let proxy = c.proxy else { continue }
            proxy.peer.proxies[proxy.id] = nil
        }
    }

    /// A queue of this node was deleted: other nodes' consumers of it and their unacked
    /// deliveries are forgotten (their nodes cancel their side when they apply the deletion).
    func queueDeleted(_ q: MessageQueue) {
        for p in peers.values {
            if p.proxies.values.contains(where: { $0.queue === q }) {
                p.proxies = p.proxies.filter { $0.value.queue !== q }
            }
            if !p.unacked.isEmpty {
                p.unacked = p.unacked.filter { $0.key.queue != q.serial }
            }
        }
    }

    /// The session with `p` ended: its consumers go, its unacked deliveries return to their
    /// queues (marked redelivered), confirms it waits for are no longer owed, and queues stop
    /// holding back its credit.
    func endAsHome(_ p: QueuePeer) {
        let proxies = p.proxies.values.sorted { $0.proxy!.id < $1.proxy!.id }
        p.proxies.removeAll()
        for c in proxies where c.queue.removeConsumer(c) {
            broker.proposeDeletion(of: c.queue, why: "auto-delete: its last consumer (on \(p.name)) went")
        }
        if !p.unacked.isEmpty {
            var byQueue: [ObjectIdentifier: (MessageQueue, [QueueEntry])] = [:]
            for held in p.unacked.values {
                byQueue[ObjectIdentifier(held.queue), default: (held.queue, [])].1.append(held.entry)
            }
            p.unacked.removeAll()
            for (q, entries) in byQueue.values where !q.isDeleted { q.requeue(entries.sorted { $0.seq < $1.seq }) }
        }
        p.durableConfirms.removeAll()
        p.publishCreditOwed = 0
        for q in p.pausingQueues.values { q.forgetPausedPublisher(p) }
        p.pausingQueues.removeAll()
    }
}

/// A peer that publishes to this node's queues is paused by withholding its credit.
extension QueuePeer: PausablePublisher {
    func pauseReading(for source: any FlowSource) {
        guard let q = source as? MessageQueue else { return }
        pausingQueues[ObjectIdentifier(q)] = q
    }

    func resumeReading(for source: any FlowSource) {
        guard let q = source as? MessageQueue, pausingQueues.removeValue(forKey: ObjectIdentifier(q)) != nil, pausingQueues.isEmpty else { return }
        publishCreditDue += publishCreditOwed
        publishCreditOwed = 0
        q.vhost.broker.clusterQueues?.requestFlush()
    }
}

/// A publish from another node to replicated queues here: answered when each group did.
final class ReplicatedParts {
    var remaining = 0
    var ok = true
    var finish: ((Bool) -> Void)?
}
