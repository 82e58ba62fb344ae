public import AMQPServer
public import Logging
public import NIOCore
public import ServiceLifecycle
import UnixSignals
public import WarrenCore
public import WarrenTLS

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
        let kind = configuration.tls == nil ? "AMQP" : "AMQPS"
        logger.notice("\(kind) listener started on \(address.ipAddress ?? configuration.host):\(address.port ?? 0)")
        onListening(address)
        try? await gracefulShutdown()
        logger.notice("stopping AMQP listener and closing client connections")
        await listener.shutdown(reason: "shutdown", timeout: shutdownTimeout)
        logger.notice("AMQP listener stopped")
    }
}

/// Reloads the AMQPS certificate, key and CA bundle on SIGHUP. New connections get the new
/// ones; live connections keep theirs. A reload that fails keeps the old context and says why.
public struct TLSReloadService: Service {
    let contexts: TLSContextBox
    let logger: Logger

    public init(contexts: TLSContextBox, logger: Logger) {
        self.contexts = contexts
        self.logger = logger
    }

    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            do {
                try contexts.reload()
                logger.notice("TLS certificate and key reloaded (SIGHUP); new connections use them")
            } catch {
                logger.error("TLS reload failed, keeping the previous certificate: \(error)")
            }
        }
    }
}
