public import AMQPServer
public import Logging
public import NIOCore
public import ServiceLifecycle
public import WarrenCore

/// Runs the AMQP listener until graceful shutdown, then closes clients politely.
public struct AMQPService: Service {
    let configuration: AMQPServerConfiguration
    let broker: NIOLoopBound<Broker>
    let shutdownTimeout: TimeAmount
    let logger: Logger
    let onListening: @Sendable (SocketAddress) -> Void

    public init(
        configuration: AMQPServerConfiguration, broker: NIOLoopBound<Broker>, shutdownTimeout: TimeAmount,
        logger: Logger, onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.broker = broker
        self.shutdownTimeout = shutdownTimeout
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let listener = try await AMQPListener.bind(configuration: configuration, broker: broker, brokerLoop: broker.eventLoop)
        let address = listener.localAddress
        logger.notice("AMQP listener started on \(address.ipAddress ?? configuration.host):\(address.port ?? 0)")
        onListening(address)
        try? await gracefulShutdown()
        logger.notice("stopping AMQP listener and closing client connections")
        await listener.shutdown(reason: "shutdown", timeout: shutdownTimeout)
        logger.notice("AMQP listener stopped")
    }
}
