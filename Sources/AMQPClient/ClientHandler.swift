import AMQPProtocol
import DequeModule
import NIOCore

/// A side effect carried out on the event loop when a synchronous reply arrives, before the
/// frames that follow it are handled (so no delivery can slip past a new consumer).
enum ReplyEffect: Sendable {
    case none
    case registerConsumer(ConsumerSink)
    case enableConfirms
}

/// Where a consumer's deliveries go: an async stream, or a callback run on the event loop.
enum ConsumerSink: Sendable {
    case stream(AsyncStream<AMQPDelivery>.Continuation)
    case callback(@Sendable (AMQPDelivery) -> Void)

    func yield(_ d: AMQPDelivery) {
        switch self {
        case .stream(let c): c.yield(d)
        case .callback(let f): f(d)
        }
    }

    func finish() {
        if case .stream(let c) = self { c.finish() }
    }
}

/// Client-side state of one channel. Lives on the connection's event loop.
final class ClientChannelState {
    struct RPC {
        let promise: EventLoopPromise<AMQPCommand>
        let effect: ReplyEffect
    }

    let number: UInt16
    var rpcs = Deque<RPC>()
    /// Called with the tag of a consumer the broker cancelled (basic.cancel from the server).
    var cancelListener: (@Sendable (String) -> Void)?
    var assembler = CommandAssembler(maxBodySize: .max)
    var consumers: [String: ConsumerSink] = [:]
    let returns: AsyncStream<AMQPReturnedMessage>.Continuation
    var closedError: AMQPClientError?
    var closeOkPromise: EventLoopPromise<Void>?

    // Publisher confirms.
    var confirmsEnabled = false
    var nextPublishSeq: UInt64 = 1
    var unconfirmed = Deque<UInt64>()
    var nacked: [UInt64] = []
    var confirmWaiters: [(upTo: UInt64, promise: EventLoopPromise<Void>)] = []
    /// Told of every ack/nack (tag, multiple, ack), on the event loop.
    var confirmListener: (@Sendable (UInt64, Bool, Bool) -> Void)?

    init(number: UInt16, returns: AsyncStream<AMQPReturnedMessage>.Continuation) {
        self.number = number
        self.returns = returns
    }

    func fail(_ error: AMQPClientError) {
        if closedError == nil { closedError = error }
        while let rpc = rpcs.popFirst() { rpc.promise.fail(error) }
        for c in consumers.values { c.finish() }
        consumers.removeAll()
        returns.finish()
        for w in confirmWaiters { w.promise.fail(error) }
        confirmWaiters.removeAll()
        closeOkPromise?.succeed(())
        closeOkPromise = nil
    }

    /// Resolves confirm waiters whose publishes are all settled.
    func settleConfirms(tag: UInt64, multiple: Bool, ack: Bool) {
        defer { confirmListener?(tag, multiple, ack) }
        var settled: [UInt64] = []
        if multiple {
            while let first = unconfirmed.first, first <= tag { settled.append(unconfirmed.removeFirst()) }
        } else if let i = unconfirmed.firstIndex(of: tag) {
            settled.append(unconfirmed.remove(at: i))
        }
        if !ack { nacked.append(contentsOf: settled) }
        let lowest = unconfirmed.first ?? nextPublishSeq
        var remaining: [(upTo: UInt64, promise: EventLoopPromise<Void>)] = []
        for w in confirmWaiters {
            if w.upTo < lowest {
                let bad = nacked.filter { $0 <= w.upTo }
                if bad.isEmpty { w.promise.succeed(()) } else { w.promise.fail(AMQPClientError.nacked(bad)) }
            } else {
                remaining.append(w)
            }
        }
        confirmWaiters = remaining
    }
}

/// The NIO handler of a client connection: handshake, frame routing, writes.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase { case handshaking, open, closing, closed }

    let configuration: AMQPClientConfiguration
    private(set) var phase = Phase.handshaking
    private var context: ChannelHandlerContext?
    private var reader: AMQPFrameReader
    private var out = ByteBuffer()
    private var flushScheduled = false
    var connectPromise: EventLoopPromise<FieldTable>?
    private var closeOkPromise: EventLoopPromise<Void>?
    private(set) var closeError: AMQPClientError?
    private(set) var frameMax: UInt32
    private(set) var channelMax: UInt16 = 2047
    private(set) var heartbeat: UInt16 = 0
    private var heartbeatTask: Scheduled<Void>?
    private var sentSinceTick = false
    /// Heartbeat ticks (half the interval each) since the server last sent anything: at 4 (two
    /// whole intervals, as RabbitMQ's clients count) the connection is taken as dead.
    private var silentTicks = 0
    var channels: [UInt16: ClientChannelState] = [:]
    /// Why each closed channel closed, so calls made after the close report the broker's reason.
    private var closedChannels: [UInt16: AMQPClientError] = [:]
    private var nextChannel: UInt16 = 1
    private var serverProperties: FieldTable = [:]

    init(configuration: AMQPClientConfiguration, connectPromise: EventLoopPromise<FieldTable>) {
        self.configuration = configuration
        self.connectPromise = connectPromise
        self.frameMax = configuration.frameMax
        self.reader = AMQPFrameReader(decoder: AMQPFrameDecoder(maxFrameSize: configuration.frameMax))
    }

    // MARK: pipeline events

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelActive(context: ChannelHandlerContext) {
        out.writeAMQPProtocolHeader()
        flushNow()
        // A server that accepts the socket but never answers must not hold the caller forever.
        if let limit = configuration.handshakeTimeoutSeconds {
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(limit * 1000))) {
                if self.phase == .handshaking {
                    self.shutdown(.connectionClosed(AMQPError(.connectionForced, "no answer to the AMQP handshake within \(limit) s")))
                }
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        silentTicks = 0
        if phase == .handshaking && reader.bufferedBytes == 0 && bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) == 0x41 {
            // "AMQP…": the server rejected our protocol version.
            shutdown(.protocolVersionMismatch)
            return
        }
        reader.append(bytes)
        do throws(AMQPError) {
            while let frame = try reader.next() {
                handle(frame)
                if phase == .closed { return }
            }
        } catch {
            sendConnectionClose(error)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        shutdown(closeError ?? .connectionClosed(nil))
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        for l in writabilityListeners { l(writable) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Kept: a TLS handshake that failed, or a reset, says why the connection is gone.
        shutdown(closeError ?? .transportFailed("\(error)"))
        context.close(promise: nil)
    }

    /// Fails everything outstanding and closes the socket.
    private func shutdown(_ error: AMQPClientError) {
        guard phase != .closed else { return }
        phase = .closed
        closeError = error
        heartbeatTask?.cancel()
        connectPromise?.fail(error)
        connectPromise = nil
        for ch in channels.values { ch.fail(error) }
        channels.removeAll()
        closeOkPromise?.succeed(())
        closeOkPromise = nil
        context?.close(promise: nil)
    }

    // MARK: frames

    private func handle(_ frame: AMQPFrame) {
        switch frame {
        case .heartbeat, .protocolHeader:
            return
        case .method(0, let m):
            connectionMethod(m)
        default:
            guard let ch = channels[frame.channel] else { return }  // a channel we already dropped
            let command: AMQPCommand?
            do throws(AMQPError) {
                switch frame {
                case .method(_, let m): command = try ch.assembler.method(m)
                case .header(_, let h): command = try ch.assembler.header(h)
                case .body(_, let b): command = try ch.assembler.body(b)
                default: command = nil
                }
            } catch {
                sendConnectionClose(error)
                return
            }
            if let command { channelCommand(ch, command) }
        }
    }

    private func connectionMethod(_ m: AMQPMethod) {
        switch m {
        case .connectionStart(let start):
            serverProperties = start.serverProperties
            let mechanisms = start.mechanisms.split(separator: " ").map(String.init)
            guard mechanisms.contains(configuration.mechanism) || configuration.saslResponse != nil else {
                shutdown(.protocolViolation("server does not offer \(configuration.mechanism) (offers \(start.mechanisms))"))
                return
            }
            send(0, .connectionStartOk(ConnectionStartOk(clientProperties: clientProperties(), mechanism: configuration.mechanism, response: saslResponse(), locale: "en_US")))
        case .connectionTune(let tune):
            channelMax = tune.channelMax == 0 ? UInt16.max : tune.channelMax
            frameMax = min(configuration.frameMax == 0 ? UInt32.max : configuration.frameMax, tune.frameMax == 0 ? UInt32.max : tune.frameMax)
            heartbeat = configuration.heartbeat ?? tune.heartbeat
            reader.decoder.maxFrameSize = frameMax
            send(0, .connectionTuneOk(ConnectionTuneOk(channelMax: channelMax, frameMax: frameMax, heartbeat: heartbeat)))
            send(0, .connectionOpen(ConnectionOpen(virtualHost: configuration.virtualHost)))
            if heartbeat > 0 { scheduleHeartbeat() }
        case .connectionOpenOk:
            phase = .open
            connectPromise?.succeed(serverProperties)
            connectPromise = nil
        case .connectionClose(let close):
            let error = AMQPError(code: AMQPReplyCode(rawValue: close.replyCode), text: close.replyText, classID: close.classID, methodID: close.methodID)
            send(0, .connectionCloseOk(ConnectionCloseOk()))
            flushNow()
            shutdown(.connectionClosed(error))
        case .connectionCloseOk:
            shutdown(closeError ?? .connectionClosed(nil))
        case .connectionBlocked(let b):
            blockedListener?(b.reason)
        case .connectionUnblocked:
            blockedListener?(nil)
        default:
            sendConnectionClose(AMQPError(.commandInvalid, "unexpected \(m.name) on channel 0", classID: m.classID, methodID: m.methodID))
        }
    }

    private func channelCommand(_ ch: ClientChannelState, _ command: AMQPCommand) {
        switch command.method {
        case .basicDeliver(let d):
            ch.consumers[d.consumerTag]?.yield(
                AMQPDelivery(consumerTag: d.consumerTag, deliveryTag: d.deliveryTag, redelivered: d.redelivered, exchange: d.exchange,
                             routingKey: d.routingKey, properties: command.header?.properties ?? .empty, body: command.body))
        case .basicReturn(let r):
            ch.returns.yield(
                AMQPReturnedMessage(replyCode: r.replyCode, replyText: r.replyText, exchange: r.exchange, routingKey: r.routingKey,
                                    properties: command.header?.properties ?? .empty, body: command.body))
        case .basicAck(let a) where ch.confirmsEnabled:
            ch.settleConfirms(tag: a.deliveryTag, multiple: a.multiple, ack: true)
        case .basicNack(let n) where ch.confirmsEnabled:
            ch.settleConfirms(tag: n.deliveryTag, multiple: n.multiple, ack: false)
        case .basicCancel(let c):
            // The broker cancelled a consumer (its queue went away).
            ch.consumers.removeValue(forKey: c.consumerTag)?.finish()
            ch.cancelListener?(c.consumerTag)
        case .channelClose(let c):
            let error = AMQPError(code: AMQPReplyCode(rawValue: c.replyCode), text: c.replyText, classID: c.classID, methodID: c.methodID)
            send(ch.number, .channelCloseOk(ChannelCloseOk()))
            channels[ch.number] = nil
            closedChannels[ch.number] = .channelClosed(error)
            ch.fail(.channelClosed(error))
        case .channelCloseOk:
            channels[ch.number] = nil
            closedChannels[ch.number] = .channelClosed(AMQPError(.replySuccess, "channel closed by client"))
            ch.fail(.channelClosed(AMQPError(.replySuccess, "channel closed by client")))
        case .channelFlow(let f):
            send(ch.number, .channelFlowOk(ChannelFlowOk(active: f.active)))
        default:
            // A reply to the oldest outstanding synchronous request.
            guard let rpc = ch.rpcs.popFirst() else {
                sendConnectionClose(AMQPError(.commandInvalid, "unexpected \(command.method.name)", classID: command.method.classID, methodID: command.method.methodID))
                return
            }
            switch rpc.effect {
            case .none: break
            case .registerConsumer(let sink):
                if case .basicConsumeOk(let ok) = command.method { ch.consumers[ok.consumerTag] = sink }
            case .enableConfirms:
                ch.confirmsEnabled = true
            }
            if case .basicCancelOk(let ok) = command.method { ch.consumers.removeValue(forKey: ok.consumerTag)?.finish() }
            rpc.promise.succeed(command)
        }
    }

    // MARK: requests from the API (all on the event loop)

    func openChannel(returns: AsyncStream<AMQPReturnedMessage>.Continuation, promise: EventLoopPromise<AMQPCommand>) -> UInt16? {
        guard phase == .open else {
            promise.fail(closeError ?? .connectionClosed(nil))
            return nil
        }
        var candidate = nextChannel
        for _ in 0..<Int(channelMax) {
            if channels[candidate] == nil { break }
            candidate = candidate >= channelMax ? 1 : candidate + 1
        }
        guard channels[candidate] == nil else {
            promise.fail(AMQPClientError.tooManyChannels)
            return nil
        }
        nextChannel = candidate >= channelMax ? 1 : candidate + 1
        closedChannels[candidate] = nil
        let state = ClientChannelState(number: candidate, returns: returns)
        channels[candidate] = state
        state.rpcs.append(.init(promise: promise, effect: .none))
        send(candidate, .channelOpen(ChannelOpen()))
        return candidate
    }

    func rpc(channel: UInt16, _ method: AMQPMethod, effect: ReplyEffect, promise: EventLoopPromise<AMQPCommand>) {
        guard let ch = usableChannel(channel, promise) else { return }
        ch.rpcs.append(.init(promise: promise, effect: effect))
        send(channel, method)
    }

    /// Sends a method with no reply (ack, nack, reject, recover-async, nowait forms).
    func cast(channel: UInt16, _ method: AMQPMethod) -> AMQPClientError? {
        guard phase == .open else { return closeError ?? .connectionClosed(nil) }
        guard let ch = channels[channel] else { return closedReason(channel) }
        if let e = ch.closedError { return e }
        send(channel, method)
        return nil
    }

    /// Publishes; returns the confirm sequence number in confirm mode (else 0).
    func publish(channel: UInt16, _ publish: BasicPublish, properties: BasicProperties, body: ByteBuffer) throws(AMQPClientError) -> UInt64 {
        guard phase == .open else { throw closeError ?? .connectionClosed(nil) }
        guard let ch = channels[channel] else { throw closedReason(channel) }
        if let e = ch.closedError { throw e }
        prepareOut()
        out.writeAMQPCommand(channel: channel, .basicPublish(publish), properties: properties, body: body, maxFrameSize: frameMax)
        scheduleFlush()
        guard ch.confirmsEnabled else { return 0 }
        let seq = ch.nextPublishSeq
        ch.nextPublishSeq += 1
        ch.unconfirmed.append(seq)
        return seq
    }

    func waitForConfirms(channel: UInt16, upTo: UInt64?, promise: EventLoopPromise<Void>) {
        guard let ch = channels[channel] else {
            promise.fail(closeError ?? closedReason(channel))
            return
        }
        let target = upTo ?? (ch.nextPublishSeq - 1)
        ch.confirmWaiters.append((target, promise))
        let listener = ch.confirmListener
        ch.confirmListener = nil  // a re-check, not a confirm from the broker
        ch.settleConfirms(tag: 0, multiple: false, ack: true)
        ch.confirmListener = listener
    }

    /// Publishes with frames encoded once in `template`; `writeBody` writes exactly
    /// `template.bodySize` bytes. Returns the confirm sequence number (0 outside confirm mode).
    func publish(channel: UInt16, template: PublishTemplate, writeBody: (inout ByteBuffer) -> Void) throws(AMQPClientError) -> UInt64 {
        guard phase == .open else { throw closeError ?? .connectionClosed(nil) }
        guard let ch = channels[channel] else { throw closedReason(channel) }
        if let e = ch.closedError { throw e }
        guard template.channel == channel, template.bodySize + AMQPFrameType.overhead <= Int(frameMax) else {
            throw .protocolViolation("publish template does not fit this channel or frame_max")
        }
        prepareOut()
        out.writeImmutableBuffer(template.frames)
        if template.bodySize > 0 {
            out.writeMultipleIntegers(AMQPFrameType.body, channel, UInt32(template.bodySize))
            let start = out.writerIndex
            writeBody(&out)
            precondition(out.writerIndex - start == template.bodySize, "writeBody wrote the wrong number of bytes")
            out.writeInteger(AMQPFrameType.end)
        }
        scheduleFlush()
        guard ch.confirmsEnabled else { return 0 }
        let seq = ch.nextPublishSeq
        ch.nextPublishSeq += 1
        ch.unconfirmed.append(seq)
        return seq
    }

    func unconfirmedCount(channel: UInt16) -> Int { channels[channel]?.unconfirmed.count ?? 0 }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    /// Told when the socket's writability changes, on the event loop.
    var writabilityListeners: [@Sendable (Bool) -> Void] = []
    /// Told of connection.blocked (with the broker's reason) and connection.unblocked (nil).
    var blockedListener: (@Sendable (String?) -> Void)?

    func closeChannel(_ channel: UInt16, promise: EventLoopPromise<Void>) {
        guard phase == .open, let ch = channels[channel], ch.closedError == nil else {
            promise.succeed(())
            return
        }
        ch.closeOkPromise = promise
        send(channel, .channelClose(ChannelClose(replyCode: 200, replyText: "OK", classID: 0, methodID: 0)))
    }

    func close(promise: EventLoopPromise<Void>) {
        guard phase == .open || phase == .handshaking else {
            promise.succeed(())
            return
        }
        phase = .closing
        closeOkPromise = promise
        closeError = .connectionClosed(AMQPError(.replySuccess, "closed by client"))
        send(0, .connectionClose(ConnectionClose(replyCode: 200, replyText: "OK", classID: 0, methodID: 0)))
        flushNow()
    }

    /// Why a channel is closed, or nil while it is open.
    func channelCloseError(_ channel: UInt16) -> AMQPClientError? {
        if phase != .open { return closeError ?? .connectionClosed(nil) }
        if let ch = channels[channel] { return ch.closedError }
        return closedReason(channel)
    }

    private func closedReason(_ channel: UInt16) -> AMQPClientError {
        closedChannels[channel] ?? .channelClosed(AMQPError(.channelError, "channel \(channel) is closed"))
    }

    private func usableChannel(_ channel: UInt16, _ promise: EventLoopPromise<AMQPCommand>) -> ClientChannelState? {
        guard phase == .open else {
            promise.fail(closeError ?? .connectionClosed(nil))
            return nil
        }
        guard let ch = channels[channel] else {
            promise.fail(closedReason(channel))
            return nil
        }
        if let e = ch.closedError {
            promise.fail(e)
            return nil
        }
        return ch
    }

    // MARK: output

    private func sendConnectionClose(_ error: AMQPError) {
        guard phase != .closed && phase != .closing else { return }
        phase = .closing
        closeError = .protocolViolation(error.text)
        send(0, .connectionClose(ConnectionClose(replyCode: error.code.rawValue, replyText: error.text, classID: error.classID, methodID: error.methodID)))
        flushNow()
    }

    func sendRaw(_ frame: AMQPFrame) {
        prepareOut()
        out.writeAMQPFrame(frame)
        flushNow()
    }

    private func prepareOut() {
        if out.readableBytes == 0 && out.writerIndex > 0 { out.clear() }
    }

    func send(_ channel: UInt16, _ method: AMQPMethod) {
        prepareOut()
        out.writeAMQPMethodFrame(channel: channel, method)
        scheduleFlush()
    }

    private func scheduleFlush() {
        sentSinceTick = true
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.flushNow()
        }
    }

    private func flushNow() {
        guard let context, out.readableBytes > 0 else { return }
        let data = out
        out.moveReaderIndex(forwardBy: out.readableBytes)
        context.writeAndFlush(wrapOutboundOut(data), promise: nil)
    }

    private func scheduleHeartbeat() {
        guard let context else { return }
        let interval = TimeAmount.seconds(Int64(max(1, heartbeat / 2)))
        heartbeatTask = context.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            if !self.sentSinceTick {
                self.prepareOut()
                self.out.writeAMQPHeartbeatFrame()
                self.flushNow()
            }
            self.sentSinceTick = false
            self.silentTicks += 1
            if self.silentTicks >= 4 {
                self.shutdown(.connectionClosed(AMQPError(.connectionForced, "missed heartbeats from server, timeout: \(self.heartbeat)s")))
                return
            }
            self.scheduleHeartbeat()
        }
    }

    private func clientProperties() -> FieldTable {
        var props: FieldTable = [
            "product": "Warren AMQPClient",
            "platform": "Swift",
            "capabilities": .table([
                "publisher_confirms": true, "exchange_exchange_bindings": true, "basic.nack": true,
                "consumer_cancel_notify": true, "connection.blocked": true, "authentication_failure_close": true,
            ]),
        ]
        if let name = configuration.connectionName { props["connection_name"] = .string(name) }
        return props
    }

    private func saslResponse() -> [UInt8] {
        if let raw = configuration.saslResponse { return raw }
        if configuration.mechanism == "AMQPLAIN" {
            var b = ByteBuffer()
            b.amqpWriteFieldTable(["LOGIN": .string(configuration.username), "PASSWORD": .string(configuration.password)])
            return Array(b.readableBytesView.dropFirst(4))
        }
        return [0] + Array(configuration.username.utf8) + [0] + Array(configuration.password.utf8)
    }
}
