import Logging
import AMQPProtocol
import DequeModule
import NIOCore

/// This node's channels using queues whose home is another node.
extension ClusterQueues {
    /// RabbitMQ's answer for a queue whose node is down.
    func homeDown(_ q: MessageQueue) -> AMQPError {
        .notFound("home node '\(q.homeNode)' of \(q.durable ? "durable " : "")queue '\(q.name)' in vhost '\(q.vhost.name)' is down or inaccessible")
    }

    /// The peer for a queue's home, unless the link to it failed (then operations fail at once;
    /// while it is still coming up they wait for it).
    func usablePeer(_ q: MessageQueue) -> QueuePeer? {
        guard let p = peer(q.homeNode), !p.failed else { return nil }
        return p
    }

    /// Sends a message routed here to queues of `node`. With `confirm`, the channel hears
    /// whether they took it (`ChannelSession.remoteConfirm`). False when that node cannot be
    /// reached now: the message did not go.
    func publish(
        _ message: Message, vhost: String, queues: [String], to node: String, confirm: (channel: ChannelSession, seq: UInt64)?,
        publisher: AMQPConnection?
    ) -> Bool {
        guard let p = lastPeer?.name == node ? lastPeer : peer(node), !p.failed else { return false }
        lastPeer = p
        var id: UInt64 = 0
        if let confirm {
            id = nextID
            nextID &+= 1
            p.confirmWaits[id] = (confirm.channel, confirm.seq, vhost, queues)
        }
        send(.publish(confirm: id, vhost: vhost, queues: queues, message: message), to: p)
        p.credit -= Self.cost(message)
        if p.credit <= 0, let publisher, p.pausedConnections.updateValue(publisher, forKey: ObjectIdentifier(publisher)) == nil {
            publisher.pauseReading(for: p)
        }
        return true
    }

    func confirmed(_ id: UInt64, ok: Bool, by p: QueuePeer) {
        guard let w = p.confirmWaits.removeValue(forKey: id) else {
            p.forwardWaits.removeValue(forKey: id)?.completion(ok)
            return
        }
        w.channel.remoteConfirm(w.seq, ok: ok)
    }

    /// Passes a publish for a replicated queue on to the node that leads it now; `completion`
    /// (if any) hears how it ended there. False when that node cannot be reached now.
    func forward(_ message: Message, vhost: String, queue: String, to node: String, completion: ((Bool) -> Void)?) -> Bool {
        forward(message, vhost: vhost, queues: [queue], to: node, completion: completion)
    }

    func forward(_ message: Message, vhost: String, queues: [String], to node: String, completion: ((Bool) -> Void)?) -> Bool {
        guard let p = peer(node), !p.failed else { return false }
        var id: UInt64 = 0
        if let completion {
            id = nextID
            nextID &+= 1
            p.forwardWaits[id] = QueuePeer.ForwardWait(vhost: vhost, queues: queues, completion: completion)
        }
        send(.publish(confirm: id, vhost: vhost, queues: queues, message: message), to: p)
        p.credit -= Self.cost(message)
        return true
    }

    /// A replicated queue's leader moved away from `node`: publishes sent to it for that queue
    /// and not answered yet get `abandonGrace` more to be answered (a node that is up passes
    /// them on to the new leader and confirms them), then are nacked; not left until the session
    /// with `node` ends, which for a paused node (its sockets stay open) is the whole queue-link
    /// timeout. A nack says "maybe": the old leader may have committed it before it stopped,
    /// and then it is delivered too; the publisher resends.
    func abandonForwards(to node: String, vhost: String, queue: String) {
        guard let p = peers[node] else { return }
        let deadline = now + Self.abandonGrace
        for (id, w) in p.forwardWaits where w.vhost == vhost && w.queues.contains(queue) { p.abandonAt[id] = p.abandonAt[id] ?? deadline }
        for (id, w) in p.confirmWaits where w.vhost == vhost && w.queues.contains(queue) { p.abandonAt[id] = p.abandonAt[id] ?? deadline }
    }

    static let abandonGrace: Int64 = 2000

    /// Nacks the abandoned waits whose grace is over (from `tick`).
    func expireAbandoned(_ p: QueuePeer, now t: Int64) {
        guard !p.abandonAt.isEmpty else { return }
        let due = p.abandonAt.filter { $0.value <= t }.keys.sorted()
        var nacked = 0
        for id in due {
            p.abandonAt[id] = nil
            if let f = p.forwardWaits.removeValue(forKey: id) {
                nacked += 1
                f.completion(false)
            } else if let w = p.confirmWaits.removeValue(forKey: id) {
                nacked += 1
                w.channel.remoteConfirm(w.seq, ok: false)
            }
        }
        if nacked > 0 {
            broker.logger.info(
                "replicated queue: publishes sent to a node that no longer leads their queue were not answered in time: nacked",
                metadata: ["node": "\(p.name)", "count": "\(nacked)"])
        }
    }

    /// Confirms settled while a batch was read go out together (as `multiple` where they can).
    func announceConfirms() {
        guard !confirmChannels.isEmpty else { return }
        let channels = confirmChannels
        confirmChannels.removeAll(keepingCapacity: true)
        for ch in channels {
            ch.confirmFlushPending = false
            if ch.state == .open { ch.connection.confirmsPending(on: ch) }
        }
    }

    func creditReturned(_ n: Int, by p: QueuePeer) {
        p.credit += n
        guard p.credit > 0, !p.pausedConnections.isEmpty else { return }
        let paused = p.pausedConnections.values
        p.pausedConnections.removeAll()
        for c in paused { c.resumeReading(for: p) }
    }

    /// Sends a request; `answer` gets the reply, or a failure when the node is down or does
    /// not answer within `silenceLimit`.
    func request(
        _ p: QueuePeer, about q: MessageQueue, _ make: (UInt64) -> QueueLinkMessage,
        answer: @escaping (Result<QueueLinkMessage, AMQPError>) -> Void
    ) {
        let id = nextID
        nextID &+= 1
        p.requests[id] = QueuePeer.PendingRequest(deadline: now + silenceLimit, queue: q, answer: answer)
        send(make(id), to: p)
    }

    // MARK: deliveries

    func delivered(_ id: UInt64, seq: UInt64, redelivered: Bool, message: Message, from p: QueuePeer) {
        guard let c = p.consumers[id] else {
            // Cancelled here while this was on its way: back to the queue, unless it needed no ack.
            if let q = p.cancelling[id], !q.noAck {
                send(.settle(outcome: QueueLinkMessage.requeue, vhost: q.queue.vhost.name, queue: q.queue.name, seqs: [seq]), to: p)
            }
            return
        }
        if p.backlog[id] == nil && canDeliver(c) {
            hand(c, seq: seq, redelivered: redelivered, message: message, from: p)
        } else {
            p.backlog[id, default: []].append((seq, redelivered, message))
        }
    }

    private func canDeliver(_ c: Consumer) -> Bool {
        guard let channel = c.channel, channel.acceptsDeliveries else { return false }
        return c.noAck || channel.globalPrefetchHasRoom
    }

    private func hand(_ c: Consumer, seq: UInt64, redelivered: Bool, message: Message, from p: QueuePeer) {
        let entry = QueueEntry(message: message, redelivered: redelivered, seq: seq, expiresAt: 0, priority: 0)
        c.channel!.deliver(entry, from: c.queue, to: c, message: message, session: p.theirGeneration)
        p.consumerCreditDue[c.remoteID, default: 0] += UInt32(Self.cost(message))
        requestFlush()
    }

    /// A consumer's channel may have room again: deliveries that waited go to it.
    func drain(_ c: Consumer) {
        guard let p = peers[c.queue.homeNode], var waiting = p.backlog[c.remoteID] else { return }
        while let first = waiting.first, canDeliver(c) {
            waiting.removeFirst()
            hand(c, seq: first.seq, redelivered: first.redelivered, message: first.message, from: p)
        }
        p.backlog[c.remoteID] = waiting.isEmpty ? nil : waiting
    }

    /// Settles deliveries from a queue of another node; those from an ended session are
    /// already back in their queue there.
    func settle(_ deliveries: [Delivery], _ outcome: ChannelSession.Settlement, queue q: MessageQueue) {
        guard let p = peers[q.homeNode], p.up || !p.failed else { return }
        let seqs = deliveries.compactMap { $0.session == p.theirGeneration ? $0.entry.seq : nil }
        guard !seqs.isEmpty else { return }
        let code: UInt8
        switch outcome {
        case .ack: code = QueueLinkMessage.ack
        case .requeue: code = QueueLinkMessage.requeue
        case .drop: code = QueueLinkMessage.drop
        }
        send(.settle(outcome: code, vhost: q.vhost.name, queue: q.name, seqs: seqs), to: p)
    }

    /// This node's consumers of a queue of another node, which is being deleted: they are
    /// forgotten here (the caller tells their channels).
    func takeConsumers(of q: MessageQueue) -> [Consumer] {
        guard let p = peers[q.homeNode] else { return [] }
        let taken = p.consumers.values.filter { $0.queue === q }.sorted { $0.remoteID < $1.remoteID }
        for c in taken {
            p.consumers[c.remoteID] = nil
            p.backlog[c.remoteID] = nil
        }
        return taken
    }

    /// The session with `p` ended: publishes waiting for its confirm are nacked, requests fail
    /// with 404 (home node down), consumers of its queues are cancelled (the client hears
    /// basic.cancel), paused publishers go on.
    func endAsClient(_ p: QueuePeer) {
        p.abandonAt.removeAll()
        let waits = p.confirmWaits.sorted { $0.key < $1.key }
        p.confirmWaits.removeAll()
        for (_, w) in waits { w.channel.remoteConfirm(w.seq, ok: false) }
        let forwarded = p.forwardWaits.sorted { $0.key < $1.key }
        p.forwardWaits.removeAll()
        for (_, f) in forwarded { f.completion(false) }
        let requests = p.requests.sorted { $0.key < $1.key }
        p.requests.removeAll()
        for (_, r) in requests { r.answer(.failure(homeDown(r.queue))) }
        let consumers = p.consumers.values.sorted { $0.remoteID < $1.remoteID }
        p.consumers.removeAll()
        p.backlog.removeAll()
        p.cancelling.removeAll()
        for c in consumers {
            // A replicated queue's consumer waits for the next leader, or for the link.
            if let r = c.queue.replicated { r.linkLost(c) } else { c.cancelledByBroker() }
        }
        p.credit = Self.publishWindow
        let paused = p.pausedConnections.values
        p.pausedConnections.removeAll()
        for c in paused { c.resumeReading(for: p) }
        announceConfirms()
    }
}

extension QueuePeer: FlowSource {
    func forgetPausedPublisher(_ publisher: any PausablePublisher) {
        pausedConnections[ObjectIdentifier(publisher)] = nil
    }

    var flowDescription: String { "node \(name) (publish credit)" }
}

/// A queue whose home is another node, as this node's channels use it.
final class RemoteQueue: QueueContents {
    unowned(unsafe) let queue: MessageQueue

    init(queue: MessageQueue) { self.queue = queue }

    private var cluster: ClusterQueues? { queue.vhost.broker.clusterQueues }

    /// The peer to ask, or the reason it cannot be asked.
    private func peer() -> Result<(ClusterQueues, QueuePeer), AMQPError> {
        guard let cq = cluster else { return .failure(.notFound("home node '\(queue.homeNode)' of \(queue.resourceDescription) is not reachable from this node")) }
        guard let p = cq.usablePeer(queue) else { return .failure(cq.homeDown(queue)) }
        return .success((cq, p))
    }

    func addConsumer(_ consumer: Consumer, then: @escaping (AMQPError?) -> Void) {
        let (cq, p): (ClusterQueues, QueuePeer)
        switch peer() {
        case .failure(let e): return then(e)
        case .success(let x): (cq, p) = x
        }
        let id = cq.nextID
        cq.nextID &+= 1
        consumer.remoteID = id
        p.consumers[id] = consumer
        cq.request(p, about: queue) {
            .consume(
                request: $0, consumer: id, vhost: queue.vhost.name, queue: queue.name, tag: consumer.tag, noAck: consumer.noAck,
                exclusive: consumer.exclusive, prefetch: UInt32(clamping: consumer.prefetchCount), arguments: consumer.arguments)
        } answer: { [self] result in
            switch result {
            case .success(.reply(_, .success)):
                guard p.consumers[id] === consumer, !queue.isDeleted else {
                    // The queue was deleted here (its consumers cancelled) while the answer was
                    // on its way: the consumer never starts.
                    p.consumers[id] = nil
                    return then(.notFound("no \(queue.resourceDescription)"))
                }
                if consumer.channel?.state != .open {
                    // The channel closed while it waited.
                    _ = removeConsumer(consumer)
                    return
                }
                then(nil)
            case .success(.reply(_, .failure(let e))), .failure(let e):
                p.consumers[id] = nil
                then(e)
            case .success:
                p.consumers[id] = nil
                then(.internalError("unexpected answer to basic.consume from \(p.name)"))
            }
        }
    }

    func removeConsumer(_ consumer: Consumer) -> Bool {
        guard let cq = cluster, let p = cq.peers[queue.homeNode], p.consumers.removeValue(forKey: consumer.remoteID) != nil else { return false }
        let id = consumer.remoteID
        // What arrived for it and waited for room goes back.
        if let waiting = p.backlog.removeValue(forKey: id), !consumer.noAck, !waiting.isEmpty {
            cq.send(.settle(outcome: QueueLinkMessage.requeue, vhost: queue.vhost.name, queue: queue.name, seqs: waiting.map(\.seq)), to: p)
        }
        p.cancelling[id] = (queue, consumer.noAck)
        cq.request(p, about: queue) { .cancel(request: $0, consumer: id) } answer: { _ in p.cancelling[id] = nil }
        return false
    }

    func get(noAck: Bool, then: @escaping (Result<GetAnswer?, AMQPError>) -> Void) {
        switch peer() {
        case .failure(let e): then(.failure(e))
        case .success(let (cq, p)):
            cq.request(p, about: queue) { .get(request: $0, vhost: queue.vhost.name, queue: queue.name, noAck: noAck) } answer: { result in
                switch result {
                case .success(.getReply(_, let seq, let redelivered, let remaining, let message)):
                    guard let message else { return then(.success(nil)) }
                    let entry = QueueEntry(message: message, redelivered: redelivered, seq: seq, expiresAt: 0, priority: 0)
                    then(.success(GetAnswer(entry: entry, message: message, remaining: Int(remaining), session: p.theirGeneration)))
                case .success(.reply(_, .failure(let e))), .failure(let e): then(.failure(e))
                case .success: then(.failure(.internalError("unexpected answer to basic.get from \(p.name)")))
                }
            }
        }
    }

    func purge(then: @escaping (Result<Int, AMQPError>) -> Void) {
        numbers({ .purge(request: $0, vhost: queue.vhost.name, queue: queue.name) }) { then($0.map { Int($0.0) }) }
    }

    func counts(then: @escaping (Result<QueueCounts, AMQPError>) -> Void) {
        numbers({ .counts(request: $0, vhost: queue.vhost.name, queue: queue.name) }) {
            then($0.map { QueueCounts(messages: Int($0.0), consumers: Int($0.1)) })
        }
    }

    private func numbers(_ make: (UInt64) -> QueueLinkMessage, then: @escaping (Result<(UInt32, UInt32), AMQPError>) -> Void) {
        switch peer() {
        case .failure(let e): then(.failure(e))
        case .success(let (cq, p)):
            cq.request(p, about: queue, make) { result in
                switch result {
                case .success(.reply(_, let r)): then(r)
                case .failure(let e): then(.failure(e))
                case .success: then(.failure(.internalError("unexpected answer from \(p.name)")))
                }
            }
        }
    }

    func settle(_ deliveries: [Delivery], _ outcome: ChannelSession.Settlement) {
        cluster?.settle(deliveries, outcome, queue: queue)
    }

    func acknowledge(_ delivery: Delivery) { cluster?.settle([delivery], .ack, queue: queue) }

    func dispatch(for consumer: Consumer) { cluster?.drain(consumer) }
}
