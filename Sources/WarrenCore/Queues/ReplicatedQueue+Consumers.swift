import AMQPProtocol
import NIOCore

/// Where a replicated queue's consumers of this node attach (the recorded leader, wherever it
/// is), and what channels do with the queue (`QueueContents`).
extension ReplicatedQueue {
    /// The metadata recorded a leader.
    func leaderRecorded(_ node: String, term: UInt64) {
        guard term >= leaderTerm else { return }
        leaderTerm = term
        if node == wantedLeader { wantedLeader = nil }
        let old = queue.homeNode
        if node != old {
            for c in consumers { detach(c) }
            if old == me {
                // Other nodes' consumers held here go: their nodes attach them to the new leader.
                let gone = queue.dropProxies()
                manager.broker.clusterQueues?.forgetProxies(gone)
                manager.broker.clusterQueues?.forgetDeliveries(of: queue)
            }
            queue.homeNode = node
            queue.isLocal = node == me
            if old != me { manager.broker.clusterQueues?.abandonForwards(to: old, vhost: queue.vhost.name, queue: queue.name) }
            // Requests that waited here for this node to serve go where the queue is now.
            if old == me && !waiters.isEmpty {
                let w = waiters
                waiters.removeAll()
                for x in w { x.run(false) }
            }
            // Publishes that waited here for a leader go to the one recorded.
            let h = held
            held.removeAll()
            for x in h where !publish(x.message, completion: x.completion) { x.completion?(false) }
        }
        attachDetached()
    }

    /// A consumer of this node that was attached to the queue before it became replicated: it
    /// stays attached where it is (the home, here or on its node) and moves with the leader.
    func adopt(_ c: Consumer) {
        guard !consumers.contains(where: { $0 === c }) else { return }
        consumers.append(c)
        attachedTo[ObjectIdentifier(c)] = queue.homeNode
    }

    /// Attaches the consumers that wait to the recorded leader.
    func attachDetached() {
        for c in consumers where attachedTo[ObjectIdentifier(c)] == "" { attach(c, first: nil) }
    }

    /// The link to the leader dropped: its consumers wait (the leader requeued their deliveries).
    func linkLost(_ c: Consumer) {
        if attachedTo[ObjectIdentifier(c)] != nil { attachedTo[ObjectIdentifier(c)] = "" }
    }

    private func attach(_ c: Consumer, first: ((AMQPError?) -> Void)?) {
        let id = ObjectIdentifier(c)
        let node = queue.homeNode
        if node == me {
            if let refusal = queue.refusal(exclusive: c.exclusive) { return refused(c, refusal, first: first) }
            attachedTo[id] = me
            first?(nil)
            queue.addConsumer(c)
            return
        }
        attachedTo[id] = ""
        guard !node.isEmpty else {
            first?(nil)
            return
        }
        attachedTo[id] = node
        queue.remote.addConsumer(c) { [self] error in
            guard attachedTo[id] == node else { return }  // moved or cancelled meanwhile
            guard let error else {
                first?(nil)
                return
            }
            if error.code == .accessRefused { return refused(c, error, first: first) }
            // No leader there now: it waits for the next record, or for the link.
            attachedTo[id] = ""
            first?(nil)
        }
    }

    private func refused(_ c: Consumer, _ error: AMQPError, first: ((AMQPError?) -> Void)?) {
        consumers.removeAll { $0 === c }
        attachedTo[ObjectIdentifier(c)] = nil
        if let first { first(error) } else { c.cancelledByBroker() }
    }

    private func detach(_ c: Consumer) {
        let id = ObjectIdentifier(c)
        guard let at = attachedTo[id], !at.isEmpty else { return }
        attachedTo[id] = ""
        if at == me {
            _ = queue.removeConsumer(c)
        } else if at == queue.homeNode {
            _ = queue.remote.removeConsumer(c)
        }
    }

    // MARK: QueueContents

    func addConsumer(_ consumer: Consumer, then: @escaping (AMQPError?) -> Void) {
        consumers.append(consumer)
        attach(consumer, first: then)
    }

    func removeConsumer(_ consumer: Consumer) -> Bool {
        guard let i = consumers.firstIndex(where: { $0 === consumer }) else { return false }
        detach(consumer)
        consumers.remove(at: i)
        attachedTo[ObjectIdentifier(consumer)] = nil
        return false
    }

    /// RabbitMQ's answer when a queue's leader is not reachable.
    private var unavailable: AMQPError {
        .notFound("home node '\(queue.homeNode)' of durable queue '\(queue.name)' in vhost '\(queue.vhost.name)' is down or inaccessible")
    }

    /// Runs `body` once this node serves (false: it did not within the timeout).
    func whenServing(_ body: @escaping (Bool) -> Void) {
        if serving { return body(true) }
        guard isMember else { return body(false) }
        waiters.append((manager.now + manager.timeout, body))
    }

    /// Runs a request where the queue is served: here once this node serves, or on the
    /// recorded leader. If the leader moved while it waited or travelled (an election), it is
    /// asked again where the queue is now, a few times.
    private func routed<T>(
        attempts: Int = 3, _ here: @escaping () -> T, remote: @escaping (@escaping (Result<T, AMQPError>) -> Void) -> Void,
        then: @escaping (Result<T, AMQPError>) -> Void
    ) {
        let home = queue.homeNode
        let again = { [self] (failure: Result<T, AMQPError>) in
            if attempts > 1 && queue.homeNode != home && !queue.isDeleted {
                routed(attempts: attempts - 1, here, remote: remote, then: then)
            } else {
                then(failure)
            }
        }
        if home == me {
            whenServing { [self] ok in
                guard ok, !queue.isDeleted else { return again(.failure(unavailable)) }
                then(.success(here()))
            }
        } else if home.isEmpty {
            then(.failure(unavailable))
        } else {
            remote { result in
                if case .failure = result { again(result) } else { then(result) }
            }
        }
    }

    func get(noAck: Bool, then: @escaping (Result<GetAnswer?, AMQPError>) -> Void) {
        routed({ [self] in
            guard let e = queue.get(noAck: noAck) else { return nil }
            return GetAnswer(entry: e, message: queue.onWire(e, always: true), remaining: queue.messageCount, session: epoch)
        }, remote: { [self] in queue.remote.get(noAck: noAck, then: $0) }, then: then)
    }

    func purge(then: @escaping (Result<Int, AMQPError>) -> Void) {
        routed({ [self] in queue.purge() }, remote: { [self] in queue.remote.purge(then: $0) }, then: then)
    }

    func counts(then: @escaping (Result<QueueCounts, AMQPError>) -> Void) {
        // (Any member's counts will do while an election runs.)
        if queue.homeNode == me { return then(.success(QueueCounts(messages: queue.messageCount, consumers: queue.consumerCount))) }
        routed({ [self] in QueueCounts(messages: queue.messageCount, consumers: queue.consumerCount) },
               remote: { [self] in queue.remote.counts(then: $0) }, then: then)
    }

    func settle(_ deliveries: [Delivery], _ outcome: ChannelSession.Settlement) {
        var here: [Delivery] = []
        var there: [Delivery] = []
        for d in deliveries {
            if d.session == epoch && serving {
                // This leadership's own delivery, unless the log settled it meanwhile.
                if handedOut[d.entry.seq] != nil { here.append(d) }
            } else if d.session > UInt64(UInt32.max) {
                there.append(d)  // (the cluster's sessions; one that ended is filtered there)
            } else if d.session == 0 {
                // Delivered before the queue was replicated (a policy made it mirrored): not in
                // the group's state, so an ack has nothing to remove; a requeue publishes it
                // again, a rejection dead-letters it as the queue would have.
                switch outcome {
                case .ack: break
                case .requeue: _ = publish(d.entry.message, completion: nil)
                case .drop: queue.vhost.deadLetter(d.entry.message, from: queue, reason: .rejected)
                }
            }
        }
        if !here.isEmpty { queue.settle(here, outcome) }
        if !there.isEmpty { queue.remote.settle(there, outcome) }
    }

    func acknowledge(_ delivery: Delivery) { settle([delivery], .ack) }

    func dispatch(for consumer: Consumer) {
        switch attachedTo[ObjectIdentifier(consumer)] {
        case me?: queue.dispatch()
        case nil, ""?: break
        default: queue.remote.dispatch(for: consumer)
        }
    }
}
