import AMQPProtocol
import NIOCore
import Testing

@testable import WarrenCore

extension TestClient {
    /// basic.get with no-ack; the body and properties, or nil.
    func get(_ queue: String) -> AMQPCommand? {
        send(channel: 1, .basicGet(BasicGet(queue: queue, noAck: true)))
        return commands(channel: 1).first { if case .basicGetOk = $0.method { return true } else { return false } }
    }

    func declare(_ queue: String, _ args: FieldTable = [:]) {
        send(channel: 1, .queueDeclare(QueueDeclare(queue: queue, arguments: args)))
        _ = methods(channel: 1)
    }
}

extension AMQPCommand {
    var text: String { String(buffer: body) }
    var headers: FieldTable { header?.properties.headers ?? [:] }
    /// The x-death entries, as tables.
    var deaths: [FieldTable] {
        guard case .array(let a)? = headers["x-death"] else { return [] }
        return a.compactMap(\.tableValue)
    }
}

@Suite("Message lifecycle")
struct LifecycleTests {
    /// A client with exchange `dlx` (fanout) bound to queue `dead`.
    func withDLX(_ clock: ManualClock = ManualClock()) -> (Broker, TestClient, ManualClock) {
        let broker = Broker(clock: clock)
        let c = TestClient.ready(broker)
        c.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "dlx", type: "fanout")))
        c.declare("dead")
        c.send(channel: 1, .queueBind(QueueBind(queue: "dead", exchange: "dlx")))
        _ = c.methods()
        return (broker, c, clock)
    }

    @Test("queue TTL: expired messages are dead-lettered, never delivered")
    func queueTTL() throws {
        let (broker, c, clock) = withDLX()
        c.declare("src", ["x-message-ttl": .int32(50), "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "newkey"])
        c.publish(routingKey: "src", body: "old")
        clock.now += 49
        #expect(broker.vhosts["/"]!.queues["src"]!.messageCount == 1)
        clock.now += 1
        #expect(c.get("src") == nil, "an expired message is never delivered")
        let dead = try #require(c.get("dead"))
        #expect(dead.text == "old")
        guard case .basicGetOk(let ok) = dead.method else { return }
        #expect(ok.routingKey == "newkey" && ok.exchange == "dlx")
        let death = try #require(dead.deaths.first)
        #expect(death["reason"]?.stringValue == "expired" && death["queue"]?.stringValue == "src")
        #expect(death["routing-keys"] == .array([.string("src")]))
        #expect(death["count"] == .int64(1) && death["time"] == .timestamp(UInt64(clock.now / 1000)))
        #expect(dead.headers["x-first-death-reason"]?.stringValue == "expired")
    }

    @Test("the tick expires heads without anyone asking; per-message expiration too")
    func tick() throws {
        let (broker, c, clock) = withDLX()
        c.declare("src", ["x-dead-letter-exchange": "dlx"])
        c.publish(routingKey: "src", body: "short", properties: BasicProperties(expiration: "50"))
        clock.now += 60
        broker.tick()
        #expect(broker.vhosts["/"]!.queues["src"]!.messageCount == 0)
        let dead = try #require(c.get("dead"))
        #expect(dead.deaths.first?["original-expiration"]?.stringValue == "50")
        #expect(dead.header?.properties.expiration == nil, "expiration moves into x-death")
    }

    @Test("TTL 0: delivered only if a consumer can take it at once")
    func ttlZero() {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.declare("zero", ["x-message-ttl": .int32(0)])
        c.publish(routingKey: "zero", body: "gone")
        #expect(broker.vhosts["/"]!.queues["zero"]!.messageCount == 0)
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "zero", consumerTag: "t", noAck: true)))
        _ = c.methods()
        c.publish(routingKey: "zero", body: "taken")
        #expect(c.commands(channel: 1).map(\.text) == ["taken"])
    }

    @Test("a message requeued after its TTL ran out is dead-lettered as expired")
    func ttlAndRequeue() throws {
        let (_, c, clock) = withDLX()
        c.declare("src", ["x-message-ttl": .int32(100), "x-dead-letter-exchange": "dlx"])
        c.publish(routingKey: "src", body: "rq")
        c.send(channel: 1, .basicGet(BasicGet(queue: "src")))
        _ = c.commands()
        clock.now += 200
        c.send(channel: 1, .basicNack(BasicNack(deliveryTag: 1, requeue: true)))
        #expect(c.get("src") == nil)
        #expect(try #require(c.get("dead")).deaths.first?["reason"]?.stringValue == "expired")
    }

    @Test("rejection dead-letters with RabbitMQ's x-death; a second death increments the count")
    func rejected() throws {
        let (_, c, _) = withDLX()
        c.declare("src", ["x-dead-letter-exchange": "dlx"])
        c.send(channel: 1, .queueBind(QueueBind(queue: "src", exchange: "amq.direct", routingKey: "k1")))
        c.publish(exchange: "amq.direct", routingKey: "k1", body: "r", properties: BasicProperties(headers: ["h": 1, "CC": .array([.string("cc1")])], deliveryMode: 2))
        c.send(channel: 1, .basicGet(BasicGet(queue: "src")))
        _ = c.commands()
        c.send(channel: 1, .basicReject(BasicReject(deliveryTag: 1, requeue: false)))
        let dead = try #require(c.get("dead"))
        #expect(dead.headers["h"] == .int64(1))
        #expect(dead.header?.properties.deliveryMode == 2)
        let d = try #require(dead.deaths.first)
        #expect(d["reason"]?.stringValue == "rejected" && d["exchange"]?.stringValue == "amq.direct")
        #expect(d["routing-keys"] == .array([.string("k1"), .string("cc1")]))
        #expect(dead.headers["x-first-death-exchange"]?.stringValue == "amq.direct")

        // Round two: republish the dead message and reject it again.
        c.publish(routingKey: "src", body: "r", properties: dead.header!.properties)
        c.send(channel: 1, .basicGet(BasicGet(queue: "src")))
        guard case .basicGetOk(let ok)? = c.commands(channel: 1).first?.method else {
            Issue.record("no get-ok")
            return
        }
        c.send(channel: 1, .basicReject(BasicReject(deliveryTag: ok.deliveryTag, requeue: false)))
        let again = try #require(c.get("dead"))
        #expect(again.deaths.count == 1)
        #expect(again.deaths.first?["count"] == .int64(2))
    }

    @Test("automatic dead-letter cycles are dropped; a rejection breaks the cycle")
    func cycles() {
        let (broker, c, clock) = withDLX()
        c.declare("cyc", ["x-dead-letter-exchange": "", "x-message-ttl": .int32(30)])
        c.publish(routingKey: "cyc", body: "cycle")
        clock.now += 40
        broker.tick()
        #expect(broker.vhosts["/"]!.queues["cyc"]!.messageCount == 0)
        c.declare("cyc2", ["x-dead-letter-exchange": ""])
        c.publish(routingKey: "cyc2", body: "cycle2")
        c.send(channel: 1, .basicGet(BasicGet(queue: "cyc2")))
        _ = c.commands()
        c.send(channel: 1, .basicReject(BasicReject(deliveryTag: 1, requeue: false)))
        #expect(c.get("cyc2")?.deaths.first?["reason"]?.stringValue == "rejected")
    }

    @Test("x-max-length drop-head dead-letters the oldest as maxlen")
    func dropHead() throws {
        let (_, c, _) = withDLX()
        c.declare("src", ["x-max-length": .int32(1), "x-dead-letter-exchange": "dlx"])
        c.publish(routingKey: "src", body: "first")
        c.publish(routingKey: "src", body: "second")
        #expect(try #require(c.get("dead")).deaths.first?["reason"]?.stringValue == "maxlen")
        #expect(c.get("src")?.text == "second")
    }

    @Test("reject-publish nacks under confirms; reject-publish-dlx also dead-letters")
    func rejectPublish() throws {
        let (_, c, _) = withDLX()
        c.send(channel: 1, .confirmSelect(ConfirmSelect()))
        c.declare("rp", ["x-max-length": .int32(1), "x-overflow": "reject-publish"])
        c.publish(routingKey: "rp", body: "1")
        c.publish(routingKey: "rp", body: "2")
        // RabbitMQ 3.10.8 answers a lone refused publish with nack(multiple, requeue=true).
        #expect(c.methods(channel: 1) == [.basicAck(BasicAck(deliveryTag: 1)), .basicNack(BasicNack(deliveryTag: 2, multiple: true, requeue: true))])
        c.declare("rpd", ["x-max-length-bytes": .int32(1), "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": "dlx"])
        c.publish(routingKey: "rpd", body: "1")
        c.publish(routingKey: "rpd", body: "2")
        #expect(c.methods(channel: 1) == [.basicAck(BasicAck(deliveryTag: 3)), .basicNack(BasicNack(deliveryTag: 4, multiple: true, requeue: true))])
        #expect(try #require(c.get("dead")).text == "2")
    }

    @Test("priority queues deliver highest first, FIFO within a level, over-max counted as max")
    func priorities() {
        let c = TestClient.ready(Broker())
        c.declare("prio", ["x-max-priority": .int32(5)])
        for p in [1, 5, 3, 9, 0] as [UInt8] { c.publish(routingKey: "prio", body: "p\(p)", properties: BasicProperties(priority: p)) }
        c.send(channel: 1, .basicQos(BasicQos(prefetchCount: 2)))
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "prio", consumerTag: "t")))
        let deliveries = { c.commands(channel: 1).filter { if case .basicDeliver = $0.method { return true } else { return false } }.map(\.text) }
        #expect(deliveries() == ["p5", "p9"])
        c.send(channel: 1, .basicAck(BasicAck(deliveryTag: 2, multiple: true)))
        #expect(deliveries() == ["p3", "p1"])
    }

    @Test("x-expires removes an unused queue")
    func queueExpiry() {
        let clock = ManualClock()
        let broker = Broker(clock: clock)
        let c = TestClient.ready(broker)
        c.declare("exp", ["x-expires": .int32(200)])
        clock.now += 150
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "exp", passive: true)))  // a use resets the clock
        clock.now += 150
        broker.tick()
        #expect(broker.vhosts["/"]!.queues["exp"] != nil)
        clock.now += 60
        broker.tick()
        #expect(broker.vhosts["/"]!.queues["exp"] == nil)
    }
}

@Suite("Routing and consuming extensions")
struct ExtensionTests {
    @Test("single active consumer: the first gets everything; the next takes over")
    func singleActiveConsumer() {
        let broker = Broker()
        let a = TestClient.ready(broker)
        let b = TestClient.ready(broker)
        a.declare("sac", ["x-single-active-consumer": true])
        a.send(channel: 1, .basicConsume(BasicConsume(queue: "sac", consumerTag: "a", noAck: true)))
        b.send(channel: 1, .basicConsume(BasicConsume(queue: "sac", consumerTag: "b", noAck: true)))
        _ = a.methods()
        _ = b.methods()
        for i in 0..<4 { a.publish(routingKey: "sac", body: "\(i)") }
        #expect(a.commands(channel: 1).map(\.text) == ["0", "1", "2", "3"])
        #expect(b.commands(channel: 1).isEmpty)
        a.connection.transportClosed()
        a.publish(routingKey: "sac", body: "4")
        b.publish(routingKey: "sac", body: "5")
        #expect(b.commands(channel: 1).map(\.text) == ["5"])
    }

    @Test("consumer priorities: higher x-priority consumers are served first")
    func consumerPriorities() {
        let broker = Broker()
        let hi = TestClient.ready(broker)
        let lo = TestClient.ready(broker)
        hi.declare("cp")
        hi.send(channel: 1, .basicQos(BasicQos(prefetchCount: 2)))
        hi.send(channel: 1, .basicConsume(BasicConsume(queue: "cp", consumerTag: "hi", arguments: ["x-priority": .int32(10)])))
        lo.send(channel: 1, .basicConsume(BasicConsume(queue: "cp", consumerTag: "lo", noAck: true)))
        _ = hi.methods()
        _ = lo.methods()
        for i in 0..<6 { hi.publish(routingKey: "cp", body: "\(i)") }
        #expect(hi.commands(channel: 1).map(\.text) == ["0", "1"])
        #expect(lo.commands(channel: 1).map(\.text) == ["2", "3", "4", "5"])
    }

    @Test("direct reply-to: rewrite, route to the requester, errors as RabbitMQ")
    func directReplyTo() throws {
        let broker = Broker()
        let client = TestClient.ready(broker)
        let server = TestClient.ready(broker)
        client.publish(routingKey: "rpc", body: "x", properties: BasicProperties(replyTo: "amq.rabbitmq.reply-to"))
        #expect(client.methods(channel: 1).last?.closeText == "PRECONDITION_FAILED - fast reply consumer does not exist")
        client.send(channel: 1, .channelCloseOk(ChannelCloseOk()))
        client.openChannel()
        client.send(channel: 1, .basicConsume(BasicConsume(queue: "amq.rabbitmq.reply-to", consumerTag: "r", noAck: false)))
        #expect(client.methods(channel: 1).last?.closeText == "PRECONDITION_FAILED - reply consumer cannot acknowledge")
        client.send(channel: 1, .channelCloseOk(ChannelCloseOk()))
        client.openChannel()
        client.send(channel: 1, .basicConsume(BasicConsume(queue: "amq.rabbitmq.reply-to", consumerTag: "r", noAck: true)))
        server.declare("rpc")
        _ = client.methods()
        client.publish(routingKey: "rpc", body: "request", properties: BasicProperties(correlationID: "c1", replyTo: "amq.rabbitmq.reply-to"))
        let request = try #require(server.get("rpc"))
        let replyTo = try #require(request.header?.properties.replyTo)
        #expect(replyTo.hasPrefix("amq.rabbitmq.reply-to.") && replyTo.count > 30)
        server.publish(routingKey: replyTo, body: "response", properties: BasicProperties(correlationID: "c1"))
        let reply = try #require(client.commands(channel: 1).first)
        #expect(reply.text == "response")
        guard case .basicDeliver(let d) = reply.method else { return }
        #expect(d.consumerTag == "r" && d.routingKey == replyTo && d.exchange == "")
        server.publish(routingKey: "amq.rabbitmq.reply-to.bogus", body: "dropped")
        #expect(server.methods(channel: 1).isEmpty)
    }

    @Test("alternate exchanges take what their exchange cannot route")
    func alternateExchange() throws {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "ae", type: "fanout")))
        c.declare("aeq")
        c.send(channel: 1, .queueBind(QueueBind(queue: "aeq", exchange: "ae")))
        c.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "withae", type: "direct", arguments: ["alternate-exchange": "ae"])))
        _ = c.methods()
        c.publish(exchange: "withae", routingKey: "nomatch", body: "to-ae", mandatory: true)
        let got = try #require(c.get("aeq"))
        guard case .basicGetOk(let ok) = got.method else { return }
        #expect(ok.exchange == "withae" && ok.routingKey == "nomatch")
        #expect(c.methods(channel: 1).isEmpty, "routed through the alternate: no basic.return")
    }

    @Test("CC and BCC route to more queues; BCC never reaches a consumer")
    func ccBcc() throws {
        let c = TestClient.ready(Broker())
        for q in ["ccA", "ccB", "ccC"] { c.declare(q) }
        c.publish(routingKey: "ccA", body: "m", properties: BasicProperties(headers: ["CC": .array([.string("ccB")]), "BCC": .array([.string("ccC")])]))
        for q in ["ccA", "ccB", "ccC"] {
            let m = try #require(c.get(q), "\(q) got it")
            #expect(m.headers["BCC"] == nil && m.headers["CC"] == .array([.string("ccB")]))
        }
    }

    @Test("resource alarms block publishers (connection.blocked) and release them")
    func alarms() {
        let broker = Broker()
        let pub = TestClient(broker)
        var b = ByteBuffer()
        b.writeAMQPProtocolHeader()
        pub.sendBytes(b)
        pub.send(channel: 0, .connectionStartOk(ConnectionStartOk(clientProperties: ["capabilities": .table(["connection.blocked": true])], response: Array("\0guest\0guest".utf8))))
        pub.send(channel: 0, .connectionTuneOk(ConnectionTuneOk(channelMax: 0, frameMax: 131_072, heartbeat: 0)))
        pub.send(channel: 0, .connectionOpen(ConnectionOpen()))
        pub.openChannel()
        let consumer = TestClient.ready(broker)
        pub.publish(routingKey: "nowhere", body: "x")
        broker.setAlarm("memory", active: true)
        #expect(pub.methods(channel: 0).last == .connectionBlocked(ConnectionBlocked(reason: "low on resources: memory")))
        #expect(!pub.transport.reading)
        #expect(consumer.transport.reading, "a connection that never published goes on")
        broker.setAlarm("memory", active: false)
        #expect(pub.methods(channel: 0).last == .connectionUnblocked(ConnectionUnblocked()))
        #expect(pub.transport.reading)
    }
}
