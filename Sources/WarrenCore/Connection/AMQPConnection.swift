public import AMQPProtocol
public import Logging
public import NIOCore
import DequeModule

/// What a connection needs from the socket it runs on. The server shell implements it with a
/// NIO channel; tests implement it with a recorder.
public protocol ConnectionTransport: AnyObject {
    /// Output was produced outside a read (a delivery caused by another connection's publish):
    /// take it with `takeOutbound()` and write it soon.
    func outputPending()
    /// Write what is pending, then close the socket.
    func disconnect()
    /// Call `heartbeatTick()` every `intervalMilliseconds` from now on.
    func startHeartbeatTimer(intervalMilliseconds: Int)
    /// We sent connection.close: call `closeTimedOut()` if close-ok does not come in time.
    func startCloseTimer()
    /// Stop (false) or resume (true) reading from the socket: flow control.
    func setReading(_ enabled: Bool)
}

/// Who is on the other end, as the socket reports it.
public struct PeerInfo: Sendable, Hashable {
    public var address: String
    public var isLoopback: Bool
    /// Over TLS, the user name the client's verified certificate stands for (SASL EXTERNAL
    /// logs in as it); nil otherwise.
    public var certificateLogin: String?
    /// The server side of the socket ("127.0.0.1:5672"), and whether it is an AMQPS listener
    /// (the management API shows both).
    public var localAddress: String
    public var isTLS: Bool
    public init(address: String, isLoopback: Bool, certificateLogin: String? = nil, localAddress: String = "", isTLS: Bool = false) {
        self.address = address
        self.isLoopback = isLoopback
        self.certificateLogin = certificateLogin
        self.localAddress = localAddress
        self.isTLS = isTLS
    }
}

/// One client connection: bytes in, frames out, with the whole AMQP session in between.
///
/// Pure of IO: the shell feeds received bytes to `receive(_:)`, calls `receiveComplete()` at
/// the end of each read batch, and writes what `takeOutbound()` returns. Everything runs on the
/// broker's event loop.
public final class AMQPConnection {
    public let broker: Broker
    public private(set) var peer: PeerInfo
    public private(set) var id: ConnectionID = 0
    public weak var transport: (any ConnectionTransport)?
    public private(set) var logger: Logger

    @exclusivity(unchecked) var machine: ConnectionStateMachine
    @exclusivity(unchecked) private var reader: AMQPFrameReader
    @exclusivity(unchecked) private var outbound = ByteBuffer()
    @exclusivity(unchecked) var channels: [UInt16: ChannelSession] = [:]

    public private(set) var user: User?
    public private(set) var vhost: VirtualHost?
    @exclusivity(unchecked) public private(set) var limits: ConnectionStateMachine.Limits
    public private(set) var clientProperties: FieldTable = [:]
    /// The SASL mechanism the client logged in with; when it connected (broker clock, ms).
    public private(set) var authMechanism: String?
    public private(set) var connectedAt: Int64 = 0
    var clientSupportsCancelNotify = false
    var clientSupportsBlocked = false
    /// Set on the first publish: only publishing connections are blocked by alarms.
    @exclusivity(unchecked) var hasPublished = false
    /// A resource alarm is in force and this connection has been told (or will be when it
    /// publishes).
    private var alarmBlocked = false
    private var sentBlocked = false
    private var readingEnabled = true
    var exclusiveQueues: [MessageQueue] = []
    public private(set) var isWritable = true

    @exclusivity(unchecked) private var inReceive = false
    @exclusivity(unchecked) private var outputNotified = false
    @exclusivity(unchecked) private var confirmChannels: [ChannelSession] = []
    @exclusivity(unchecked) private var ticksSinceReceive = 0
    @exclusivity(unchecked) private var ticksSinceSend = 0
    private var released = false
    private var resourcesReleased = false
    @exclusivity(unchecked) private var routeScratch: [MessageQueue] = []
    /// Queues that paused this connection's reading (flow control); read again when none is left.
    private var pausedBy: [ObjectIdentifier: any FlowSource] = [:]

    /// Output a connection may hold before its consumers stop getting deliveries until the
    /// socket has taken it. Without a bound, one dispatch to a consumer without prefetch
    /// (auto-ack) encodes a whole backlog into memory before the first byte reaches the socket
    /// (issue 13: a 2 GB paged queue took the node to 2 GB). With it, a connection holds at
    /// most this plus one message plus NIO's write buffer (64 KiB high-water mark).
    public static let outboundDeliveryLimit = 1 << 20
    /// Consumers were refused deliveries because the output was full: dispatch again once
    /// the shell has taken it.
    @exclusivity(unchecked) private var deliveriesHeldBack = false

    /// Frames allowed before tune-ok fixes frame_max (RabbitMQ refuses larger ones too).
    public static let preTuneFrameMax: UInt32 = 8192
    /// Heartbeat ticks (each half the negotiated interval) without input before giving up on the
    /// peer: five ticks is more than two missed heartbeats.
    static let silentTicksBeforeDisconnect = 5

    public init(broker: Broker, peer: PeerInfo, logger: Logger? = nil) {
        self.broker = broker
        self.peer = peer
        var logger = logger ?? broker.logger
        logger[metadataKey: "peer"] = "\(peer.address)"
        self.logger = logger
        let config = broker.configuration
        let serverLimits = ConnectionStateMachine.Limits(
            channelMax: config.channelMax, frameMax: config.frameMax, heartbeat: config.heartbeat)
        self.limits = serverLimits
        self.machine = ConnectionStateMachine(serverLimits: serverLimits, serverProperties: Self.serverProperties(config, clusterName: broker.clusterName))
        self.reader = AMQPFrameReader(decoder: AMQPFrameDecoder(maxFrameSize: Self.preTuneFrameMax, expectsProtocolHeader: true))
    }

    /// Joins the broker; call once, before the first `receive`.
    public func start(transport: any ConnectionTransport) {
        self.transport = transport
        self.id = broker.register(self)
        connectedAt = broker.clock.nowMilliseconds()
        // An alarm already in force blocks this connection too once it publishes.
        alarmBlocked = !broker.activeAlarms.isEmpty
        logger[metadataKey: "connection"] = "\(id)"
        logger.info("accepting AMQP connection")
    }

    public var state: ConnectionStateMachine.State { machine.state }
    public var channelCount: Int { channels.count }
    public var channelNumbers: [UInt16] { channels.keys.sorted() }
    public func channel(_ number: UInt16) -> ChannelSession? { channels[number] }

    /// The server properties of connection.start, advertising only what Warren implements.
    static func serverProperties(_ config: BrokerConfiguration, clusterName: String) -> FieldTable {
        let capabilities: FieldTable = [
            "publisher_confirms": true,
            "exchange_exchange_bindings": true,
            "basic.nack": true,
            "consumer_cancel_notify": true,
            "authentication_failure_close": true,
            "per_consumer_qos": true,
            "connection.blocked": true,
            "consumer_priorities": true,
            "direct_reply_to": true,
        ]
        return [
            "capabilities": .table(capabilities),
            "cluster_name": .string(clusterName),
            "copyright": "Copyright (c) the Warren authors",
            "information": "Warren, an AMQP 0-9-1 broker compatible with RabbitMQ clients",
            "platform": "Swift",
            "product": "Warren",
            "version": .string(config.productVersion),
        ]
    }

    // MARK: input

    /// Feeds bytes read from the socket.
    public func receive(_ bytes: ByteBuffer) {
        guard machine.state != .closed else { return }
        inReceive = true
        defer { inReceive = false }
        ticksSinceReceive = 0
        reader.append(bytes)
        do throws(AMQPError) {
            while let frame = try reader.next() {
                handle(frame)
                if machine.state == .closed { break }
            }
        } catch {
            reader.discard()
            hardError(error)
        }
        if machine.state == .closed { reader.discard() }
    }

    /// The end of a read batch: announce publisher confirms gathered during it.
    public func receiveComplete() {
        guard !confirmChannels.isEmpty else { return }
        let channels = confirmChannels
        confirmChannels.removeAll(keepingCapacity: true)
        for ch in channels where ch.state == .open {
            ch.confirmFlushPending = false
            ch.flushConfirms()
        }
    }

    private func handle(_ frame: consuming AMQPFrame) {
        switch frame {
        case .protocolHeader(let header):
            run(machine.protocolHeaderReceived(header))
        case .heartbeat:
            break
        case .method(0, let method):
            if case .connectionStartOk(let m) = method { noteClientProperties(m.clientProperties) }
            run(machine.methodReceived(method))
        case .header(0, _), .body(0, _):
            hardError(.unexpectedFrame("content frame on channel 0"))
        default:
            channelFrame(frame)
        }
    }

    private func channelFrame(_ frame: consuming AMQPFrame) {
        guard machine.isOpen else {
            if machine.state == .closing || machine.state == .closed { return }
            hardError(.commandInvalid("channel frame received before the connection was opened"))
            return
        }
        let number = frame.channel
        let (classID, methodID): (UInt16, UInt16) = {
            if case .method(_, let m) = frame { return (m.classID, m.methodID) }
            return (0, 0)
        }()
        if let session = channels[number] {
            do throws(AMQPError) {
                if try !session.handle(frame) { channels[number] = nil }
            } catch {
                channelFailed(session, error)
            }
            return
        }
        guard case .method(_, .channelOpen) = frame else {
            hardError(AMQPError(.channelError, "expected 'channel.open'", classID: classID, methodID: methodID))
            return
        }
        // channel_max limits how many channels are open, not their numbers: RabbitMQ lets a
        // client open channel 65535 on a fresh connection, and refuses the one over the count.
        if limits.channelMax != 0 && channels.count >= Int(limits.channelMax) {
            hardError(
                AMQPError(
                    .notAllowed,
                    "number of channels opened (\(channels.count)) has reached the negotiated channel_max (\(limits.channelMax))"))
            return
        }
        if let user, let max = user.limits.maxChannels, max >= 0 {
            let open = broker.connections.values.filter { $0.user?.name == user.name }.reduce(0) { $0 + $1.channels.count }
            if open >= max {
                hardError(
                    AMQPError(
                        .notAllowed, "number of channels opened for user '\(user.name)' has reached the maximum allowed user limit of (\(max))",
                        classID: 20, methodID: 10))
                return
            }
        }
        channels[number] = ChannelSession(number: number, connection: self, maxBodySize: broker.configuration.maxMessageSize)
        send(number, .channelOpenOk(ChannelOpenOk()))
    }

    /// An error while carrying out a channel's command: soft ones close the channel, hard ones
    /// the connection.
    func channelFailed(_ session: ChannelSession, _ error: AMQPError) {
        if error.isHard {
            hardError(error)
        } else {
            logger.warning(
                "channel error",
                metadata: ["channel": "\(session.number)", "operation": "\(AMQPMethod.name(classID: error.classID, methodID: error.methodID))", "reason": "\(error.text)"])
            session.close(with: error)
        }
    }

    /// A channel's metadata change was settled: carry out what it held meanwhile, until the
    /// next change it waits for.
    func resumeHeld(_ session: ChannelSession) {
        let wasPausing = session.held.count >= ChannelSession.heldBeforePause
        while !session.awaitingMetadata, session.state == .open, let next = session.held.popFirst() {
            do throws(AMQPError) {
                if try !session.execute(next) {
                    if channels[session.number] === session { channels[session.number] = nil }
                    break
                }
            } catch {
                channelFailed(session, error)
                break
            }
        }
        if wasPausing && session.held.count < ChannelSession.heldBeforePause { holdReading(for: session, false) }
        if !inReceive { receiveComplete() }
    }

    /// Channels whose held commands stop the connection's reading.
    private var holdingChannels: Set<UInt16> = []

    func holdReading(for session: ChannelSession, _ hold: Bool) {
        if hold { holdingChannels.insert(session.number) } else { holdingChannels.remove(session.number) }
        updateReading()
    }

    // MARK: actions

    private func run(_ action: ConnectionStateMachine.Action) {
        switch action {
        case .none:
            break
        case .rejectProtocolHeader:
            logger.warning("unsupported protocol header; answering with AMQP 0-9-1 and closing")
            prepareOutbound()
            outbound.writeAMQPProtocolHeader()
            didWrite()
            release()
            transport?.disconnect()
        case .send(let method):
            send(0, method)
        case .authenticate(let mechanism, let response):
            authenticate(mechanism: mechanism, response: response)
        case .applyLimits(let limits):
            self.limits = limits
            reader.decoder.maxFrameSize = limits.frameMax
            if limits.heartbeat > 0 {
                // Ticks at half the interval: heartbeats go out in time, and silence is noticed.
                transport?.startHeartbeatTimer(intervalMilliseconds: Int(limits.heartbeat) * 500)
            }
        case .openVirtualHost(let name):
            do throws(AMQPError) {
                vhost = try admit(to: name)
                logger.info("connection opened", metadata: ["user": "\(user?.name ?? "")", "vhost": "\(name)"])
                run(machine.virtualHostOpened())
            } catch {
                logger.error("connection refused", metadata: ["vhost": "\(name)", "reason": "\(error.text)"])
                run(machine.virtualHostRefused(error))
            }
        case .updateSecret(_, let reason):
            // RabbitMQ asks each auth backend whose state can expire (OAuth tokens) to check the
            // new secret; its internal user database cannot expire and accepts any secret for a
            // user that still exists. Warren's users are that database, so the same rule: the
            // user must still exist (a deleted user's connections are closed anyway).
            if let name = user?.name, let current = broker.users[name] {
                user = current
                logger.info("connection.update-secret accepted", metadata: ["user": "\(name)", "reason": "\(reason)"])
                run(machine.secretUpdated())
            } else {
                logger.error("connection.update-secret refused: user '\(user?.name ?? "")' no longer exists")
                run(machine.secretRefused())
            }
        case .close(let error):
            logger.error("closing AMQP connection", metadata: ["code": "\(error.code.rawValue)", "reason": "\(error.text)"])
            release()
            send(
                0,
                .connectionClose(
                    ConnectionClose(
                        replyCode: error.code.rawValue, replyText: error.text, classID: error.classID, methodID: error.methodID)))
            transport?.startCloseTimer()
        case .sendCloseOkAndDisconnect:
            logger.info("client closed the connection")
            // close-ok once its exclusive queues are gone from the definitions (committed): a
            // client that declares one passively right after gets 404, as from RabbitMQ.
            release { [weak self] in
                self?.send(0, .connectionCloseOk(ConnectionCloseOk()))
                self?.transport?.disconnect()
            }
        case .disconnect:
            release()
            transport?.disconnect()
        }
    }

    /// Over TLS the shell learns, after the handshake, who the client certificate names; a
    /// verified certificate offers EXTERNAL first, as RabbitMQ's rabbitmq_auth_mechanism_ssl.
    public func setCertificateLogin(_ login: String?) {
        peer.certificateLogin = login
        if login != nil { machine.mechanisms = "EXTERNAL PLAIN AMQPLAIN" }
    }

    private func authenticate(mechanism: String, response: [UInt8]) {
        let refused = AMQPError.accessRefused(
            "Login was refused using authentication mechanism \(mechanism). For details see the broker logfile.")
        if mechanism == SASL.internalMechanism {
            guard peer.isLoopback, broker.acceptsInternalLogin(response) else {
                logger.error("\(mechanism) login refused: not this node's own client")
                run(machine.authenticationFailed(refused))
                return
            }
            admitAuthenticated(User(name: Broker.internalUserName, passwordHash: nil, tags: ["administrator", "impersonator"]), mechanism: mechanism, refused: refused)
            return
        }
        if mechanism == "EXTERNAL" {
            guard let login = peer.certificateLogin, let user = broker.users[login] else {
                logger.error("EXTERNAL login refused: user '\(peer.certificateLogin ?? "")' - no such user (from the client certificate)")
                run(machine.authenticationFailed(refused))
                return
            }
            admitAuthenticated(user, mechanism: mechanism, refused: refused)
            return
        }
        guard let credentials = SASL.parse(mechanism: mechanism, response: response) else {
            logger.error("\(mechanism) login refused: malformed response")
            run(machine.authenticationFailed(refused))
            return
        }
        guard let user = broker.users[credentials.username], user.authenticate(password: credentials.password) else {
            logger.error("\(mechanism) login refused: user '\(credentials.username)' - invalid credentials")
            run(machine.authenticationFailed(refused))
            return
        }
        admitAuthenticated(user, mechanism: mechanism, refused: refused)
    }

    private func admitAuthenticated(_ user: User, mechanism: String, refused: AMQPError) {
        if broker.configuration.loopbackUsers.contains(user.name) && !peer.isLoopback {
            logger.error("\(mechanism) login refused: user '\(user.name)' can only connect via localhost")
            run(machine.authenticationFailed(refused))
            return
        }
        self.user = user
        authMechanism = mechanism
        run(machine.authenticated())
    }

    /// connection.open: the vhost must exist, the user must have permissions in it, and the
    /// vhost's and user's connection limits must allow one more. RabbitMQ's texts, 530.
    private func admit(to name: String) throws(AMQPError) -> VirtualHost {
        guard let v = broker.vhosts[name] else { throw .notAllowed("vhost \(name) not found") }
        let userName = user?.name ?? ""
        guard broker.canAccess(vhost: name, user: userName) else {
            throw .notAllowed("access to vhost '\(name)' refused for user '\(userName)'")
        }
        if let max = v.limits.maxConnections, max >= 0 {
            let open = broker.connections.values.filter { $0 !== self && $0.vhost === v }.count
            if open >= max {
                throw .notAllowed("access to vhost '\(name)' refused for user '\(userName)': connection limit (\(max)) is reached")
            }
        }
        if let max = user?.limits.maxConnections, max >= 0 {
            let open = broker.connections.values.filter { $0 !== self && $0.vhost != nil && $0.user?.name == userName }.count
            if open >= max {
                throw .notAllowed("connection refused for user '\(userName)': user connection limit (\(max)) is reached")
            }
        }
        return v
    }

    /// The client's start-ok properties arrive with the first method; capture what we use.
    func noteClientProperties(_ properties: FieldTable) {
        clientProperties = properties
        let caps = properties["capabilities"]?.tableValue
        clientSupportsCancelNotify = caps?["consumer_cancel_notify"]?.boolValue ?? false
        clientSupportsBlocked = caps?["connection.blocked"]?.boolValue ?? false
    }

    /// A connection-level error: tell the peer with connection.close and drop all channels.
    func hardError(_ error: AMQPError) {
        run(machine.closeRequested(error))
        if machine.state == .closed {
            release()
            transport?.disconnect()
        } else {
            // Nothing but close-ok counts from now on: let go of channels (requeueing their
            // unacked messages for other consumers) and exclusive queues at once, as RabbitMQ
            // does, not when the client gets round to answering.
            releaseResources()
        }
    }

    /// Lets go of everything the connection holds, once: its resources and its registration
    /// with the broker (which keeps counting it against limits until then).
    private func release(then done: (() -> Void)? = nil) {
        releaseResources(then: done)
        guard !released else { return }
        released = true
        if id != 0 { broker.unregister(id) }
    }

    /// Channels (requeueing their unacked messages), paused publishers and exclusive queues.
    private func releaseResources(then done: (() -> Void)? = nil) {
        guard !resourcesReleased else {
            done?()
            return
        }
        resourcesReleased = true
        let open = channels.values
        channels.removeAll()
        for ch in open {
            ch.release(requeue: true)
            ch.state = .closed
        }
        for q in pausedBy.values { q.forgetPausedPublisher(self) }
        pausedBy.removeAll()
        // Its exclusive queues go with it, in every node's definitions.
        let ownedExclusive = !exclusiveQueues.isEmpty
        exclusiveQueues.removeAll()
        confirmChannels.removeAll()
        if ownedExclusive {
            broker.metadataLog.propose(.connectionClosed(QueueOwner(node: broker.nodeName, connection: id))) { _ in done?() }
        } else {
            done?()
        }
    }

    // MARK: events from the shell

    /// The socket closed (by either side).
    public func transportClosed() {
        if machine.state != .closed && machine.state != .closing && machine.isOpen {
            logger.warning("client unexpectedly closed TCP connection")
        }
        machine.transportClosed()
        release()
    }

    /// Called every half heartbeat interval once heartbeats are on.
    public func heartbeatTick() {
        guard machine.isOpen, limits.heartbeat > 0 else { return }
        ticksSinceReceive += 1
        if ticksSinceReceive >= Self.silentTicksBeforeDisconnect {
            logger.error("missed heartbeats from client, timeout: \(limits.heartbeat)s")
            machine.transportClosed()
            release()
            transport?.disconnect()
            return
        }
        if ticksSinceSend >= 1 {
            prepareOutbound()
            outbound.writeAMQPHeartbeatFrame()
            didWrite()
        }
        ticksSinceSend += 1
    }

    /// The handshake did not finish in time.
    public func handshakeTimedOut() {
        guard !machine.isOpen, machine.state != .closed else { return }
        logger.error("closing AMQP connection: handshake timeout", metadata: ["state": "\(machine.state)"])
        machine.transportClosed()
        release()
        transport?.disconnect()
    }

    /// The peer never answered our connection.close.
    public func closeTimedOut() {
        guard machine.state == .closing else { return }
        logger.warning("no connection.close-ok from client; closing socket")
        machine.transportClosed()
        transport?.disconnect()
    }

    /// Closes the connection from the server side (shutdown, operator request).
    public func close(reason: String) {
        hardError(.connectionForced("broker forced connection closure with reason '\(reason)'"))
    }

    /// Whether deliveries may be written now: the socket takes more and the output waiting for
    /// it is under `outboundDeliveryLimit`.
    @inline(__always)
    func hasRoomForDeliveries() -> Bool {
        guard isWritable else { return false }
        if outbound.readableBytes < Self.outboundDeliveryLimit { return true }
        deliveriesHeldBack = true
        return false
    }

    /// The socket's writability changed: deliveries pause while it cannot take more.
    public func setWritable(_ writable: Bool) {
        guard writable != isWritable else { return }
        isWritable = writable
        if writable {
            for ch in channels.values { ch.dispatchConsumerQueues() }
        }
    }

    /// True while some queue holds this connection's reading back.
    public var isFlowPaused: Bool { !pausedBy.isEmpty }
    /// True while a resource alarm blocks this (publishing) connection.
    public var isBlocked: Bool { alarmBlocked && hasPublished }

    /// Flow control: a queue (or another node's publish credit) stops this connection's reads.
    func pauseReading(for source: any FlowSource) {
        guard pausedBy.updateValue(source, forKey: ObjectIdentifier(source)) == nil else { return }
        logger.debug("flow control: pausing reads", metadata: ["by": "\(source.flowDescription)"])
        updateReading()
    }

    func resumeReading(for source: any FlowSource) {
        guard pausedBy.removeValue(forKey: ObjectIdentifier(source)) != nil else { return }
        updateReading()
    }

    /// Reads from the socket unless flow control or an alarm (for a publisher) says not to.
    private func updateReading() {
        let want = !released && pausedBy.isEmpty && holdingChannels.isEmpty && !(alarmBlocked && hasPublished)
        guard want != readingEnabled else { return }
        readingEnabled = want
        transport?.setReading(want)
    }

    /// A resource alarm was raised or cleared. Publishing connections are told with
    /// connection.blocked (when their client understands it) and no longer read; connections
    /// that have not published go on (consumers must be able to ack) until they publish.
    func alarmsChanged(blocked: Bool, reason: String) {
        alarmBlocked = blocked
        if blocked {
            if hasPublished { sendBlockedIfNeeded(reason) }
        } else if sentBlocked {
            sentBlocked = false
            send(0, .connectionUnblocked(ConnectionUnblocked()))
        }
        updateReading()
    }

    /// Called on each publish: the first one marks the connection as a publisher, which an
    /// alarm in force then blocks.
    func notePublish() {
        guard !hasPublished else { return }
        hasPublished = true
        if alarmBlocked {
            sendBlockedIfNeeded(broker.alarmDescription)
            updateReading()
        }
    }

    private func sendBlockedIfNeeded(_ reason: String) {
        guard clientSupportsBlocked, !sentBlocked, machine.isOpen else { return }
        sentBlocked = true
        send(0, .connectionBlocked(ConnectionBlocked(reason: "low on resources: \(reason)")))
    }

    // MARK: output

    /// Hands over everything written since the last call. Consumers held back because the
    /// output was full get their turn again at once: what they produce is the next batch
    /// (announced with `outputPending`), so a fast consumer is fed one bounded batch per
    /// hand-over, and the socket's writability stops it when the peer cannot keep up.
    public func takeOutbound() -> ByteBuffer? {
        outputNotified = false
        guard outbound.readableBytes > 0 else { return nil }
        let out = outbound
        outbound.moveReaderIndex(forwardBy: outbound.readableBytes)
        if deliveriesHeldBack && isWritable {
            deliveriesHeldBack = false
            for ch in channels.values { ch.dispatchConsumerQueues() }
        }
        return out
    }

    /// Whether consumers on this connection cannot take deliveries now (flow control asks).
    var deliveriesBlocked: Bool { !isWritable || outbound.readableBytes >= Self.outboundDeliveryLimit }

    /// Before writing: reuse the buffer if the last batch has been written out, or start a new
    /// one if it is still in flight (clear() allocates only then). Oversized buffers are dropped
    /// so idle connections stay small.
    @inline(__always)
    private func prepareOutbound() {
        if outbound.readableBytes == 0 && outbound.writerIndex > 0 {
            if outbound.capacity > 256 * 1024 {
                outbound = ByteBuffer()
            } else {
                outbound.clear()
            }
        }
    }

    private func didWrite() {
        ticksSinceSend = 0
        if !inReceive && !outputNotified {
            outputNotified = true
            transport?.outputPending()
        }
    }

    func send(_ channel: UInt16, _ method: AMQPMethod) {
        prepareOutbound()
        outbound.writeAMQPMethodFrame(channel: channel, method)
        didWrite()
    }

    func sendContent(_ channel: UInt16, _ method: AMQPMethod, _ message: Message) {
        prepareOutbound()
        outbound.writeAMQPMethodFrame(channel: channel, method)
        writeContent(channel, message)
        didWrite()
    }

    func sendDeliver(_ channel: UInt16, prefix: ByteBuffer, deliveryTag: UInt64, redelivered: Bool, message: Message) {
        prepareOutbound()
        outbound.writeAMQPDelivery(
            channel: channel, prefix: prefix, deliveryTag: deliveryTag, redelivered: redelivered,
            exchange: message.exchange, routingKey: message.routingKey, encodedProperties: message.encodedPropertiesForDelivery,
            body: message.body, maxFrameSize: limits.frameMax)
        didWrite()
    }

    private func writeContent(_ channel: UInt16, _ message: Message) {
        let size = UInt64(message.body.readableBytes)
        if let raw = message.encodedProperties {
            outbound.writeAMQPHeaderFrame(channel: channel, bodySize: size, encodedProperties: raw)
        } else {
            outbound.writeAMQPHeaderFrame(channel: channel, ContentHeader(bodySize: size, properties: message.properties))
        }
        outbound.writeAMQPBodyFrames(channel: channel, message.body, maxFrameSize: limits.frameMax)
    }

    /// A channel has confirms to announce at the end of this read batch.
    func confirmsPending(on channel: ChannelSession) {
        if !inReceive {
            channel.flushConfirms()
            return
        }
        if !channel.confirmFlushPending {
            channel.confirmFlushPending = true
            confirmChannels.append(channel)
        }
    }

    func takeRouteScratch() -> [MessageQueue] {
        let s = routeScratch
        routeScratch = []
        return s
    }

    /// Takes the array back, emptied. The caller hands it over with `consume`, so its storage is
    /// unique here and emptying it keeps the capacity without a new allocation.
    func returnRouteScratch(_ s: consuming [MessageQueue]) {
        s.removeAll(keepingCapacity: true)
        routeScratch = s
    }
}
