public import AMQPProtocol
public import NIOCore

/// An open channel. Methods mirror the AMQP ones; synchronous ones wait for the broker's reply.
public final class AMQPClientChannel: Sendable {
    public let number: UInt16
    public let connection: AMQPClientConnection
    /// Mandatory messages the broker returned as unroutable.
    public let returns: AsyncStream<AMQPReturnedMessage>

    init(number: UInt16, connection: AMQPClientConnection, returns: AsyncStream<AMQPReturnedMessage>) {
        self.number = number
        self.connection = connection
        self.returns = returns
    }

    var eventLoop: any EventLoop { connection.eventLoop }

    /// Sends a synchronous method and returns the broker's reply.
    @discardableResult
    public func call(_ method: AMQPMethod) async throws -> AMQPCommand {
        try await call(method, effect: .none)
    }

    func call(_ method: AMQPMethod, effect: ReplyEffect) async throws -> AMQPCommand {
        let promise = eventLoop.makePromise(of: AMQPCommand.self)
        let handler = connection.handler
        let n = number
        eventLoop.execute { handler.value.rpc(channel: n, method, effect: effect, promise: promise) }
        return try await promise.futureResult.get()
    }

    /// Sends a method that has no reply.
    public func cast(_ method: AMQPMethod) async throws {
        let handler = connection.handler
        let n = number
        if let error = try await eventLoop.submit({ handler.value.cast(channel: n, method) }).get() { throw error }
    }

    // MARK: exchanges and queues

    public func exchangeDeclare(
        _ name: String, type: String = "direct", passive: Bool = false, durable: Bool = false, autoDelete: Bool = false,
        internal: Bool = false, arguments: FieldTable = [:]
    ) async throws {
        try await call(
            .exchangeDeclare(
                ExchangeDeclare(exchange: name, type: type, passive: passive, durable: durable, autoDelete: autoDelete, internal: `internal`, arguments: arguments)))
    }

    public func exchangeDelete(_ name: String, ifUnused: Bool = false) async throws {
        try await call(.exchangeDelete(ExchangeDelete(exchange: name, ifUnused: ifUnused)))
    }

    public func exchangeBind(destination: String, source: String, routingKey: String = "", arguments: FieldTable = [:]) async throws {
        try await call(.exchangeBind(ExchangeBind(destination: destination, source: source, routingKey: routingKey, arguments: arguments)))
    }

    public func exchangeUnbind(destination: String, source: String, routingKey: String = "", arguments: FieldTable = [:]) async throws {
        try await call(.exchangeUnbind(ExchangeUnbind(destination: destination, source: source, routingKey: routingKey, arguments: arguments)))
    }

    @discardableResult
    public func queueDeclare(
        _ name: String = "", passive: Bool = false, durable: Bool = false, exclusive: Bool = false, autoDelete: Bool = false,
        arguments: FieldTable = [:]
    ) async throws -> QueueDeclareOk {
        let reply = try await call(
            .queueDeclare(QueueDeclare(queue: name, passive: passive, durable: durable, exclusive: exclusive, autoDelete: autoDelete, arguments: arguments)))
        guard case .queueDeclareOk(let ok) = reply.method else { throw AMQPClientError.protocolViolation("expected queue.declare-ok") }
        return ok
    }

    public func queueBind(_ queue: String, exchange: String, routingKey: String = "", arguments: FieldTable = [:]) async throws {
        try await call(.queueBind(QueueBind(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments)))
    }

    public func queueUnbind(_ queue: String, exchange: String, routingKey: String = "", arguments: FieldTable = [:]) async throws {
        try await call(.queueUnbind(QueueUnbind(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments)))
    }

    @discardableResult
    public func queuePurge(_ queue: String) async throws -> UInt32 {
        let reply = try await call(.queuePurge(QueuePurge(queue: queue)))
        guard case .queuePurgeOk(let ok) = reply.method else { throw AMQPClientError.protocolViolation("expected queue.purge-ok") }
        return ok.messageCount
    }

    @discardableResult
    public func queueDelete(_ queue: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws -> UInt32 {
        let reply = try await call(.queueDelete(QueueDelete(queue: queue, ifUnused: ifUnused, ifEmpty: ifEmpty)))
        guard case .queueDeleteOk(let ok) = reply.method else { throw AMQPClientError.protocolViolation("expected queue.delete-ok") }
        return ok.messageCount
    }

    // MARK: basic

    public func basicQos(prefetchCount: UInt16, global: Bool = false) async throws {
        try await call(.basicQos(BasicQos(prefetchSize: 0, prefetchCount: prefetchCount, global: global)))
    }

    /// Publishes a message. In confirm mode returns its sequence number (else 0); the returned
    /// value can be passed to `waitForConfirms(upTo:)`.
    @discardableResult
    public func basicPublish(
        exchange: String = "", routingKey: String, body: ByteBuffer, properties: BasicProperties = .empty,
        mandatory: Bool = false
    ) async throws -> UInt64 {
        let handler = connection.handler
        let n = number
        let publish = BasicPublish(exchange: exchange, routingKey: routingKey, mandatory: mandatory)
        return try await eventLoop.submit {
            try handler.value.publish(channel: n, publish, properties: properties, body: body)
        }.get()
    }

    @discardableResult
    public func basicPublish(
        exchange: String = "", routingKey: String, body: String, properties: BasicProperties = .empty, mandatory: Bool = false
    ) async throws -> UInt64 {
        try await basicPublish(exchange: exchange, routingKey: routingKey, body: ByteBuffer(string: body), properties: properties, mandatory: mandatory)
    }

    /// Subscribes to a queue; deliveries arrive on the returned consumer's stream.
    public func basicConsume(
        queue: String, consumerTag: String = "", noAck: Bool = false, exclusive: Bool = false, arguments: FieldTable = [:]
    ) async throws -> AMQPConsumer {
        let (stream, continuation) = AsyncStream.makeStream(of: AMQPDelivery.self)
        let tag = try await consume(
            BasicConsume(queue: queue, consumerTag: consumerTag, noAck: noAck, exclusive: exclusive, arguments: arguments),
            sink: .stream(continuation))
        return AMQPConsumer(tag: tag, deliveries: stream)
    }

    /// Subscribes with a callback run on the connection's event loop for each delivery: no task
    /// hop per message, for high-rate consumers. Returns the consumer tag.
    public func basicConsume(
        queue: String, consumerTag: String = "", noAck: Bool = false, exclusive: Bool = false, arguments: FieldTable = [:],
        onDelivery: @escaping @Sendable (AMQPDelivery) -> Void
    ) async throws -> String {
        try await consume(
            BasicConsume(queue: queue, consumerTag: consumerTag, noAck: noAck, exclusive: exclusive, arguments: arguments),
            sink: .callback(onDelivery))
    }

    private func consume(_ m: BasicConsume, sink: ConsumerSink) async throws -> String {
        let reply = try await call(.basicConsume(m), effect: .registerConsumer(sink))
        guard case .basicConsumeOk(let ok) = reply.method else { throw AMQPClientError.protocolViolation("expected basic.consume-ok") }
        return ok.consumerTag
    }

    /// Calls `listener(tag, multiple, ack)` on the event loop for every confirm the broker sends.
    public func setConfirmListener(_ listener: @escaping @Sendable (UInt64, Bool, Bool) -> Void) async throws {
        let handler = connection.handler
        let n = number
        try await eventLoop.submit { handler.value.channels[n]?.confirmListener = listener }.get()
    }

    /// Why the channel is closed (by the broker, the client, or with its connection); nil
    /// while it is open.
    public func closeReason() async -> AMQPClientError? {
        let handler = connection.handler
        let n = number
        return try? await eventLoop.submit { handler.value.channelCloseError(n) }.get()
    }

    /// Calls `listener(tag)` on the event loop when the broker cancels one of this channel's
    /// consumers (its queue was deleted, or a replica took over).
    public func setCancelListener(_ listener: @escaping @Sendable (String) -> Void) async throws {
        let handler = connection.handler
        let n = number
        try await eventLoop.submit { handler.value.channels[n]?.cancelListener = listener }.get()
    }

    /// Work on this channel from its connection's event loop, without a task hop per call.
    /// Every member must be used on that event loop (it is checked).
    public var onEventLoop: AMQPLoopChannel { AMQPLoopChannel(channel: self) }

    public func basicCancel(_ consumerTag: String) async throws {
        try await call(.basicCancel(BasicCancel(consumerTag: consumerTag)))
    }

    /// Fetches one message, or nil when the queue is empty.
    public func basicGet(queue: String, noAck: Bool = false) async throws -> AMQPDelivery? {
        let reply = try await call(.basicGet(BasicGet(queue: queue, noAck: noAck)))
        switch reply.method {
        case .basicGetOk(let ok):
            return AMQPDelivery(
                consumerTag: "", deliveryTag: ok.deliveryTag, redelivered: ok.redelivered, exchange: ok.exchange,
                routingKey: ok.routingKey, properties: reply.header?.properties ?? .empty, body: reply.body, messageCount: ok.messageCount)
        case .basicGetEmpty:
            return nil
        default:
            throw AMQPClientError.protocolViolation("expected basic.get-ok or get-empty")
        }
    }

    public func basicAck(_ deliveryTag: UInt64, multiple: Bool = false) async throws {
        try await cast(.basicAck(BasicAck(deliveryTag: deliveryTag, multiple: multiple)))
    }

    public func basicNack(_ deliveryTag: UInt64, multiple: Bool = false, requeue: Bool = true) async throws {
        try await cast(.basicNack(BasicNack(deliveryTag: deliveryTag, multiple: multiple, requeue: requeue)))
    }

    public func basicReject(_ deliveryTag: UInt64, requeue: Bool = true) async throws {
        try await cast(.basicReject(BasicReject(deliveryTag: deliveryTag, requeue: requeue)))
    }

    public func basicRecover(requeue: Bool = true) async throws {
        try await call(.basicRecover(BasicRecover(requeue: requeue)))
    }

    // MARK: confirms, transactions, flow

    /// Puts the channel in confirm mode.
    public func confirmSelect() async throws {
        _ = try await call(.confirmSelect(ConfirmSelect()), effect: .enableConfirms)
    }

    /// Waits until every publish so far (or up to `upTo`) is confirmed; throws `.nacked` if the
    /// broker refused any of them.
    public func waitForConfirms(upTo: UInt64? = nil) async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        let handler = connection.handler
        let n = number
        eventLoop.execute { handler.value.waitForConfirms(channel: n, upTo: upTo, promise: promise) }
        try await promise.futureResult.get()
    }

    public func txSelect() async throws { try await call(.txSelect(TxSelect())) }
    public func txCommit() async throws { try await call(.txCommit(TxCommit())) }
    public func txRollback() async throws { try await call(.txRollback(TxRollback())) }

    public func flow(active: Bool) async throws {
        try await call(.channelFlow(ChannelFlow(active: active)))
    }

    /// Closes the channel (channel.close, waiting for close-ok).
    public func close() async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        let handler = connection.handler
        let n = number
        eventLoop.execute { handler.value.closeChannel(n, promise: promise) }
        try await promise.futureResult.get()
    }
}
