import Logging
extension Broker {
    /// Registers a queue that holds deadlines (message TTL, per-message expiration, x-expires)
    /// so `tick()` looks at it.
    func watch(_ queue: MessageQueue) {
        timedQueues[ObjectIdentifier(queue)] = queue
    }

    /// Expires messages and unused queues. The node calls this on a short timer; a queue's
    /// expired messages are never delivered in between either (dispatch checks each one).
    public func tick() {
        guard !timedQueues.isEmpty else { return }
        let now = clock.nowMilliseconds()
        for (id, q) in timedQueues {
            if q.isDeleted {
                timedQueues[id] = nil
                continue
            }
            if q.tick(now: now) {
                logger.info("queue expired (x-expires)", metadata: ["queue": "\(q.name)", "vhost": "\(q.vhost.name)"])
                proposeDeletion(of: q, why: "x-expires")
                timedQueues[id] = nil
            }
        }
    }
}
