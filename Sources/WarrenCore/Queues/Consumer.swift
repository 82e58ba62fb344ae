public import AMQPProtocol
import NIOCore

/// A subscription of a channel to a queue (`basic.consume`).
///
/// On a queue's home node a consumer of another node is represented by a consumer with no
/// channel and a `proxy`: its deliveries go to that node in batches (`ClusterQueues`).
public final class Consumer {
    public let tag: String
    /// The channel it delivers to; nil for a proxy of another node's consumer.
    public unowned(unsafe) let channel: ChannelSession?
    public unowned(unsafe) let queue: MessageQueue
    public let noAck: Bool
    public let exclusive: Bool
    /// Per-consumer prefetch (`basic.qos` with global=false, fixed at consume time); 0 = unlimited.
    public let prefetchCount: Int
    public let arguments: FieldTable
    /// Messages delivered to this consumer and not yet settled.
    @exclusivity(unchecked) public internal(set) var unacked = 0
    /// The head of this consumer's basic.deliver frames (ids and tag), encoded once.
    let deliverPrefix: ByteBuffer
    /// `x-priority`: consumers of higher priority get messages first.
    public let priority: Int
    /// On the home node: where a consumer of another node gets its deliveries.
    let proxy: ConsumerProxy?
    /// On the consumer's node, for a queue of another node: its id in that node's eyes.
    var remoteID: UInt64 = 0

    init(
        tag: String, channel: ChannelSession?, queue: MessageQueue, noAck: Bool, exclusive: Bool,
        prefetchCount: Int, arguments: FieldTable, proxy: ConsumerProxy? = nil
    ) {
        self.tag = tag
        self.channel = channel
        self.queue = queue
        self.noAck = noAck
        self.exclusive = exclusive
        self.prefetchCount = prefetchCount
        self.arguments = arguments
        self.deliverPrefix = ByteBuffer.amqpDeliverPrefix(consumerTag: tag)
        self.priority = Int(arguments["x-priority"]?.integerValue ?? 0)
        self.proxy = proxy
    }

    /// The node of a proxied consumer; nil for this node's own.
    public var remoteNode: String? { proxy?.peer.name }

    /// The queue went away: its channel forgets this consumer and tells a client that
    /// understands `consumer_cancel_notify`. (A proxy's node does the same when it applies the
    /// deletion.)
    public func cancelledByBroker() {
        channel?.consumerCancelledByBroker(self)
    }

    /// True when a message may be delivered to this consumer now. Auto-ack consumers ignore
    /// prefetch, as in RabbitMQ.
    var hasRoom: Bool {
        guard let channel else { return proxy!.hasRoom(self) }
        guard channel.acceptsDeliveries else { return false }
        if noAck { return true }
        if prefetchCount > 0 && unacked >= prefetchCount { return false }
        return channel.globalPrefetchHasRoom
    }
}

/// The home node's side of a consumer on another node.
final class ConsumerProxy {
    unowned(unsafe) let peer: QueuePeer
    let id: UInt64
    /// Credit of deliveries sent that its node has not yet handed to its client (`ClusterQueues.cost`
    /// each): bounded by `ClusterQueues.consumerWindow`, so a slow client holds messages here,
    /// in the queue.
    @exclusivity(unchecked) var inFlight = 0

    init(peer: QueuePeer, id: UInt64) {
        self.peer = peer
        self.id = id
    }

    func hasRoom(_ c: Consumer) -> Bool {
        guard peer.up, inFlight < ClusterQueues.consumerWindow else { return false }
        return c.noAck || c.prefetchCount == 0 || c.unacked < c.prefetchCount
    }

    /// Held back by its node (the window is full): the queue's flow control counts it as a
    /// consumer whose socket is full.
    var isHeld: Bool { inFlight >= ClusterQueues.consumerWindow }
}

/// Who a queue pauses when it fills faster than its consumers take: a connection here, or the
/// node a remote publisher is on (its credit is held back).
protocol PausablePublisher: AnyObject {
    func pauseReading(for source: any FlowSource)
    func resumeReading(for source: any FlowSource)
}

/// What pauses a publishing connection: a queue over its high-water mark, or a node that has
/// not yet given back credit for what this node sent it.
protocol FlowSource: AnyObject {
    func forgetPausedPublisher(_ publisher: any PausablePublisher)
    var flowDescription: String { get }
}

extension AMQPConnection: PausablePublisher {}
