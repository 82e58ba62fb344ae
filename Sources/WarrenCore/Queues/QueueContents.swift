import AMQPProtocol

/// The seam between channels and a queue's messages: what a channel does with a queue, wherever
/// its messages live. `MessageQueue` is the queue of this node; `RemoteQueue` one whose home is
/// another node (its operations cross in batches, `ClusterQueues`); replicated queues are the
/// next kind. A channel asks through this protocol and never looks at where the queue is.
///
/// Answers that may need another node come through a callback. A queue of this node calls it
/// before returning, so a channel's `awaitAnswer` goes on at once; otherwise the channel holds
/// its later commands until the answer comes (their order is kept).
protocol QueueContents: AnyObject {
    /// basic.consume: `then` gets nil once the consumer is in place and before its first
    /// delivery, or the refusal (403 in exclusive use, 404 home node down).
    func addConsumer(_ consumer: Consumer, then: @escaping (AMQPError?) -> Void)
    /// basic.cancel, a closed channel. True when this left an auto-delete queue without
    /// consumers (the caller proposes its deletion); a queue elsewhere decides that itself.
    func removeConsumer(_ consumer: Consumer) -> Bool
    /// basic.get: the head message (nil: empty), or why not.
    func get(noAck: Bool, then: @escaping (Result<GetAnswer?, AMQPError>) -> Void)
    func purge(then: @escaping (Result<Int, AMQPError>) -> Void)
    /// Ready messages and consumers, for declare-ok and delete's checks.
    func counts(then: @escaping (Result<QueueCounts, AMQPError>) -> Void)
    /// Acks, requeues or drops deliveries of this queue (in delivery order).
    func settle(_ deliveries: [Delivery], _ outcome: ChannelSession.Settlement)
    /// The usual case: one ack.
    func acknowledge(_ delivery: Delivery)
    /// `consumer` may have room again: what waits for it goes out.
    func dispatch(for consumer: Consumer)
}

/// basic.get's answer: the entry, the message as the client gets it, what is left.
struct GetAnswer {
    var entry: QueueEntry
    var message: Message
    var remaining: Int
    /// The home node's session it came in (0: this node).
    var session: UInt64 = 0
}

struct QueueCounts {
    var messages: Int
    var consumers: Int
}

extension MessageQueue: QueueContents {
    /// Where a channel sends what it does with this queue.
    var contents: any QueueContents {
        if let r = replicated { return r }
        return isLocal ? self : remote
    }

    /// RabbitMQ's refusal of a consumer when another holds the queue exclusively.
    func refusal(exclusive: Bool) -> AMQPError? {
        if hasExclusiveConsumer || (exclusive && consumerCount > 0) { return .accessRefused("\(resourceDescription) in exclusive use") }
        return nil
    }

    func addConsumer(_ consumer: Consumer, then: @escaping (AMQPError?) -> Void) {
        if let refusal = refusal(exclusive: consumer.exclusive) { return then(refusal) }
        then(nil)
        addConsumer(consumer)
    }

    func get(noAck: Bool, then: @escaping (Result<GetAnswer?, AMQPError>) -> Void) {
        guard let e = get(noAck: noAck) else { return then(.success(nil)) }
        then(.success(GetAnswer(entry: e, message: onWire(e, always: true), remaining: messageCount)))
    }

    func purge(then: @escaping (Result<Int, AMQPError>) -> Void) { then(.success(purge())) }

    func counts(then: @escaping (Result<QueueCounts, AMQPError>) -> Void) {
        then(.success(QueueCounts(messages: messageCount, consumers: consumerCount)))
    }

    func settle(_ deliveries: [Delivery], _ outcome: ChannelSession.Settlement) {
        switch outcome {
        case .ack: for d in deliveries { acknowledged(d.entry) }
        case .drop: for d in deliveries { rejected(d.entry) }
        case .requeue: requeue(deliveries.map(\.entry))
        }
    }

    func acknowledge(_ delivery: Delivery) { acknowledged(delivery.entry) }

    func dispatch(for consumer: Consumer) { dispatch() }
}
