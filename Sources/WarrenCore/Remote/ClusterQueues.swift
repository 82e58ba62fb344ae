import AMQPProtocol
import Logging
import DequeModule
public import NIOCore

/// Queues of other nodes as this node's channels use them, and this node's queues as other
/// nodes' channels use them: publishes go to a queue's home node, deliveries come back to the
/// consumer's node, acks and credit follow them, all in batches (one per peer per turn of the
/// broker loop). Pure: the node gives it a way to send a batch (`transmit`), a way to run
/// `flush()` at the end of the loop's turn, and tells it about links and time.
///
/// Sessions. Each node keeps, per peer, a generation number it puts in every batch, and echoes
/// the peer's. A node ends a session when its link to the peer drops or the peer is silent for
/// `silenceLimit` (a paused process keeps its sockets): it takes back everything of the
/// session (requeues the peer's unacked deliveries, drops its consumers, nacks publishes that
/// waited for the peer, cancels this node's consumers of the peer's queues) and moves to a new
/// generation. A peer that sees the new generation ends its side of the session the same way;
/// a batch echoing an old generation is from an ended session and is ignored. So a delivery is
/// acked in the session it was made in or not at all (it was requeued), and no confirm is sent
/// for a message the other side has already nacked.
///
/// Order with definitions. A batch also carries the metadata log position its sender had
/// applied; the receiver handles it only once it has applied as far (it parks it until then). A
/// publish to a queue declared a moment ago, or a consume right after its declare, thus never
/// finds a home node that has not heard of the queue yet; and a node takes no queue traffic
/// before it serves (`serving`), when its definitions may still be replaying.
public final class ClusterQueues {
    unowned(unsafe) let broker: Broker
    /// Sends a batch to a node (the cluster transport's data link). Called on the broker loop.
    public var transmit: ((String, ByteBuffer) -> Void)?
    /// Asks for `flush()` once the current turn of the broker loop is over.
    public var scheduleFlush: (() -> Void)?
    /// A peer heard from neither directly nor through its link for this long is gone.
    public var silenceLimit: Int64 = 10_000
    /// The metadata log position this node has applied (the node's metadata group).
    public var appliedIndex: () -> UInt64 = { 0 }
    /// Off until the node has replayed its definitions: no heartbeats, nothing taken.
    public var serving = false
    /// Batches that wait for this node to apply the metadata their sender had applied.
    private var parked: [(index: UInt64, from: String, batch: ByteBuffer)] = []
    var peers: [String: QueuePeer] = [:]
    /// The peer of the last publish (a publisher sends to the same node again and again).
    @exclusivity(unchecked) weak var lastPeer: QueuePeer?
    /// Channels with confirms settled by the batch being read: announced once it is done.
    var confirmChannels: [ChannelSession] = []
    @exclusivity(unchecked) private var flushPending = false
    @exclusivity(unchecked) var nextID: UInt64 = 1
    /// Credit a node may use for publishes to one node not yet taken there (`cost` units:
    /// 8,192 small messages, or 32 MiB of large ones).
    static let publishWindow = 8192
    /// Credit for deliveries to one consumer on another node not yet handed to its client.
    static let consumerWindow = 1024

    /// What a message costs in credit: one, and one more per 4 KiB of body, so the windows
    /// bound bytes as well as messages. Both ends compute it from the body alone.
    @inline(__always)
    static func cost(_ m: Message) -> Int { 1 + m.bodySize >> 12 }
    /// The top 32 bits of every generation: this process's, so generations of a restarted node
    /// never match those of its previous run.
    private let epoch: UInt64

    init(broker: Broker) {
        self.broker = broker
        var g = SystemRandomNumberGenerator()
        epoch = (g.next() as UInt64) & 0xFFFF_FFFF_0000_0000 | 1 << 16
    }

    var now: Int64 { broker.clock.nowMilliseconds() }

    // MARK: peers and sessions

    /// The peer state for a cluster member; nil for a node that is not one.
    func peer(_ name: String) -> QueuePeer? {
        if let p = peers[name] { return p }
        guard broker.clusterNodes[name] != nil, name != broker.nodeName else { return nil }
        let p = QueuePeer(name: name, generation: epoch | UInt64(peers.count + 1) << 20, since: now)
        peers[name] = p
        return p
    }

    /// Whether the queue session with `node` is up now.
    public func isUp(_ node: String) -> Bool { peers[node]?.up == true }

    /// The nodes whose queue session is up now (they and this node carry each other's
    /// publishes, deliveries and acks).
    public var peersUp: [String] { peers.values.filter(\.up).map(\.name).sorted() }

    /// The link this node sends to `node` on came up or went down.
    public func linkChanged(_ node: String, up: Bool) {
        guard let p = peer(node) else { return }
        p.linkUp = up
        if up {
            heartbeat(p)
            refresh(p)
        } else if p.up || !p.failed {
            end(p, why: "link lost")
        }
    }

    /// Every second: heartbeats, silent peers, members that left.
    public func tick() {
        let t = now
        for name in broker.clusterNodes.keys where name != broker.nodeName { _ = peer(name) }
        for (name, p) in peers {
            if broker.clusterNodes[name] == nil {
                end(p, why: "no longer a member")
                peers[name] = nil
                continue
            }
            if p.up && t - p.lastHeard > silenceLimit {
                end(p, why: "silent for \(silenceLimit / 1000) s")
            } else if !p.up && !p.failed && t - p.since > silenceLimit {
                // Never came up: what waited for it fails.
                end(p, why: "unreachable for \(silenceLimit / 1000) s")
            }
            // (After the checks: a new generation reaches the peer at once.)
            heartbeat(p)
            p.expireRequests(now: t, in: self)
            expireAbandoned(p, now: t)
        }
    }

    private func heartbeat(_ p: QueuePeer) {
        guard serving else { return }
        var b = ByteBuffer()
        QueuePeer.writeHeader(generation: p.generation, echo: p.theirGeneration, applied: appliedIndex(), count: 0, into: &b)
        transmit?(p.name, b)
    }

    /// Whether the session with `p` can carry messages now; sends what waited when it can.
    func refresh(_ p: QueuePeer) {
        let up = p.linkUp && p.heardInSession && p.theirGeneration != 0 && now - p.lastHeard <= silenceLimit
        guard up != p.up else { return }
        p.up = up
        if up {
            p.failed = false
            broker.logger.info("queue link to \(p.name) up")
            requestFlush()
            // Consumers of this node's queues on that node had no room while it was away.
            for q in p.queuesWithProxies() { q.dispatch() }
            broker.replicatedQueues?.peerUp(p.name)
        }
    }

    /// Ends the session with `p` (see the type's comment) and starts the next generation.
    func end(_ p: QueuePeer, why: String, bump: Bool = true) {
        if p.up || !p.isIdle { broker.logger.warning("queue link to \(p.name) ended (\(why)): its consumers are cancelled, unconfirmed publishes nacked") }
        if bump { p.generation &+= 1 }
        p.up = false
        p.heardInSession = false
        p.failed = true
        p.resetOutput()
        endAsClient(p)
        endAsHome(p)
    }

    // MARK: batches

    func requestFlush() {
        guard !flushPending else { return }
        flushPending = true
        if let schedule = scheduleFlush { schedule() } else { flush() }
    }

    /// Sends each peer what this turn of the loop produced for it, as one batch.
    public func flush() {
        flushPending = false
        for p in peers.values {
            p.appendDueCredit()
            guard p.up, p.outCount > 0 else { continue }
            transmit?(p.name, p.takeBatch(applied: appliedIndex()))
        }
    }

    /// A batch from `node`.
    public func received(_ batch: ByteBuffer, from node: String) {
        guard serving, let needed = batch.getInteger(at: batch.readerIndex + 16, as: UInt64.self) else { return }
        if !parked.isEmpty || needed > appliedIndex() {
            // Behind the sender's definitions (or behind batches that are): later, in order.
            parked.append((needed, node, batch))
            return
        }
        take(batch, from: node)
    }

    /// This node applied more of the metadata log: parked batches whose turn came are taken.
    public func metadataApplied(_ index: UInt64) {
        while let first = parked.first, first.index <= index {
            parked.removeFirst()
            take(first.batch, from: first.from)
        }
    }

    private func take(_ batch: ByteBuffer, from node: String) {
        guard let p = peer(node) else { return }
        var b = batch
        guard let generation = b.readInteger(as: UInt64.self), let echo = b.readInteger(as: UInt64.self), b.readInteger(as: UInt64.self) != nil,
            let count = b.readInteger(as: UInt32.self)
        else { return }
        if generation != p.theirGeneration {
            if p.theirGeneration != 0 && generation >> 32 == p.theirGeneration >> 32 && generation < p.theirGeneration {
                return  // from an older session of the same run, overtaken
            }
            // The peer restarted or ended the session: so do we (without a new generation of
            // our own: our current one is what it will echo).
            if p.theirGeneration != 0 { end(p, why: "\(node) started a new session", bump: false) }
            p.theirGeneration = generation
        }
        p.lastHeard = now
        p.heardInSession = true
        refresh(p)
        guard echo == p.generation, count > 0 else { return }
        defer { announceConfirms() }
        for _ in 0..<count {
            do throws(AMQPError) {
                let m = try QueueLinkMessage.read(&b)
                handle(m, from: p)
            } catch {
                broker.logger.error("queue link: malformed batch from \(node) dropped: \(error)")
                end(p, why: "malformed batch")
                return
            }
        }
    }

    private func handle(_ m: QueueLinkMessage, from p: QueuePeer) {
        switch m {
        case .publish(let confirm, let vhost, let queues, let message): takePublish(confirm: confirm, vhost: vhost, queues: queues, message: message, from: p)
        case .confirm(let id, let ok): confirmed(id, ok: ok, by: p)
        case .publishCredit(let n): creditReturned(Int(n), by: p)
        case .consume(let request, let consumer, let vhost, let queue, let tag, let noAck, let exclusive, let prefetch, let arguments):
            addProxy(
                request: request, id: consumer, vhost: vhost, queue: queue, tag: tag, noAck: noAck, exclusive: exclusive, prefetch: Int(prefetch),
                arguments: arguments, for: p)
        case .cancel(let request, let consumer):
            removeProxy(consumer, for: p)
            send(.reply(request: request, result: .success((0, 0))), to: p)
        case .deliver(let consumer, let seq, let redelivered, let message): delivered(consumer, seq: seq, redelivered: redelivered, message: message, from: p)
        case .consumerCredit(let consumer, let n): proxyCredit(consumer, Int(n), from: p)
        case .settle(let outcome, let vhost, let queue, let seqs): settled(outcome, vhost: vhost, queue: queue, seqs: seqs, from: p)
        case .get(let request, let vhost, let queue, let noAck): serveGet(request: request, vhost: vhost, queue: queue, noAck: noAck, for: p)
        case .getReply(let request, let seq, let redelivered, let remaining, let message):
            p.answer(request, .getReply(request: request, seq: seq, redelivered: redelivered, remaining: remaining, message: message))
        case .purge(let request, let vhost, let queue): servePurge(request: request, vhost: vhost, queue: queue, for: p)
        case .counts(let request, let vhost, let queue): serveCounts(request: request, vhost: vhost, queue: queue, for: p)
        case .reply(let request, _): p.answer(request, m)
        }
    }

    /// Queues a message for `p` (sent at the end of this turn, or when the session is up).
    func send(_ m: QueueLinkMessage, to p: QueuePeer) {
        p.append(m)
        if p.up { requestFlush() }
    }
}

/// One peer, as `ClusterQueues` sees it: the session, what waits to go out, and the state of
/// both roles (this node using its queues; this node's queues used by it).
final class QueuePeer {
    let name: String
    var generation: UInt64
    var theirGeneration: UInt64 = 0
    var linkUp = false
    var lastHeard: Int64 = 0
    /// A batch came from the peer since the last session ended. Until then `theirGeneration`
    /// may be that of a process that is gone (a restart reconnects the link within a second):
    /// what would be sent echoing it is dropped there, and nacked here once its new
    /// generation arrives.
    var heardInSession = false
    /// The session carries messages now.
    var up = false
    /// The last session ended and no new one is up: requests fail at once instead of waiting.
    var failed = false
    /// Since when this peer is known (a node that never comes up fails what waits for it).
    let since: Int64
    @exclusivity(unchecked) private var out = ByteBuffer()
    @exclusivity(unchecked) private(set) var outCount: UInt32 = 0

    // This node using the peer's queues.
    @exclusivity(unchecked) var credit = ClusterQueues.publishWindow
    var pausedConnections: [ObjectIdentifier: any PausablePublisher] = [:]
    /// Publishes sent to the peer's queues, waiting for its confirm (the queues are kept so that
    /// a replicated queue whose leader moves elsewhere can nack its share at once).
    @exclusivity(unchecked) var confirmWaits: [UInt64: (channel: ChannelSession, seq: UInt64, vhost: String, queues: [String])] = [:]
    /// Publishes a replicated queue passed on to its leader here, by id: told how they ended.
    var forwardWaits: [UInt64: ForwardWait] = [:]
    /// Waits (of either kind) for a replicated queue whose leader moved away from this peer:
    /// nacked if still unanswered at their deadline (`ClusterQueues.abandonForwards`).
    var abandonAt: [UInt64: Int64] = [:]
    var requests: [UInt64: PendingRequest] = [:]
    var consumers: [UInt64: Consumer] = [:]
    /// Deliveries that came while their channel had no room, by consumer.
    var backlog: [UInt64: Deque<(seq: UInt64, redelivered: Bool, message: Message)>] = [:]
    @exclusivity(unchecked) var consumerCreditDue: [UInt64: UInt32] = [:]
    /// Consumers cancelled here whose cancel the peer has not answered yet: deliveries still
    /// on their way to them go back to the queue.
    var cancelling: [UInt64: (queue: MessageQueue, noAck: Bool)] = [:]

    // The peer using this node's queues.
    var proxies: [UInt64: Consumer] = [:]
    @exclusivity(unchecked) var unacked: [HeldKey: HeldDelivery] = [:]
    @exclusivity(unchecked) var publishCreditDue: UInt32 = 0
    /// Credit held back while some queue of ours is over its high-water mark.
    var publishCreditOwed: UInt32 = 0
    var pausingQueues: [ObjectIdentifier: MessageQueue] = [:]
    var durableConfirms = Deque<(position: UInt64, id: UInt64)>()

    struct HeldKey: Hashable {
        let queue: UInt64
        let seq: UInt64
    }

    struct HeldDelivery {
        let entry: QueueEntry
        let queue: MessageQueue
        let consumer: Consumer?
    }

    struct PendingRequest {
        let deadline: Int64
        let queue: MessageQueue
        let answer: (Result<QueueLinkMessage, AMQPError>) -> Void
    }

    init(name: String, generation: UInt64, since: Int64) {
        self.name = name
        self.generation = generation
        self.since = since
    }

    struct ForwardWait {
        var vhost: String
        var queues: [String]
        var completion: (Bool) -> Void
    }

    var isIdle: Bool { confirmWaits.isEmpty && forwardWaits.isEmpty && requests.isEmpty && consumers.isEmpty && proxies.isEmpty && unacked.isEmpty }

    /// generation, echo, applied metadata position, message count.
    static let headerSize = 28

    static func writeHeader(generation: UInt64, echo: UInt64, applied: UInt64, count: UInt32, into b: inout ByteBuffer) {
        b.writeInteger(generation)
        b.writeInteger(echo)
        b.writeInteger(applied)
        b.writeInteger(count)
    }

    func append(_ m: QueueLinkMessage) {
        if outCount == 0 {
            out.clear()
            out.writeRepeatingByte(0, count: Self.headerSize)
        }
        m.write(into: &out)
        outCount += 1
    }

    /// The batch to send: the header filled in, the messages after it.
    func takeBatch(applied: UInt64) -> ByteBuffer {
        var b = out
        b.setInteger(generation, at: b.readerIndex)
        b.setInteger(theirGeneration, at: b.readerIndex + 8)
        b.setInteger(applied, at: b.readerIndex + 16)
        b.setInteger(outCount, at: b.readerIndex + 24)
        out = ByteBuffer()
        outCount = 0
        return b
    }

    func resetOutput() {
        out = ByteBuffer()
        outCount = 0
        consumerCreditDue.removeAll()
        publishCreditDue = 0
    }

    /// Credit earned this turn goes out with the batch.
    func appendDueCredit() {
        guard up else { return }
        if publishCreditDue > 0 {
            append(.publishCredit(publishCreditDue))
            publishCreditDue = 0
        }
        if !consumerCreditDue.isEmpty {
            for (id, n) in consumerCreditDue { append(.consumerCredit(consumer: id, n)) }
            consumerCreditDue.removeAll(keepingCapacity: true)
        }
    }

    func answer(_ request: UInt64, _ m: QueueLinkMessage) {
        requests.removeValue(forKey: request)?.answer(.success(m))
    }

    func expireRequests(now: Int64, in cq: ClusterQueues) {
        guard !requests.isEmpty else { return }
        for (id, r) in requests where r.deadline <= now {
            requests[id] = nil
            r.answer(.failure(cq.homeDown(r.queue)))
        }
    }

    /// Queues of this node with consumers of this peer.
    func queuesWithProxies() -> [MessageQueue] {
        var seen = Set<ObjectIdentifier>()
        var out: [MessageQueue] = []
        for c in proxies.values where seen.insert(ObjectIdentifier(c.queue)).inserted { out.append(c.queue) }
        return out
    }
}
