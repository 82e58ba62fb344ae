public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import UnixSignals
import AMQPServer
public import WarrenCore

/// The composition root of a node: one event loop for the broker, the services, and their
/// graceful shutdown on SIGTERM/SIGINT.
public final class WarrenNode: Sendable {
    public let configuration: NodeConfiguration
    public let logger: Logger
    public let dataDirectory: DataDirectory
    let group: MultiThreadedEventLoopGroup
    public let broker: NIOLoopBound<Broker>
    private let tickTask: RepeatedTask

    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.dataDirectory = try DataDirectory(path: configuration.resolvedDataDirectory())
        // One loop owns the broker and every connection (docs/architecture.md explains why).
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        var brokerConfig = configuration.broker
        brokerConfig.seedDefaults = configuration.loadDefinitions == nil
        var brokerLogger = logger
        brokerLogger[metadataKey: "subsystem"] = "amqp"
        let logger2 = brokerLogger
        let definitions = configuration.loadDefinitions
        let broker = try loop.submit {
            let broker = Broker(configuration: brokerConfig, logger: logger2)
            if let definitions { try broker.importDefinitions(file: definitions) }
            return NIOLoopBound(broker, eventLoop: loop)
        }.wait()
        self.broker = broker
        // Message TTL and queue expiry: expired heads and unused queues go within 50 ms.
        self.tickTask = loop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { _ in
            broker.value.tick()
        }
    }

    /// The services this node runs, in start order.
    public func services(onAMQPListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }) -> [any Service] {
        let amqp = AMQPServerConfiguration(
            host: configuration.bindAddress, port: configuration.amqpPort,
            handshakeTimeout: .seconds(Int64(configuration.handshakeTimeoutSeconds)))
        return [
            AMQPService(
                configuration: amqp, broker: broker, shutdownTimeout: .seconds(Int64(configuration.shutdownTimeoutSeconds)),
                logger: logger, onListening: onAMQPListening)
        ]
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully.
    public func run() async throws {
        logger.notice("data directory: \(dataDirectory.path)")
        let group = ServiceGroup(
            services: services(), gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        try await group.run()
        try await shutdownEventLoops()
        logger.notice("node stopped")
    }

    /// Stops the event loop when the node was driven through `services()` instead of `run()`.
    public func shutdownEventLoops() async throws {
        tickTask.cancel()
        try await group.shutdownGracefully()
    }

    /// Runs `body` with the broker on its event loop (the admin interface's way in).
    public func withBroker<T: Sendable>(_ body: @escaping @Sendable (Broker) throws -> T) async throws -> T {
        let broker = self.broker
        return try await broker.eventLoop.submit { try body(broker.value) }.get()
    }
}
