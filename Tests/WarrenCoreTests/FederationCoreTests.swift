import AMQPProtocol
import NIOCore
import Testing

@testable import WarrenCore

/// The pure parts of federation: which links the policies and parameters ask for, the names,
/// arguments and headers RabbitMQ's plugin uses, loop detection, and the
/// `x-federation-upstream` exchange type. The links themselves are driven by
/// Tests/python/test_federation*.py.
@Suite("Federation core")
struct FederationCoreTests {
    @Test("links: one per (exchange or queue, upstream); a set's entry overrides the upstream; missing upstreams give none")
    func linkPlan() throws {
        let broker = Broker()
        try broker.setParameter(vhost: "/", component: "federation-upstream", name: "u1", value: .object(["uri": .string("amqp://a:b@h1"), "max-hops": .int(2)]))
        try broker.setParameter(vhost: "/", component: "federation-upstream", name: "u2", value: .object(["uri": .array([.string("amqp://h2"), .string("amqp://h3")])]))
        try broker.setParameter(
            vhost: "/", component: "federation-upstream-set", name: "s",
            value: .array([.object(["upstream": .string("u2"), "exchange": .string("other"), "prefetch-count": .int(10)]), .object(["upstream": .string("nope")])]))
        try broker.setPolicy(Policy(name: "all", vhost: "/", pattern: "^all\\.", definition: ["federation-upstream-set": .string("all")]))
        try broker.setPolicy(Policy(name: "set", vhost: "/", pattern: "^set\\.", applyTo: .exchanges, definition: ["federation-upstream-set": .string("s")]))
        try broker.setPolicy(Policy(name: "one", vhost: "/", pattern: "^one\\.", applyTo: .queues, definition: ["federation-upstream": .string("u1")]))
        let c = TestClient.ready(broker)
        c.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "all.x", type: "topic", durable: true)))
        c.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "set.x", type: "direct")))
        c.declare("one.q")
        c.declare("all.q")
        let specs = broker.federationLinkSpecs()
        let described = specs.map { "\($0.kind.rawValue) \($0.name) <- \($0.upstream.name) \($0.upstreamName)" }
        #expect(described == [
            "exchange all.x <- u1 all.x", "exchange all.x <- u2 all.x", "exchange set.x <- u2 other", "queue all.q <- u1 all.q",
            "queue all.q <- u2 all.q", "queue one.q <- u1 one.q",
        ])
        let setLink = specs.first { $0.name == "set.x" }!
        #expect(setLink.upstream.prefetchCount == 10 && setLink.upstream.uris == ["amqp://h2", "amqp://h3"] && setLink.policy == "set")
        #expect(specs.first { $0.name == "all.x" }!.upstream.maxHops == 2)
        #expect(specs.first { $0.name == "all.x" }!.type == "topic")
        // Stable ids, eight hex digits, distinct per link.
        #expect(Set(specs.map(\.id)).count == specs.count && specs.allSatisfy { $0.id.count == 8 })
        #expect(broker.federationLinkSpecs().map(\.id) == specs.map(\.id))
        // The internal exchanges links declare are never federated themselves.
        c.send(
            channel: 1,
            .exchangeDeclare(
                ExchangeDeclare(exchange: "all.internal", type: "x-federation-upstream", durable: true, autoDelete: true, internal: true, arguments: [:])))
        #expect(broker.federationLinkSpecs().count == specs.count)
    }

    @Test("defaults are RabbitMQ's")
    func defaults() {
        let u = FederationUpstream(name: "u", value: .object(["uri": .string("amqp://x")]))!
        #expect(u.prefetchCount == 1000 && u.reconnectDelay == 5 && u.ackMode == .onConfirm && u.maxHops == 1 && !u.trustUserId)
        #expect(u.expires == nil && u.messageTTL == nil && !u.cleanupNever)
    }

    @Test("names and arguments declared upstream, as RabbitMQ 3.10.8's plugin declares them")
    func upstreamNames() {
        #expect(Federation.upstreamQueueName(exchange: "fed.x", downstreamCluster: "rabbit@vm") == "federation: fed.x -> rabbit@vm")
        #expect(Federation.internalExchangeName(exchange: "fed.x", downstreamCluster: "rabbit@vm", suffix: "B") == "federation: fed.x -> rabbit@vm B")
        var u = FederationUpstream(name: "u", uris: ["amqp://x"])
        u.expires = 3_600_000
        #expect(Federation.upstreamQueueArguments(u) == ["x-expires": .int64(3_600_000), "x-internal-purpose": .string("federation")])
        let args = Federation.internalExchangeArguments(downstreamCluster: "d", downstreamVhost: "/", maxHops: 2)
        #expect(args["x-downstream-name"] == .string("d") && args["x-downstream-vhost"] == .string("/") && args["x-max-hops"] == .int64(2))
        // A binding propagated: x-bound-from with this hop first, hops counting down.
        let first = Federation.upstreamBindingArguments(["k": .int64(1)], downstreamCluster: "d", downstreamVhost: "/", exchange: "fed.x", suffix: "B", maxHops: 2)!
        #expect(first["k"] == .int64(1))
        let from = first[Federation.boundFromArgument]
        #expect(
            from == .array([.table(["cluster-name": .string("d"), "exchange": .string("/:fed.x B"), "hops": .int64(2), "vhost": .string("/")])]))
        let second = Federation.upstreamBindingArguments(first, downstreamCluster: "m", downstreamVhost: "/", exchange: "fed.x", suffix: "A", maxHops: 5)!
        guard case .array(let list)? = second[Federation.boundFromArgument] else { Issue.record("no x-bound-from"); return }
        #expect(list.count == 2 && list[0].tableValue?["hops"] == .int64(1) && list[0].tableValue?["cluster-name"] == .string("m"))
        #expect(Federation.upstreamBindingArguments(second, downstreamCluster: "n", downstreamVhost: "/", exchange: "fed.x", suffix: "A", maxHops: 5) == nil,
                "no hops left: not propagated further")
    }

    @Test("x-received-from: exchange links prepend their hop; queue links count visits and keep the original exchange and key")
    func receivedFrom() {
        let h1 = Federation.exchangeLinkHeaders(
            ["app": "x"], uri: "amqp://user:secret@up:5672/v?heartbeat=5", exchange: "fed.x", redelivered: false, upstreamCluster: "up@h", upstreamVhost: "v")
        #expect(h1["app"] == .string("x"))
        let entry: FieldTable = [
            "uri": .string("amqp://up:5672/v?heartbeat=5"), "exchange": .string("fed.x"), "redelivered": .boolean(false), "cluster-name": .string("up@h"),
            "vhost": .string("v"),
        ]
        #expect(h1[Federation.receivedFromHeader] == .array([.table(entry)]))
        let h2 = Federation.exchangeLinkHeaders(h1, uri: "amqp://up2", exchange: "fed.x", redelivered: true, upstreamCluster: "up2@h", upstreamVhost: "/")
        guard case .array(let l2)? = h2[Federation.receivedFromHeader] else { Issue.record("no header"); return }
        #expect(l2.count == 2 && l2[0].tableValue?["cluster-name"] == .string("up2@h") && l2[1] == .table(entry))

        let q1 = Federation.queueLinkHeaders(nil, uri: "amqp://u:p@a", queue: "q", redelivered: false, exchange: "ex", routingKey: "rk")
        #expect(q1["x-original-exchange"] == .string("ex") && q1["x-original-routing-key"] == .string("rk"))
        let back = Federation.queueLinkHeaders(
            Federation.queueLinkHeaders(q1, uri: "amqp://b", queue: "q", redelivered: false, exchange: "", routingKey: "q"), uri: "amqp://a", queue: "q",
            redelivered: true, exchange: "", routingKey: "q")
        guard case .array(let l)? = back[Federation.receivedFromHeader] else { Issue.record("no header"); return }
        #expect(l.count == 2, "the earlier visit to amqp://a is replaced, not repeated")
        #expect(l[0].tableValue?["uri"] == .string("amqp://a") && l[0].tableValue?["visit-count"] == .int64(2))
        #expect(back["x-original-exchange"] == .string("ex"), "kept from the first hop")
    }

    @Test("credentials never leave a URI shown")
    func redaction() {
        #expect(Federation.redacted(uri: "amqp://user:pw@host:5672/%2f") == "amqp://host:5672/%2f")
        #expect(Federation.redacted(uri: "amqps://u:p%40ss@h?cacertfile=/x@y") == "amqps://h?cacertfile=/x@y")
        #expect(Federation.redacted(uri: "amqp://host") == "amqp://host")
    }

    @Test("loop detection: max-hops, and a downstream that has seen the message already")
    func shouldForward() {
        let seenByD: FieldTable = [Federation.receivedFromHeader: .array([.table(["cluster-name": .string("d"), "vhost": .string("/")])])]
        #expect(Federation.shouldForward(headers: nil, maxHops: 1, downstreamCluster: "d", downstreamVhost: "/"))
        #expect(!Federation.shouldForward(headers: seenByD, maxHops: 1, downstreamCluster: "e", downstreamVhost: "/"), "one hop used")
        #expect(Federation.shouldForward(headers: seenByD, maxHops: 2, downstreamCluster: "e", downstreamVhost: "/"))
        #expect(!Federation.shouldForward(headers: seenByD, maxHops: 5, downstreamCluster: "d", downstreamVhost: "/"), "it came from there")
        #expect(Federation.shouldForward(headers: seenByD, maxHops: 5, downstreamCluster: "d", downstreamVhost: "other"))
    }

    @Test("the x-federation-upstream exchange type routes like fanout, minus loops")
    func upstreamExchangeType() {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.declare("link.q")
        c.send(
            channel: 1,
            .exchangeDeclare(
                ExchangeDeclare(
                    exchange: "fx", type: "x-federation-upstream", durable: true, autoDelete: true, internal: false,
                    arguments: ["x-downstream-name": .string("d"), "x-downstream-vhost": .string("/"), "x-max-hops": .int32(2)])))
        c.send(channel: 1, .queueBind(QueueBind(queue: "link.q", exchange: "fx", routingKey: "")))
        let q = broker.vhosts["/"]!.queues["link.q"]!
        c.publish(exchange: "fx", routingKey: "any", body: "fresh")
        #expect(q.messageCount == 1)
        let fromD: FieldTable = [Federation.receivedFromHeader: .array([.table(["cluster-name": .string("d"), "vhost": .string("/")])])]
        c.publish(exchange: "fx", routingKey: "any", body: "loop", properties: BasicProperties(headers: fromD))
        #expect(q.messageCount == 1, "came from the downstream: dropped")
        let twoHops: FieldTable = [
            Federation.receivedFromHeader: .array([.table(["cluster-name": .string("a"), "vhost": .string("/")]), .table(["cluster-name": .string("b"), "vhost": .string("/")])])
        ]
        c.publish(exchange: "fx", routingKey: "any", body: "far", properties: BasicProperties(headers: twoHops))
        #expect(q.messageCount == 1, "max-hops reached: dropped")
    }

    @Test("the internal login: only this process's secret, only from loopback, and the name alone grants nothing")
    func internalLogin() throws {
        let broker = Broker()
        broker.internalLoginSecret = Array(repeating: 7, count: 32)
        func login(_ response: [UInt8], loopback: Bool = true) -> Bool {
            let c = TestClient(broker, peer: PeerInfo(address: loopback ? "127.0.0.1:1" : "10.0.0.1:1", isLoopback: loopback))
            var b = ByteBuffer()
            b.writeAMQPProtocolHeader()
            b.writeAMQPFrame(.method(channel: 0, .connectionStartOk(ConnectionStartOk(clientProperties: [:], mechanism: SASL.internalMechanism, response: response))))
            c.sendBytes(b)
            return c.methods(channel: 0).contains { if case .connectionTune = $0 { return true } else { return false } }
        }
        #expect(login(Array(repeating: 7, count: 32)))
        #expect(!login(Array(repeating: 8, count: 32)))
        #expect(!login(Array(repeating: 7, count: 32), loopback: false))
        #expect(broker.canAccess(vhost: "/", user: Broker.internalUserName))
        broker.putUser(User(name: Broker.internalUserName, password: "x"))
        #expect(!broker.canAccess(vhost: "/", user: Broker.internalUserName), "a user account of that name gets no bypass")
        broker.internalLoginSecret = nil
        #expect(!login(Array(repeating: 7, count: 32)))
    }
}
