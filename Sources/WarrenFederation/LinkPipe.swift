import AMQPClient
import AMQPProtocol
import DequeModule
import NIOCore
import WarrenCore

/// The message path of a running link, on the link's event loop (both of its connections live
/// there, so a delivery goes from the upstream socket to the local one without a thread hop
/// and without copying its body).
///
/// on-confirm: an upstream message is acked only when the local broker has confirmed it (for
/// a replicated queue: a majority has it on disk). If either connection drops before that, the
/// upstream requeues it and the next session moves it again: nothing is lost, a message may
/// arrive twice.
final class LinkPipe {
    let upstream: AMQPLoopChannel
    let local: AMQPLoopChannel
    let ackMode: FederationUpstream.AckMode
    let trustUserId: Bool
    /// Where a message goes downstream (the exchange; "" for a queue link).
    let exchange: String
    /// The routing key for every message (a queue link's queue), or nil to keep the message's.
    let routingKey: String?
    /// Rewrites a message's headers for this hop; nil drops the message (a loop).
    let rewrite: (AMQPDelivery) -> FieldTable?
    /// Local confirm sequence number and upstream delivery tag of every message in flight.
    private var inFlight = Deque<(seq: UInt64, tag: UInt64)>()

    init(
        upstream: AMQPLoopChannel, local: AMQPLoopChannel, upstreamSettings u: FederationUpstream, exchange: String, routingKey: String?,
        rewrite: @escaping (AMQPDelivery) -> FieldTable?
    ) {
        self.upstream = upstream
        self.local = local
        self.ackMode = u.ackMode
        self.trustUserId = u.trustUserId
        self.exchange = exchange
        self.routingKey = routingKey
        self.rewrite = rewrite
    }

    func deliver(_ d: AMQPDelivery) {
        guard let headers = rewrite(d) else {
            // Been here before, or too many hops: settled upstream, not passed on.
            if ackMode != .noAck { upstream.ack(d.deliveryTag) }
            return
        }
        var properties = d.properties
        properties.headers = headers
        // Without trust-user-id the upstream's user-id means nothing here (RabbitMQ drops it too).
        if !trustUserId { properties.userID = nil }
        let seq: UInt64
        do {
            seq = try local.publish(exchange: exchange, routingKey: routingKey ?? d.routingKey, properties: properties, body: d.body)
        } catch {
            // The local connection is gone; the session ends and the upstream puts the message
            // back when its connection closes.
            return
        }
        switch ackMode {
        case .onConfirm: inFlight.append((seq, d.deliveryTag))
        case .onPublish: upstream.ack(d.deliveryTag)
        case .noAck: break
        }
    }

    /// A confirm (or nack) from the local broker.
    func confirmed(tag: UInt64, multiple: Bool, ack: Bool) {
        guard ackMode == .onConfirm else { return }
        if multiple {
            var last: UInt64?
            while let first = inFlight.first, first.seq <= tag {
                inFlight.removeFirst()
                if ack {
                    last = first.tag
                } else {
                    upstream.nack(first.tag, requeue: true)
                }
            }
            // In-flight messages are in upstream order and everything before them is settled:
            // one multiple ack covers them all.
            if let last { upstream.ack(last, multiple: true) }
        } else if let i = inFlight.firstIndex(where: { $0.seq == tag }) {
            let entry = inFlight.remove(at: i)
            if ack { upstream.ack(entry.tag) } else { upstream.nack(entry.tag, requeue: true) }
        }
    }
}
