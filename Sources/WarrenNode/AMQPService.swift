public import AMQPServer
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
public import ServiceLifecycle
import UnixSignals
public import WarrenCore
public import WarrenTLS

/// `stop_app` / `start_app`: whether the node's AMQP listeners run. Shared by every AMQP
/// service of the node and the operator's API; each service follows it through a gate of its
/// own, because the service group shuts services down one at a time (a shared "shutting down"
/// would end the later ones before they were asked, which the group reports as a failure).
public final class AppSwitch: Sendable {
    public enum State: Sendable { case running, stopped }
    private let box = NIOLockedValueBox<(state: State, gates: [ListenerGate])>((.running, []))

    public init() {}

    public var state: State { box.withLockedValue { $0.state } }

    public func set(_ state: State) {
        let gates = box.withLockedValue { b -> [ListenerGate] in
            b.state = state
            return b.gates
        }
        for g in gates { g.set(state == .running ? .running : .stopped) }
    }

    func gate() -> ListenerGate {
        box.withLockedValue { b in
            let g = ListenerGate(b.state == .running ? .running : .stopped)
            b.gates.append(g)
            return g
        }
    }
}

/// One AMQP service's view of the switch, plus its own shutdown.
final class ListenerGate: Sendable {
    enum State: Sendable { case running, stopped, shuttingDown }
    private let box: NIOLockedValueBox<(state: State, waiters: [CheckedContinuation<Void, Never>])>

    init(_ state: State) { box = NIOLockedValueBox((state, [])) }

    var state: State { box.withLockedValue { $0.state } }

    func set(_ state: State) {
        let waiters = box.withLockedValue { b -> [CheckedContinuation<Void, Never>] in
            guard b.state != .shuttingDown else { return [] }
            b.state = state
            defer { b.waiters = [] }
            return b.waiters
        }
        for w in waiters { w.resume() }
    }

    /// Returns once the state is not `state` any more.
    func wait(whileIn state: State) async {
        while self.state == state {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = box.withLockedValue { b -> Bool in
                    if b.state != state { return true }
                    b.waiters.append(c)
                    return false
                }
                if resumeNow { c.resume() }
            }
        }
    }
}

/// Runs the AMQP listener until graceful shutdown, then closes clients politely. `stop_app`
/// closes it (and the clients) meanwhile, `start_app` binds it again.
public struct AMQPService: Service {
    let configuration: AMQPServerConfiguration
    let broker: NIOLoopBound<Broker>
    let shutdownTimeout: TimeAmount
    let logger: Logger
    let onListening: @Sendable (SocketAddress) -> Void
    let appSwitch: AppSwitch

    public init(
        configuration: AMQPServerConfiguration, broker: NIOLoopBound<Broker>, shutdownTimeout: TimeAmount,
        logger: Logger, appSwitch: AppSwitch = AppSwitch(), onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.broker = broker
        self.shutdownTimeout = shutdownTimeout
        self.logger = logger
        self.onListening = onListening
        self.appSwitch = appSwitch
    }

    public func run() async throws {
        var configuration = self.configuration
        let appSwitch = self.appSwitch.gate()
        // Cancellation (another service failed) ends it as a shutdown does.
        try await withTaskCancellationHandler { try await withGracefulShutdownHandler {
            while appSwitch.state != .shuttingDown {
                if appSwitch.state == .stopped {
                    await appSwitch.wait(whileIn: .stopped)
                    continue
                }
                let listener = try await AMQPListener.bind(configuration: configuration, broker: broker, brokerLoop: broker.eventLoop)
                let address = listener.localAddress
                // A restart binds the same port again, also when the first was picked freely.
                configuration.port = address.port ?? configuration.port
                let kind = configuration.tls == nil ? "AMQP" : "AMQPS"
                logger.notice("\(kind) listener started on \(address.ipAddress ?? configuration.host):\(address.port ?? 0)")
                onListening(address)
                await appSwitch.wait(whileIn: .running)
                let stopping = appSwitch.state == .shuttingDown
                logger.notice(stopping ? "stopping AMQP listener and closing client connections" : "stop_app: closing the \(kind) listener and its clients")
                await listener.shutdown(reason: stopping ? "shutdown" : "stop_app", timeout: shutdownTimeout)
                logger.notice("\(kind) listener stopped")
            }
        } onGracefulShutdown: {
            appSwitch.set(.shuttingDown)
        } } onCancel: {
            appSwitch.set(.shuttingDown)
        }
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
