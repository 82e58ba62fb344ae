import Logging
import AMQPProtocol

extension VirtualHost {
    /// Republishes a message that left `queue` for `reason` to the queue's dead-letter exchange,
    /// with the `x-death` header RabbitMQ writes. Without a dead-letter exchange (or with one that
    /// does not exist) the message is dropped, as in RabbitMQ.
    ///
    /// With `confirmed` (at-least-once dead-lettering): called with true once every queue it was
    /// routed to has it (a replicated one: committed; another node's: answered), false when it
    /// could not be routed or a target refused it or was unreachable (the caller keeps the
    /// message and tries again). A message dropped as a dead-letter cycle counts as done.
    func deadLetter(_ message: Message, from queue: MessageQueue, reason: DeadLetterReason, confirmed: ((Bool) -> Void)? = nil) {
        guard let dlxName = queue.settings.deadLetterExchange else {
            confirmed?(true)
            return
        }
        guard let dlx = exchanges[dlxName] else {
            broker.logger.debug("dead-letter exchange missing; message dropped", metadata: ["queue": "\(queue.name)", "exchange": "\(dlxName)"])
            confirmed?(false)
            return
        }
        let nowSeconds = UInt64(max(0, broker.clock.nowMilliseconds() / 1000))
        let dead = Self.deadLettered(
            message, queue: queue.name, reason: reason, exchange: dlxName, routingKeyOverride: queue.settings.deadLetterRoutingKey,
            time: nowSeconds)
        var targets: [MessageQueue] = []
        // With a dead-letter routing key, that key alone; else the original key and CC keys.
        let keys = queue.settings.deadLetterRoutingKey.map { [$0] } ?? Self.routingKeys(of: message)
        for key in keys {
            routeWithAlternates(dlx, routingKey: key, headers: dead.properties.headers, into: &targets)
        }
        let deaths = Self.deaths(of: dead)
        var remote: [String: [String]] = [:]
        var live: [MessageQueue] = []
        for q in targets {
            // RabbitMQ drops a message that would go round a cycle of automatic dead-lettering
            // (expiry, maxlen) back to a queue it died in; a rejection anywhere breaks the cycle.
            if reason != .rejected, Self.isCycle(queue: q.name, deaths: deaths) {
                broker.logger.debug("dead-letter cycle; message dropped", metadata: ["queue": "\(q.name)"])
                continue
            }
            live.append(q)
        }
        if let confirmed {
            guard !live.isEmpty else { return confirmed(targets.isEmpty ? false : true) }
            return deadLetterConfirmed(dead, to: live, confirmed)
        }
        for q in live {
            if q.isLocal {
                q.enqueue(dead)
            } else {
                remote[q.homeNode, default: []].append(q.name)
            }
        }
        sendToHomes(dead, remote)
    }

    /// Hands `dead` to its targets and calls `confirmed` once, when all have answered: a queue
    /// of this node (not replicated) has it at once, a replicated one when its group committed
    /// it, another node's when that node answers.
    private func deadLetterConfirmed(_ dead: Message, to targets: [MessageQueue], _ confirmed: @escaping (Bool) -> Void) {
        final class Parts {
            var remaining: Int
            var ok = true
            let done: (Bool) -> Void
            init(_ n: Int, _ done: @escaping (Bool) -> Void) {
                remaining = n
                self.done = done
            }
            func answer(_ yes: Bool) {
                ok = ok && yes
                remaining -= 1
                if remaining == 0 { done(ok) }
            }
        }
        var remote: [String: [String]] = [:]
        var local: [MessageQueue] = []
        for q in targets {
            if q.isLocal { local.append(q) } else { remote[q.homeNode, default: []].append(q.name) }
        }
        let parts = Parts(local.count + remote.count, confirmed)
        for q in local {
            if let r = q.replicated {
                if !r.publish(dead, completion: { parts.answer($0) }) { parts.answer(false) }
            } else {
                parts.answer(q.enqueue(dead))
            }
        }
        for (node, names) in remote.sorted(by: { $0.key < $1.key }) {
            let sent = broker.clusterQueues?.forward(dead, vhost: name, queues: names, to: node, completion: { parts.answer($0) }) ?? false
            if !sent { parts.answer(false) }
        }
    }

    /// Hands a message this node routed (dead-lettered, published from the management API) to
    /// queues of other nodes, each node once; without a confirm, as RabbitMQ's dead-lettering
    /// (at-most-once) does. Lost when a node is down.
    func sendToHomes(_ message: Message, _ queues: [String: [String]]) {
        guard !queues.isEmpty, let cq = broker.clusterQueues else { return }
        for (node, names) in queues.sorted(by: { $0.key < $1.key })
        where !cq.publish(message, vhost: name, queues: names, to: node, confirm: nil, publisher: nil) {
            broker.logger.debug("message for queues of a node that is down dropped", metadata: ["node": "\(node)", "queues": "\(names)"])
        }
    }

    /// A message's routing keys: its routing key and the CC keys (BCC is gone by now).
    static func routingKeys(of m: Message) -> [String] {
        var keys = [m.routingKey]
        if let cc = m.properties.headers?["CC"], case .array(let values) = cc {
            keys += values.compactMap(\.stringValue)
        }
        return keys
    }

    /// (queue, reason) of each x-death entry, most recent first.
    static func deaths(of m: Message) -> [(queue: String, reason: String)] {
        guard case .array(let entries)? = m.properties.headers?["x-death"] else { return [] }
        return entries.compactMap { e in
            guard case .table(let t) = e, let q = t["queue"]?.stringValue, let r = t["reason"]?.stringValue else { return nil }
            return (q, r)
        }
    }

    static func isCycle(queue: String, deaths: [(queue: String, reason: String)]) -> Bool {
        guard let i = deaths.firstIndex(where: { $0.queue == queue }) else { return false }
        return deaths[...i].allSatisfy { $0.reason != DeadLetterReason.rejected.rawValue }
    }

    /// The dead-lettered copy: same body, headers with `x-death` updated (an entry per queue and
    /// reason, its count incremented and moved to the front) and `x-first-death-*` set once;
    /// `expiration` removed and kept as `original-expiration`.
    static func deadLettered(
        _ m: Message, queue: String, reason: DeadLetterReason, exchange: String, routingKeyOverride: String?, time: UInt64
    ) -> Message {
        var props = m.properties
        var headers = props.headers ?? FieldTable()
        let originalKeys = routingKeys(of: m).map { FieldValue.string($0) }
        var deaths: [FieldValue] = []
        if case .array(let existing)? = headers["x-death"] { deaths = existing }
        if let i = deaths.firstIndex(where: { d in
            guard case .table(let t) = d else { return false }
            return t["queue"]?.stringValue == queue && t["reason"]?.stringValue == reason.rawValue
        }), case .table(var entry) = deaths[i] {
            entry["count"] = .int64((entry["count"]?.integerValue ?? 0) + 1)
            deaths.remove(at: i)
            deaths.insert(.table(entry), at: 0)
        } else {
            var entry: FieldTable = [
                "count": .int64(1),
                "reason": .string(reason.rawValue),
                "queue": .string(queue),
                "time": .timestamp(time),
                "exchange": .string(m.exchange),
                "routing-keys": .array(originalKeys),
            ]
            if let e = props.expiration { entry["original-expiration"] = .string(e) }
            deaths.insert(.table(entry), at: 0)
        }
        headers["x-death"] = .array(deaths)
        if headers["x-first-death-reason"] == nil {
            headers["x-first-death-reason"] = .string(reason.rawValue)
            headers["x-first-death-queue"] = .string(queue)
            headers["x-first-death-exchange"] = .string(m.exchange)
        }
        props.headers = headers
        props.expiration = nil
        return Message(
            exchange: exchange, routingKey: routingKeyOverride ?? m.routingKey, properties: props, encodedProperties: nil,
            body: m.body)
    }
}
