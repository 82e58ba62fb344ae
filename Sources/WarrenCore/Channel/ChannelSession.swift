import AMQPProtocol
import DequeModule
import Logging
import NIOCore

/// One open AMQP channel: assembles its frames into commands and carries them out against the
/// broker, and holds what the channel owns (consumers, unacked deliveries, confirm and tx state).
///
/// Errors are thrown as `AMQPError`; the connection closes this channel for soft ones and the
/// whole connection for hard ones.
public final class ChannelSession {
    enum State {
        case open
        /// We sent channel.close and wait for close-ok; frames in between are dropped.
        case closing
        case closed
    }

    public let number: UInt16
    public unowned(unsafe) let connection: AMQPConnection
    @exclusivity(unchecked) var state: State = .open
    @exclusivity(unchecked) var assembler: CommandAssembler

    @exclusivity(unchecked) public internal(set) var consumers: [String: Consumer] = [:]
    /// basic.qos global=false: the prefetch given to consumers created from now on.
    var consumerPrefetch = 0
    /// basic.qos global=true: the limit on unacked deliveries across the channel.
    @exclusivity(unchecked) var channelPrefetch = 0
    @exclusivity(unchecked) var unacked = UnackedLedger()
    @exclusivity(unchecked) var nextDeliveryTag: UInt64 = 1
    @exclusivity(unchecked) var confirmMode = false
    @exclusivity(unchecked) var confirms = ConfirmTracker()
    /// Confirms (by sequence number; 0 stands for a tx.commit-ok) waiting for the store to make
    /// a log position durable, in order.
    var durableWaits = Deque<(position: UInt64, confirm: UInt64)>()
    /// Set while this channel waits in the connection's list of confirms to announce.
    @exclusivity(unchecked) var confirmFlushPending = false
    @exclusivity(unchecked) var transaction: Transaction?
    /// The last queue this channel declared, for the empty-name shortcuts.
    var lastDeclaredQueue: String?
    /// Exchanges this user may write to, checked once (see `checkWriteCached`).
    @exclusivity(unchecked) var writeCache: [String] = []
    @exclusivity(unchecked) var writeCacheVersion: UInt64 = .max
    @exclusivity(unchecked) var lastWriteChecked: String?
    /// A metadata change this channel proposed is not committed yet; `held` are the commands
    /// that arrived meanwhile, carried out once it is.
    @exclusivity(unchecked) var awaitingMetadata = false
    var held = Deque<AMQPCommand>()
    /// Publisher confirms that wait for other nodes (and perhaps this node's store): how many
    /// answers are still due, and whether one was a refusal.
    var confirmParts: [UInt64: (remaining: Int, nack: Bool)] = [:]
    /// A tx.commit whose publishes went to other nodes waits for their answers, then for the
    /// store position (if any) before commit-ok.
    var txRemoteParts = 0
    var txCommitDurableAt: UInt64?
    /// Direct reply-to: the consumer tag, the token replies are addressed to, the encoded
    /// deliver prefix.
    var replyConsumerTag: String?
    var replyToken: String?
    var replyPrefix: ByteBuffer?

    init(number: UInt16, connection: AMQPConnection, maxBodySize: UInt64) {
        self.number = number
        self.connection = connection
        self.assembler = CommandAssembler(maxBodySize: maxBodySize)
    }

    var broker: Broker { connection.broker }
    var vhost: VirtualHost { connection.vhost! }

    /// Unacked deliveries on this channel.
    public var unackedCount: Int { unacked.count }
    public var prefetchCount: Int { consumerPrefetch }
    public var globalPrefetchCount: Int { channelPrefetch }
    public var isInConfirmMode: Bool { confirmMode }
    public var isTransactional: Bool { transaction != nil }

    /// Whether deliveries may be written to this channel now.
    var acceptsDeliveries: Bool {
        state == .open && connection.hasRoomForDeliveries()
    }

    var globalPrefetchHasRoom: Bool {
        channelPrefetch == 0 || unacked.count < channelPrefetch
    }

    // MARK: frames

    /// Handles one frame for this channel. Returns false once the channel is finished (close-ok
    /// exchanged) so the connection can free its number.
    func handle(_ frame: consuming AMQPFrame) throws(AMQPError) -> Bool {
        switch state {
        case .closing:
            // Only the close handshake matters now (spec: discard everything else).
            if case .method(_, let m) = frame {
                switch m {
                case .channelCloseOk:
                    state = .closed
                    return false
                case .channelClose:
                    // Both sides closed at once: answer the client's close, and keep the number
                    // until its close-ok for ours arrives (as RabbitMQ does), so that close-ok
                    // is not taken for a frame on an unopened channel.
                    connection.send(number, .channelCloseOk(ChannelCloseOk()))
                    return true
                default:
                    break
                }
            }
            return true
        case .closed:
            return false
        case .open:
            break
        }
        let command: AMQPCommand?
        switch consume frame {
        case .method(_, let m): command = try assembler.method(m)
        case .header(_, let h): command = try assembler.header(h)
        case .body(_, let b): command = try assembler.body(b)
        case .heartbeat, .protocolHeader: command = nil
        }
        guard let command else { return true }
        if awaitingMetadata {
            // A change of this channel waits to be committed: what follows waits behind it, so
            // the channel's commands take effect in order (a publish after its queue.declare).
            held.append(command)
            if held.count == Self.heldBeforePause { connection.holdReading(for: self, true) }
            return true
        }
        return try execute(consume command)
    }

    /// Commands held behind a pending metadata change at which the connection stops reading
    /// (other channels' commands wait in the socket instead of in memory).
    static let heldBeforePause = 4096

    /// Carries out one command. Returns false when the client closed the channel.
    func execute(_ command: consuming AMQPCommand) throws(AMQPError) -> Bool {
        // Publishes first, taking the pieces straight from the command: the hot path.
        if case .basicPublish(let m) = command.method, let header = command.header {
            do throws(AMQPError) {
                try publish(m, header: header, body: command.body)
            } catch {
                throw error.with(classID: 60, methodID: 40)
            }
            return true
        }
        let method = command.method
        do throws(AMQPError) {
            switch method {
            case .basicPublish(let m): try publish(m, header: command.header!, body: command.body)
            case .basicAck(let m): try acknowledge(tag: m.deliveryTag, multiple: m.multiple, outcome: .ack)
            case .basicNack(let m):
                try acknowledge(tag: m.deliveryTag, multiple: m.multiple, outcome: m.requeue ? .requeue : .drop)
            case .basicReject(let m):
                try acknowledge(tag: m.deliveryTag, multiple: false, outcome: m.requeue ? .requeue : .drop)
            case .basicConsume(let m): try consume(m)
            case .basicCancel(let m): cancel(m)
            case .basicGet(let m): try get(m)
            case .basicQos(let m): try qos(m)
            case .basicRecover(let m):
                try recover(requeue: m.requeue)
                connection.send(number, .basicRecoverOk(BasicRecoverOk()))
            case .basicRecoverAsync(let m): try recover(requeue: m.requeue)
            case .queueDeclare(let m): try declareQueue(m)
            case .queueBind(let m): try bindQueue(m)
            case .queueUnbind(let m): try unbindQueue(m)
            case .queuePurge(let m): try purgeQueue(m)
            case .queueDelete(let m): try deleteQueue(m)
            case .exchangeDeclare(let m): try declareExchange(m)
            case .exchangeDelete(let m): try deleteExchange(m)
            case .exchangeBind(let m): try bindExchange(m)
            case .exchangeUnbind(let m): try unbindExchange(m)
            case .confirmSelect(let m): try selectConfirm(m)
            case .txSelect: try selectTransaction()
            case .txCommit: try commitTransaction()
            case .txRollback: try rollbackTransaction()
            case .channelFlow(let m): try flow(active: m.active)
            case .channelFlowOk: break  // we never send channel.flow
            case .channelClose:
                release(requeue: true)
                state = .closed
                connection.send(number, .channelCloseOk(ChannelCloseOk()))
                return false
            case .channelCloseOk: break  // nothing of ours was closing
            case .channelOpen:
                throw AMQPError(.channelError, "second 'channel.open' seen")
            case .accessRequest:
                connection.send(number, .accessRequestOk(AccessRequestOk(ticket: 1)))
            default:
                throw AMQPError.commandInvalid("unimplemented method")
            }
        } catch {
            throw error.with(classID: method.classID, methodID: method.methodID)
        }
        return true
    }

    // MARK: metadata changes

    /// Proposes `command`; `then` answers the client once the outcome is known (at once with a
    /// local log, after the commit in a cluster). Meanwhile the channel holds its later
    /// commands. A refusal closes the channel (or the connection) as any error would; a change
    /// that could not be committed is `541 INTERNAL_ERROR` with the reason.
    func propose(
        _ command: MetadataCommand, for method: (classID: UInt16, methodID: UInt16),
        then reply: @escaping (MetadataReply) throws(AMQPError) -> Void
    ) {
        awaitingMetadata = true
        broker.metadataLog.propose(command) { [self] outcome in
            awaitingMetadata = false
            guard state == .open else { return }
            do throws(AMQPError) {
                switch outcome {
                case .done(let r): try reply(r)
                case .refused(let e): throw e.amqpError
                case .notCommitted(let why): throw AMQPError(.internalError, why)
                }
            } catch {
                connection.channelFailed(self, error.classID == 0 ? error.with(classID: method.classID, methodID: method.methodID) : error)
                return
            }
            connection.resumeHeld(self)
        }
    }

    /// Waits for a queue's answer (`QueueContents`): at once for a queue of this node; for one
    /// elsewhere the channel holds its later commands until the answer comes, as it does for a
    /// metadata change, so they keep their order.
    func awaitAnswer<T>(
        _ method: (classID: UInt16, methodID: UInt16), _ ask: (@escaping (Result<T, AMQPError>) -> Void) -> Void,
        then: @escaping (T) throws(AMQPError) -> Void
    ) throws(AMQPError) {
        var answeredAtOnce = false
        var failure: AMQPError?
        var waiting = false
        ask { [self] result in
            guard waiting else {
                // Answered before `ask` returned: carried out now, inside it (a local queue
                // adds a consumer after this, so consume-ok precedes its first delivery).
                answeredAtOnce = true
                do throws(AMQPError) { try then(result.get()) } catch { failure = error }
                return
            }
            awaitingMetadata = false
            guard state == .open else { return }
            do throws(AMQPError) {
                try then(result.get())
            } catch {
                connection.channelFailed(self, error.classID == 0 ? error.with(classID: method.classID, methodID: method.methodID) : error)
                return
            }
            connection.resumeHeld(self)
        }
        if answeredAtOnce {
            if let failure { throw failure }
            return
        }
        waiting = true
        awaitingMetadata = true
    }

    // MARK: closing

    /// Closes the channel from the server side with a soft error.
    func close(with error: AMQPError) {
        guard state == .open else { return }
        release(requeue: true)
        state = .closing
        assembler.reset()
        connection.send(
            number,
            .channelClose(
                ChannelClose(replyCode: error.code.rawValue, replyText: error.text, classID: error.classID, methodID: error.methodID)))
    }

    /// Lets go of everything the channel holds: consumers are cancelled (auto-delete queues may
    /// go) and unacked deliveries return to their queues, in order, marked redelivered.
    func release(requeue: Bool) {
        stopReplies()
        held.removeAll()
        if !durableWaits.isEmpty {
            durableWaits.removeAll()
            broker.stopWaiting(self)
        }
        let cancelled = Array(consumers.values)
        consumers.removeAll()
        transaction = nil
        confirmParts.removeAll()
        let outstanding = unacked.takeAll()
        for c in cancelled where c.queue.contents.removeConsumer(c) {
            broker.proposeDeletion(of: c.queue, why: "auto-delete: its last consumer went")
        }
        settle(outstanding, .requeue)
    }

    // MARK: flow

    /// channel.flow from a client: RabbitMQ answers `active=false` with 540 NOT_IMPLEMENTED
    /// (a connection error) and `active=true` with flow-ok. Clients rely on that answer (the Go
    /// clients' suites test it), so Warren gives the same; consumers that want to pause use
    /// basic.qos or cancel.
    func flow(active: Bool) throws(AMQPError) {
        guard active else { throw .notImplemented("active=false") }
        connection.send(number, .channelFlowOk(ChannelFlowOk(active: true)))
    }

    /// Gives every queue this channel consumes from a chance to deliver.
    func dispatchConsumerQueues() {
        for c in consumers.values { c.queue.contents.dispatch(for: c) }
    }

    // MARK: helpers

    /// The queue name a method names, expanding "" to the last queue this channel declared.
    func resolveQueueName(_ name: String) throws(AMQPError) -> String {
        if !name.isEmpty { return name }
        guard let last = lastDeclaredQueue else { throw .notFound("no previously declared queue") }
        return last
    }
}
