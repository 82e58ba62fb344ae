public import AMQPProtocol
public import NIOCore
public import NIOPosix
import NIOSSL

/// A connection to an AMQP 0-9-1 broker.
///
/// All methods may be called from any task; the work runs on the connection's event loop.
/// Synchronous AMQP methods return when the broker has answered; errors from the broker arrive
/// as `AMQPClientError.channelClosed` or `.connectionClosed` carrying its reply code and text.
public final class AMQPClientConnection: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<ClientHandler>
    /// The broker's connection.start properties (product, version, capabilities).
    public let serverProperties: FieldTable

    public var eventLoop: any EventLoop { channel.eventLoop }
    /// Completes when the socket has closed.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    private init(channel: any Channel, handler: NIOLoopBound<ClientHandler>, serverProperties: FieldTable) {
        self.channel = channel
        self.handler = handler
        self.serverProperties = serverProperties
    }

    /// Connects, authenticates and opens the virtual host.
    public static func connect(
        _ configuration: AMQPClientConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> AMQPClientConnection {
        let loop = eventLoopGroup.next()
        let promise = loop.makePromise(of: FieldTable.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = configuration.tls {
                        let name = configuration.tlsServerName ?? (configuration.host.first?.isLetter == true ? configuration.host : nil)
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                    }
                    try channel.pipeline.syncOperations.addHandler(ClientHandler(configuration: configuration, connectPromise: promise))
                }
            }
            .connect(host: configuration.host, port: configuration.port).get()
        // The handshake's outcome first: a refused login may close the socket (and empty the
        // pipeline) before we could look the handler up.
        let properties: FieldTable
        do {
            properties = try await promise.futureResult.get()
        } catch {
            try? await channel.close()
            throw error
        }
        guard
            let handler = try? await loop.submit({
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ClientHandler.self), eventLoop: loop)
            }).get()
        else { throw AMQPClientError.connectionClosed(nil) }
        return AMQPClientConnection(channel: channel, handler: handler, serverProperties: properties)
    }

    /// Opens a new channel.
    public func openChannel() async throws -> AMQPClientChannel {
        let (stream, continuation) = AsyncStream.makeStream(of: AMQPReturnedMessage.self, bufferingPolicy: .bufferingNewest(10_000))
        let promise = eventLoop.makePromise(of: AMQPCommand.self)
        let handler = self.handler
        let number = try await eventLoop.submit { handler.value.openChannel(returns: continuation, promise: promise) }.get()
        _ = try await promise.futureResult.get()
        return AMQPClientChannel(number: number!, connection: self, returns: stream)
    }

    /// Closes the connection with connection.close and waits for close-ok.
    public func close() async throws {
        let promise = eventLoop.makePromise(of: Void.self)
        let handler = self.handler
        eventLoop.execute { handler.value.close(promise: promise) }
        try await promise.futureResult.get()
        try? await channel.close()
    }

    /// Writes a frame as is, outside the channel bookkeeping: a low-level escape hatch for tests
    /// of how a broker handles frames a well-behaved client never sends.
    public func sendFrame(_ frame: AMQPFrame) async throws {
        let handler = self.handler
        try await eventLoop.submit { handler.value.sendRaw(frame) }.get()
    }

    /// Closes the TCP connection without an AMQP close, as a crashing client would.
    public func dropSocket() async throws {
        try await channel.close()
    }

    /// Calls `listener(reason)` on the event loop when the broker blocks this connection's
    /// publishers (connection.blocked, e.g. on a resource alarm) and `listener(nil)` when it
    /// unblocks them.
    public func setBlockedListener(_ listener: @escaping @Sendable (String?) -> Void) async throws {
        let handler = self.handler
        try await eventLoop.submit { handler.value.blockedListener = listener }.get()
    }

    /// The reason the connection closed, once it has.
    public func closeReason() async -> AMQPClientError? {
        let handler = self.handler
        return try? await eventLoop.submit { handler.value.closeError }.get()
    }
}
