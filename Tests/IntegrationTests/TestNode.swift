import AMQPClient
import AMQPProtocol
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import Testing
import WarrenCore
import WarrenNode

/// Collects log lines so tests can check that errors are logged.
final class CapturedLogs: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])
    func append(_ line: String) { lines.withLockedValue { $0.append(line) } }
    var all: [String] { lines.withLockedValue { $0 } }
    func contains(_ fragment: String) -> Bool { all.contains { $0.contains(fragment) } }
}

struct CapturingLogHandler: LogHandler {
    let sink: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let meta = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        sink.append("\(event.level) \(event.message) \(meta)")
    }
}

/// A real Warren node in this process, listening on a free loopback port.
final class TestNode: Sendable {
    let node: WarrenNode
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let port: Int
    let logs: CapturedLogs

    private init(node: WarrenNode, group: ServiceGroup, task: Task<Void, any Error>, port: Int, logs: CapturedLogs) {
        self.node = node
        self.group = group
        self.task = task
        self.port = port
        self.logs = logs
    }

    static func start(_ adjust: (inout NodeConfiguration) -> Void = { _ in }) async throws -> TestNode {
        var config = NodeConfiguration()
        config.amqpPort = 0
        config.bindAddress = "127.0.0.1"
        config.dataDirectory = NSTemporaryDirectory() + "warren-it-\(UUID().uuidString)"
        config.shutdownTimeoutSeconds = 2
        // Several nodes run at once in the tests: no fixed HTTP ports.
        config.managementPort = 0
        config.prometheusPort = 0
        config.clusterPort = 0
        adjust(&config)
        let logs = CapturedLogs()
        let logger = Logger(label: "warren") { _ in CapturingLogHandler(sink: logs) }
        // Off the cooperative pool: a node's start blocks until it serves (a joining node until
        // its cluster lets it in), and nodes started together on a 2-core machine would take
        // every pool thread while the one they wait for had none to start on.
        let node = try await withCheckedThrowingContinuation { (c: CheckedContinuation<WarrenNode, any Error>) in
            let box = NIOLockedValueBox((config, logger))
            Thread.detachNewThread {
                let (config, logger) = box.withLockedValue { $0 }
                do { c.resume(returning: try WarrenNode(configuration: config, logger: logger)) } catch { c.resume(throwing: error) }
            }
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = ServiceGroup(services: node.services { continuation.yield($0.port ?? 0) }, logger: logger)
        let task = Task { try await group.run() }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else { throw CancellationError() }
        return TestNode(node: node, group: group, task: task, port: port, logs: logs)
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
        try await node.shutdownEventLoops()
    }

    /// Makes a definition change as the management API does: through the metadata log, so it is
    /// committed (and survives a restart) before this returns.
    func propose(_ command: MetadataCommand) async throws {
        let broker = node.broker
        let failure: String? = try await withCheckedThrowingContinuation { (c: CheckedContinuation<String?, any Error>) in
            broker.eventLoop.execute {
                broker.value.metadataLog.propose(command) { outcome in
                    if case .done = outcome { c.resume(returning: nil) } else { c.resume(returning: "\(outcome)") }
                }
            }
        }
        if let failure { throw AdminError("\(command.name) failed: \(failure)") }
    }

    var configuration: AMQPClientConfiguration { AMQPClientConfiguration(host: "127.0.0.1", port: port) }

    func connect(_ adjust: (inout AMQPClientConfiguration) -> Void = { _ in }) async throws -> AMQPClientConnection {
        var c = configuration
        adjust(&c)
        return try await AMQPClientConnection.connect(c)
    }

    /// Proves the node still serves: a new connection declares, publishes and fetches.
    func assertServing(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let conn = try await connect()
        let ch = try await conn.openChannel()
        let q = try await ch.queueDeclare(exclusive: true).queue
        try await ch.basicPublish(routingKey: q, body: "still here")
        var got: AMQPDelivery?
        for _ in 0..<50 {
            got = try await ch.basicGet(queue: q, noAck: true)
            if got != nil { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(got?.bodyString == "still here", sourceLocation: sourceLocation)
        try await conn.close()
    }
}

/// Runs a test body against a fresh node and stops it afterwards.
func withNode(_ adjust: (inout NodeConfiguration) -> Void = { _ in }, _ body: (TestNode) async throws -> Void) async throws {
    let node = try await TestNode.start(adjust)
    do {
        try await body(node)
    } catch {
        try? await node.stop()
        throw error
    }
    try await node.stop()
}

/// The error a call failed with, as the broker sent it.
func brokerError(_ body: () async throws -> Void) async -> AMQPClientError? {
    do {
        try await body()
        return nil
    } catch let e as AMQPClientError {
        return e
    } catch {
        return nil
    }
}

extension AMQPClientChannel {
    /// Waits for a message to be fetchable (deliveries across connections are asynchronous).
    func getEventually(queue: String, noAck: Bool = true) async throws -> AMQPDelivery? {
        for _ in 0..<200 {
            if let d = try await basicGet(queue: queue, noAck: noAck) { return d }
            try await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}

/// Drains a consumer's deliveries in the background; tests wait for counts.
final class DeliveryCollector: Sendable {
    private let box = NIOLockedValueBox<[AMQPDelivery]>([])
    private let finished = NIOLockedValueBox(false)
    private let task: Task<Void, Never>

    init(_ consumer: AMQPConsumer) {
        let box = self.box
        let finished = self.finished
        task = Task {
            for await d in consumer.deliveries { box.withLockedValue { $0.append(d) } }
            finished.withLockedValue { $0 = true }
        }
    }

    var deliveries: [AMQPDelivery] { box.withLockedValue { $0 } }
    var bodies: [String] { deliveries.map(\.bodyString) }
    /// True once the stream ended (consumer cancelled or channel closed).
    var isFinished: Bool { finished.withLockedValue { $0 } }

    /// Waits until at least `count` deliveries arrived (or the timeout passed); returns them all.
    @discardableResult
    func wait(for count: Int, timeout: Duration = .seconds(10)) async -> [AMQPDelivery] {
        let deadline = ContinuousClock.now + timeout
        while deliveries.count < count && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return deliveries
    }

    func waitUntilFinished(timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !isFinished && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return isFinished
    }
}
