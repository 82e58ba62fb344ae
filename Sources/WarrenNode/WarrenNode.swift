import Foundation
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
public import ServiceLifecycle
import UnixSignals
import AMQPServer
public import WarrenCore
public import WarrenStore
public import WarrenTLS

/// The composition root of a node: one event loop for the broker and its store, the services,
/// and their graceful shutdown on SIGTERM/SIGINT.
public final class WarrenNode: Sendable {
    public let configuration: NodeConfiguration
    public let logger: Logger
    public let dataDirectory: DataDirectory
    let group: MultiThreadedEventLoopGroup
    public let broker: NIOLoopBound<Broker>
    public let store: NIOLoopBound<FileMessageStore>
    private let tickTask: RepeatedTask
    private let monitorTask: RepeatedTask
    /// The alarm limits in force; start from the configuration, changeable at runtime (as
    /// `rabbitmqctl set_disk_free_limit` / `set_vm_memory_high_watermark`).
    private let resourceLimits: NIOLockedValueBox<ResourceLimits>
    /// The AMQPS listener's TLS contexts (reloaded on SIGHUP), when TLS is configured.
    public let tlsContexts: TLSContextBox?

    /// Opens the data directory, recovers the store (refusing to start on corruption, with a
    /// message that says what to do), rebuilds the broker from it and imports the definitions
    /// file, if any.
    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.dataDirectory = try DataDirectory(path: configuration.resolvedDataDirectory())
        // Certificate problems stop the start with the file that is wrong.
        self.tlsContexts = try configuration.tlsSettings().map { try TLSContextBox(settings: $0) }
        // One loop owns the broker and every connection (docs/architecture.md explains why).
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let brokerConfig = configuration.broker
        var brokerLogger = logger
        brokerLogger[metadataKey: "subsystem"] = "amqp"
        var storeLogger = logger
        storeLogger[metadataKey: "subsystem"] = "store"
        let definitions = configuration.loadDefinitions
        let storeDirectory = (dataDirectory.path as NSString).appendingPathComponent("store")
        let (broker, store) = try loop.submit { [brokerLogger, storeLogger] in
            var config = brokerConfig
            config.seedDefaults = false
            let broker = Broker(configuration: config, logger: brokerLogger)
            let store = try FileMessageStore(directory: storeDirectory, logger: storeLogger) { task in loop.execute(task) }
            store.snapshotProvider = { [unowned broker] in broker.exportDefinitions(durableOnly: true) }
            store.onFatal = { error in
                // Crash-only: after a failed write or fsync nothing more can be promised, and
                // recovery at the next start is what makes the state right again.
                storeLogger.critical("store failed, stopping the node: \(error.description)")
                exit(70)
            }
            broker.attach(store: store)
            if store.isFresh {
                // RabbitMQ's first boot: the default user and vhost, unless definitions say who.
                if definitions == nil { broker.seedDefaults() }
            } else {
                broker.recover(metadata: store.recoveredMetadata, queues: store.recoveredQueues)
            }
            if let definitions { try broker.importDefinitions(file: definitions) }
            return (NIOLoopBound(broker, eventLoop: loop), NIOLoopBound(store, eventLoop: loop))
        }.wait()
        self.broker = broker
        self.store = store
        // Message TTL and queue expiry: expired heads and unused queues go within 50 ms; the
        // store syncs what nobody waited for, checkpoints and compacts on the same beat.
        self.tickTask = loop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { _ in
            broker.value.tick()
            store.value.tick()
        }
        let limits = NIOLockedValueBox(configuration.resources)
        self.resourceLimits = limits
        let dataPath = dataDirectory.path
        self.monitorTask = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { _ in
            broker.value.apply(resources: ResourceReadings.read(dataDirectory: dataPath), limits: limits.withLockedValue { $0 })
        }
    }

    /// Changes the alarm limits and re-evaluates them at once.
    public func setResourceLimits(_ limits: ResourceLimits) async throws {
        resourceLimits.withLockedValue { $0 = limits }
        let dataPath = dataDirectory.path
        try await withBroker { $0.apply(resources: ResourceReadings.read(dataDirectory: dataPath), limits: limits) }
    }

    public var currentResourceLimits: ResourceLimits { resourceLimits.withLockedValue { $0 } }

    /// The services this node runs, in start order.
    public func services(
        onAMQPListening: @escaping @Sendable (SocketAddress) -> Void = { _ in },
        onAMQPSListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) -> [any Service] {
        var amqp = AMQPServerConfiguration(
            host: configuration.bindAddress, port: configuration.amqpPort,
            handshakeTimeout: .seconds(Int64(configuration.handshakeTimeoutSeconds)))
        amqp.maxConnections = configuration.maxConnections
        let shutdown = TimeAmount.seconds(Int64(configuration.shutdownTimeoutSeconds))
        var list: [any Service] = []
        if configuration.plainListener {
            list.append(AMQPService(configuration: amqp, broker: broker, shutdownTimeout: shutdown, logger: logger, onListening: onAMQPListening))
        }
        if let tls = tlsContexts {
            var amqps = amqp
            amqps.port = configuration.amqpsPort
            amqps.tls = AMQPTLSOptions(contexts: tls, handshakeTimeout: .seconds(Int64(configuration.tlsHandshakeTimeoutSeconds)))
            list.append(AMQPService(configuration: amqps, broker: broker, shutdownTimeout: shutdown, logger: logger, onListening: onAMQPSListening))
            list.append(TLSReloadService(contexts: tls, logger: logger))
        }
        return list
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

    /// Closes the store (everything synced, a final checkpoint) and stops the event loop, once
    /// the services have stopped.
    public func shutdownEventLoops() async throws {
        tickTask.cancel()
        monitorTask.cancel()
        let store = self.store
        try await store.eventLoop.submit { store.value.close() }.get()
        try await group.shutdownGracefully()
    }

    /// Runs `body` with the broker on its event loop (the admin interface's way in).
    public func withBroker<T: Sendable>(_ body: @escaping @Sendable (Broker) throws -> T) async throws -> T {
        let broker = self.broker
        return try await broker.eventLoop.submit { try body(broker.value) }.get()
    }
}
