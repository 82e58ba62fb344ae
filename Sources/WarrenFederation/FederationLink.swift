import AMQPClient
import AMQPProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import WarrenCore

/// What a link needs from its node.
struct LinkEnvironment: Sendable {
    /// This node's AMQP port on loopback, and the secret its own clients log in with.
    var localPort: Int
    var secret: [UInt8]
    /// The downstream broker's cluster name (what loop detection compares).
    var clusterName: String
    var logger: Logger
    /// Called (on any thread) when the link's state changes.
    var report: @Sendable (FederationLinkStatus.State, _ error: String?, _ uri: String?, _ localConnection: String?) -> Void
}

/// One link: connects to its upstream and to its own node, declares what it needs upstream,
/// moves messages, and after any failure connects again after reconnect-delay (with up to 10 %
/// jitter, so links cut together do not come back together). A session is one connection
/// pair; a link lives through many.
final class FederationLink: Sendable {
    let spec: FederationLinkSpec
    let loop: any EventLoop
    let env: LinkEnvironment

    /// What the supervisor asks of a running session (read by its control loop).
    struct Control {
        var stopped = false
        /// Delete what the link made upstream when it stops (its policy no longer asks for it).
        var cleanup = false
        var restart = false
        /// Queue links: the local queue has consumers waiting.
        var demand = false
        /// Exchange links: the downstream exchange's bindings.
        var bindings: Set<FederationBindingKey> = []
    }
    let control = NIOLockedValueBox(Control())
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// The internal exchange suffix in use upstream ("A"/"B"; RabbitMQ starts from "A", so its
    /// first session uses "B").
    private let suffix = NIOLockedValueBox("A")

    init(spec: FederationLinkSpec, loop: any EventLoop, environment: LinkEnvironment, bindings: Set<FederationBindingKey>, demand: Bool) {
        self.spec = spec
        self.loop = loop
        self.env = environment
        control.withLockedValue {
            $0.bindings = bindings
            $0.demand = demand
        }
    }

    func start() {
        task.withLockedValue { $0 = Task { await self.run() } }
    }

    func stop(cleanup: Bool) {
        control.withLockedValue {
            $0.stopped = true
            $0.cleanup = cleanup
        }
    }

    func restart() { control.withLockedValue { $0.restart = true } }

    var isStopped: Bool { control.withLockedValue { $0.stopped } }

    private func run() async {
        var logged: String?
        while !isStopped {
            env.report(.starting, nil, nil, nil)
            do {
                try await session()
                logged = nil
            } catch {
                if isStopped { break }
                let text = Self.describe(error)
                env.report(.error, text, nil, nil)
                // Said once per distinct failure, not at every retry.
                if logged != text {
                    env.logger.warning(
                        "federation link failed; it tries again after reconnect-delay",
                        metadata: [
                            "link": "\(spec.id)", "vhost": "\(spec.vhost)", "\(spec.kind.rawValue)": "\(spec.name)", "upstream": "\(spec.upstream.name)",
                            "error": "\(text)", "reconnect-delay": "\(spec.upstream.reconnectDelay)s",
                        ])
                    logged = text
                }
            }
            control.withLockedValue { $0.restart = false }
            let delay = spec.upstream.reconnectDelay * Double.random(in: 1.0...1.1)
            let until = ContinuousClock.now + .milliseconds(Int64(delay * 1000))
            while !isStopped && ContinuousClock.now < until && !control.withLockedValue({ $0.restart }) {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        env.report(.starting, nil, nil, nil)
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? AMQPClientError { return e.description }
        if let e = error as? UpstreamURI.Problem { return e.description }
        if let e = error as? SessionEnded { return e.reason }
        return "\(error)"
    }

    /// What went wrong with a socket, in a few words (NIO's errors say it at length).
    static func socketProblem(_ error: any Error) -> String {
        let text = "\(error)"
        for (needle, said) in [
            ("Connection refused", "connection refused"), ("timed out", "timed out"), ("No route to host", "no route to host"),
            ("Network is unreachable", "network unreachable"), ("Name or service not known", "unknown host"),
            ("certificate", "TLS: \(text)"), ("handshake", "TLS: \(text)"),
        ] where text.contains(needle) {
            return said
        }
        return text
    }

    struct SessionEnded: Error {
        let reason: String
    }

    // MARK: a session

    private func session() async throws {
        let uri = spec.upstream.uris.randomElement()!
        let shown = Federation.redacted(uri: uri)
        let name = connectionName
        let upstreamConfig = try UpstreamURI.configuration(uri, connectionName: name)
        var localConfig = AMQPClientConfiguration(host: "127.0.0.1", port: env.localPort, virtualHost: spec.vhost, heartbeat: 0, connectionName: name)
        localConfig.mechanism = SASL.internalMechanism
        localConfig.saslResponse = env.secret
        localConfig.handshakeTimeoutSeconds = 30

        let up: AMQPClientConnection
        do {
            up = try await AMQPClientConnection.connect(upstreamConfig, eventLoopGroup: loop)
        } catch let e as AMQPClientError {
            if case .transportFailed(let why) = e, upstreamConfig.tls != nil {
                throw SessionEnded(reason: "upstream \(shown): TLS connection failed: \(why)")
            }
            throw SessionEnded(reason: "upstream \(shown): \(e.description)")
        } catch {
            throw SessionEnded(reason: "cannot connect to \(upstreamConfig.host):\(upstreamConfig.port): \(Self.socketProblem(error))")
        }
        let local: AMQPClientConnection
        do {
            local = try await AMQPClientConnection.connect(localConfig, eventLoopGroup: loop)
        } catch {
            try? await up.close()
            throw SessionEnded(reason: "cannot connect to this node's own AMQP listener on 127.0.0.1:\(env.localPort): \(Self.socketProblem(error))")
        }
        do {
            try await run(up: up, local: local, uri: uri, shown: shown, upstreamVhost: upstreamConfig.virtualHost)
        } catch {
            try? await local.close()
            try? await up.close()
            throw error
        }
        try? await local.close()
        try? await up.close()
    }

    private func run(up: AMQPClientConnection, local: AMQPClientConnection, uri: String, shown: String, upstreamVhost: String) async throws {
        let u = spec.upstream
        var ch = try await up.openChannel()
        let lch = try await local.openChannel()
        if u.ackMode == .onConfirm { try await lch.confirmSelect() }
        let upstreamCluster = up.serverProperties["cluster_name"]?.stringValue ?? upstreamVhost
        let target = spec.upstreamName
        let downstreamVhost = spec.vhost
        let cluster = env.clusterName
        let maxHops = u.maxHops

        // What the link consumes upstream, declared as RabbitMQ's plugin declares it.
        let queue: String
        var internalExchange = ""
        var propagated: Set<FederationBindingKey> = []
        switch spec.kind {
        case .exchange:
            ch = try await ensureUpstreamExchange(up, ch)
            queue = Federation.upstreamQueueName(exchange: target, downstreamCluster: cluster)
            try await ch.queueDeclare(queue, durable: true, arguments: Federation.upstreamQueueArguments(u))
            // The suffix not in use upstream: what exists there says which one is (another node
            // may have run this link until now); this process's memory decides otherwise.
            let existsA = await exists(up, Federation.internalExchangeName(exchange: target, downstreamCluster: cluster, suffix: "A"))
            let existsB = await exists(up, Federation.internalExchangeName(exchange: target, downstreamCluster: cluster, suffix: "B"))
            let remembered = suffix.withLockedValue { $0 }
            let old = existsA != existsB ? (existsA ? "A" : "B") : remembered
            let new = old == "A" ? "B" : "A"
            internalExchange = Federation.internalExchangeName(exchange: target, downstreamCluster: cluster, suffix: new)
            // A fresh internal exchange each session: bindings that changed while the link was
            // down are replaced whole, then the old one goes.
            try await ch.exchangeDelete(internalExchange)
            try await ch.exchangeDeclare(
                internalExchange, type: FederationUpstreamRouter.typeName, durable: true, autoDelete: true, internal: true,
                arguments: Federation.internalExchangeArguments(downstreamCluster: cluster, downstreamVhost: downstreamVhost, maxHops: maxHops))
            try await ch.queueBind(queue, exchange: internalExchange)
            let wanted = control.withLockedValue { $0.bindings }
            for b in wanted { try await bind(ch, b, internalExchange: internalExchange, suffix: new) }
            propagated = wanted
            suffix.withLockedValue { $0 = new }
            try await ch.exchangeDelete(Federation.internalExchangeName(exchange: target, downstreamCluster: cluster, suffix: old))
        case .queue:
            queue = target
            ch = try await ensureUpstreamQueue(up, ch)
        }

        try await ch.basicQos(prefetchCount: UInt16(u.prefetchCount))
        let kind = spec.kind
        let upstreamChannel = ch
        let localName = spec.name
        let pipe = try await loop.submit {
            NIOLoopBound(
                LinkPipe(
                    upstream: upstreamChannel.onEventLoop, local: lch.onEventLoop, upstreamSettings: u, exchange: kind == .exchange ? localName : "",
                    routingKey: kind == .queue ? localName : nil,
                    rewrite: { d in
                        switch kind {
                        case .exchange:
                            guard
                                Federation.shouldForward(
                                    headers: d.properties.headers, maxHops: maxHops, downstreamCluster: cluster, downstreamVhost: downstreamVhost)
                            else { return nil }
                            return Federation.exchangeLinkHeaders(
                                d.properties.headers, uri: uri, exchange: target, redelivered: d.redelivered, upstreamCluster: upstreamCluster,
                                upstreamVhost: upstreamVhost)
                        case .queue:
                            return Federation.queueLinkHeaders(
                                d.properties.headers, uri: uri, queue: target, redelivered: d.redelivered, exchange: d.exchange, routingKey: d.routingKey)
                        }
                    }), eventLoop: self.loop)
        }.get()
        if u.ackMode == .onConfirm {
            try await lch.setConfirmListener { tag, multiple, ack in pipe.value.confirmed(tag: tag, multiple: multiple, ack: ack) }
        }
        let cancelled = NIOLockedValueBox(false)
        try await ch.setCancelListener { _ in cancelled.withLockedValue { $0 = true } }
        let noAck = u.ackMode == .noAck

        var consumerTag: String?
        func consume() async throws {
            var args = FieldTable()
            // A queue link takes messages only when the upstream's own consumers leave them.
            if kind == .queue { args["x-priority"] = .int64(-1) }
            consumerTag = try await ch.basicConsume(
                queue: queue, consumerTag: kind == .queue ? spec.consumerTag : "", noAck: noAck, arguments: args,
                onDelivery: { d in pipe.value.deliver(d) })
        }
        if kind == .exchange { try await consume() }
        env.report(.running, nil, shown, connectionName)
        env.logger.info(
            "federation link running",
            metadata: ["link": "\(spec.id)", "vhost": "\(spec.vhost)", "\(kind.rawValue)": "\(spec.name)", "upstream": "\(u.name)", "uri": "\(shown)"])

        // The control loop: bindings and demand from the supervisor, the connections' health.
        while true {
            let c = control.withLockedValue { $0 }
            if c.stopped {
                if c.cleanup && !u.cleanupNever && kind == .exchange {
                    if let tag = consumerTag { _ = try? await ch.basicCancel(tag) }
                    try? await ch.exchangeDelete(internalExchange)
                    _ = try? await ch.queueDelete(queue)
                }
                return
            }
            if c.restart { throw SessionEnded(reason: "restarted by an operator") }
            if let e = await up.closeReason() { throw SessionEnded(reason: "upstream connection closed: \(Self.describe(e))") }
            if let e = await local.closeReason() { throw SessionEnded(reason: "local connection closed: \(Self.describe(e))") }
            if let e = await ch.closeReason() { throw SessionEnded(reason: "upstream channel closed: \(Self.describe(e))") }
            if let e = await lch.closeReason() { throw SessionEnded(reason: "local channel closed: \(Self.describe(e))") }
            if cancelled.withLockedValue({ $0 }) { throw SessionEnded(reason: "the upstream cancelled the link's consumer on \(queue)") }
            switch kind {
            case .exchange:
                if c.bindings != propagated {
                    let s = suffix.withLockedValue { $0 }
                    for b in c.bindings.subtracting(propagated) { try await bind(ch, b, internalExchange: internalExchange, suffix: s) }
                    for b in propagated.subtracting(c.bindings) { try await unbind(ch, b, internalExchange: internalExchange, suffix: s) }
                    propagated = c.bindings
                }
            case .queue:
                if c.demand, consumerTag == nil {
                    try await consume()
                } else if !c.demand, let tag = consumerTag {
                    try await ch.basicCancel(tag)
                    consumerTag = nil
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// What both of a link's connections are called (RabbitMQ's name for them).
    private var connectionName: String { "Federation link (upstream: \(spec.upstream.name), policy: \(spec.policy))" }

    /// The upstream exchange: used as it is when it exists; otherwise declared like the
    /// downstream one.
    private func ensureUpstreamExchange(_ up: AMQPClientConnection, _ ch: AMQPClientChannel) async throws -> AMQPClientChannel {
        do {
            try await ch.exchangeDeclare(spec.upstreamName, type: spec.type, passive: true)
            return ch
        } catch let e as AMQPClientError where e.replyCode == 404 {
            let fresh = try await up.openChannel()
            try await fresh.exchangeDeclare(
                spec.upstreamName, type: spec.type, durable: spec.durable, autoDelete: spec.autoDelete, internal: spec.internal, arguments: spec.arguments)
            return fresh
        }
    }

    /// The upstream queue of a queue link: used as it is when it exists; otherwise declared
    /// like the downstream one.
    private func ensureUpstreamQueue(_ up: AMQPClientConnection, _ ch: AMQPClientChannel) async throws -> AMQPClientChannel {
        do {
            try await ch.queueDeclare(spec.upstreamName, passive: true)
            return ch
        } catch let e as AMQPClientError where e.replyCode == 404 {
            let fresh = try await up.openChannel()
            try await fresh.queueDeclare(spec.upstreamName, durable: spec.durable, autoDelete: spec.autoDelete, arguments: spec.arguments)
            return fresh
        }
    }

    /// Whether an exchange exists upstream (a passive declare on a channel of its own, since a
    /// 404 closes the channel).
    private func exists(_ up: AMQPClientConnection, _ exchange: String) async -> Bool {
        guard let ch = try? await up.openChannel() else { return false }
        do {
            try await ch.exchangeDeclare(exchange, type: FederationUpstreamRouter.typeName, passive: true)
            try? await ch.close()
            return true
        } catch {
            return false
        }
    }

    private func bind(_ ch: AMQPClientChannel, _ b: FederationBindingKey, internalExchange: String, suffix: String) async throws {
        try await rebind(ch, b, internalExchange: internalExchange, suffix: suffix, add: true)
    }

    private func unbind(_ ch: AMQPClientChannel, _ b: FederationBindingKey, internalExchange: String, suffix: String) async throws {
        try await rebind(ch, b, internalExchange: internalExchange, suffix: suffix, add: false)
    }

    /// A downstream binding made (or taken off) upstream, from the upstream exchange to the
    /// internal one, with its `x-bound-from` (none when it has no hops left).
    private func rebind(_ ch: AMQPClientChannel, _ b: FederationBindingKey, internalExchange: String, suffix: String, add: Bool) async throws {
        guard
            let args = Federation.upstreamBindingArguments(
                b.arguments, downstreamCluster: env.clusterName, downstreamVhost: spec.vhost, exchange: spec.name, suffix: suffix, maxHops: spec.upstream.maxHops)
        else { return }
        if add {
            try await ch.exchangeBind(destination: internalExchange, source: spec.upstreamName, routingKey: b.routingKey, arguments: args)
        } else {
            try await ch.exchangeUnbind(destination: internalExchange, source: spec.upstreamName, routingKey: b.routingKey, arguments: args)
        }
    }
}
