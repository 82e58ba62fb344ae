import AMQPProtocol
import Logging
import NIOCore
import Testing

@testable import WarrenCore

@Suite("Unacked ledger and confirm tracker")
struct BookkeepingTests {
    func delivery(_ tag: UInt64, _ q: MessageQueue) -> Delivery {
        Delivery(tag: tag, entry: QueueEntry(message: Message(exchange: "", routingKey: "", properties: .empty, body: ByteBuffer()), redelivered: false, seq: tag, expiresAt: 0, priority: 0), queue: q, consumer: nil)
    }

    @Test("acks in order, out of order, multiple, and unknown tags")
    func ledger() throws {
        let v = liveDefaultVirtualHost()
        let (q, _) = try v.declareQueue(QueueDeclaration(vhost: v.name, name: "q", durable: false, node: v.broker.nodeName))
        var l = UnackedLedger()
        for t in [1, 2, 3, 5, 8] as [UInt64] { l.append(delivery(t, q)) }
        #expect(try l.take(tag: 3, multiple: false).map(\.tag) == [3])
        #expect(throws: AMQPError.preconditionFailed("unknown delivery tag 3")) { try l.take(tag: 3, multiple: false) }
        #expect(throws: AMQPError.preconditionFailed("unknown delivery tag 4")) { try l.take(tag: 4, multiple: true) }
        #expect(try l.take(tag: 5, multiple: true).map(\.tag) == [1, 2, 5])
        #expect(l.count == 1)
        l.restore([delivery(2, q)])
        #expect(try l.take(tag: 0, multiple: true).map(\.tag) == [2, 8])
        #expect(l.isEmpty)
    }

    static func drain(_ t: inout ConfirmTracker) -> [ConfirmTracker.Announcement] {
        var out: [ConfirmTracker.Announcement] = []
        t.drainAnnouncements { out.append($0) }
        return out
    }

    // The expected frames were recorded from RabbitMQ 3.10.8 with the same publishes in one
    // write (raw frames; Tests/python/test_compat_protocol.py checks them end to end).
    @Test("one settled publish is acked alone; several coalesce below the oldest unsettled")
    func confirmGranularity() {
        var t = ConfirmTracker()
        #expect((0..<6).map { _ in t.nextPublish() } == [1, 2, 3, 4, 5, 6])
        t.settle(1, .ack)
        #expect(Self.drain(&t) == [.ack(1, multiple: false)])
        // 2 and 4 settle while 3 waits (a store fsync): 2 under the cutoff as a multiple, 4 alone.
        t.settle(2, .ack)
        t.settle(4, .ack)
        #expect(Self.drain(&t) == [.ack(2, multiple: true), .ack(4, multiple: false)])
        t.settle(3, .ack)
        t.settle(5, .ack)
        t.settle(6, .ack)
        #expect(Self.drain(&t) == [.ack(6, multiple: true)])
        #expect(!t.hasPending)
    }

    @Test("routed, unroutable, routed: the unroutable one is acked at once, the rest after")
    func confirmUnroutableAtOnce() {
        var t = ConfirmTracker()
        _ = (0..<3).map { _ in t.nextPublish() }
        t.settle(1, .ack)
        #expect(t.settleAtOnce(2) == .ack(2, multiple: false))
        t.settle(3, .ack)
        // RabbitMQ: return, ack(2,false), ack(3,true).
        #expect(Self.drain(&t) == [.ack(3, multiple: true)])
        #expect(t.settleAtOnce(2) == nil)
    }

    @Test("nacks coalesce below the oldest unsettled or acked publish; acks come first")
    func confirmNacks() {
        var t = ConfirmTracker()
        _ = t.nextPublish()
        t.settle(1, .nack)
        #expect(Self.drain(&t) == [.nack(1, multiple: true)])
        // ok, refused, unroutable, refused (x-max-length 1, reject-publish):
        // RabbitMQ sends ack(4,false) at once, then ack(2,false), nack(3,false), nack(5,false).
        _ = (0..<4).map { _ in t.nextPublish() }
        t.settle(2, .ack)
        t.settle(3, .nack)
        #expect(t.settleAtOnce(4) == .ack(4, multiple: false))
        t.settle(5, .nack)
        #expect(Self.drain(&t) == [.ack(2, multiple: false), .nack(3, multiple: false), .nack(5, multiple: false)])
        #expect(!t.hasPending)
    }
}

@Suite("Queue arguments and SASL")
struct ArgumentTests {
    @Test("invalid arguments are refused with RabbitMQ's texts", arguments: [
        ("x-max-length", FieldValue.int64(-1), "{value_negative,-1}"),
        ("x-message-ttl", .string("abc"), "\"expected integer, got longstr\""),
        ("x-expires", .int32(0), "{value_zero,0}"),
        ("x-max-priority", .int32(300), "{max_value_exceeded,300}"),
        ("x-overflow", .string("bogus"), "invalid_overflow"),
        ("x-queue-mode", .string("bogus"), "\"unsupported queue mode 'bogus'\""),
        ("x-single-active-consumer", .string("yes"), "{unacceptable_type,longstr}"),
    ])
    func invalid(_ key: String, _ value: FieldValue, _ why: String) {
        #expect(throws: AMQPError.preconditionFailed("invalid arg '\(key)' for queue 'q' in vhost '/': \(why)")) {
            try QueueArguments.validate([key: value], queue: "q", vhost: "/")
        }
    }

    @Test("equivalence compares known arguments by value and ignores the rest")
    func equivalence() throws {
        try QueueArguments.assertEquivalent(current: ["x-max-length": .int32(5), "foo": 1], received: ["x-max-length": .int64(5), "foo": 2], resource: "queue 'q' in vhost '/'")
        #expect(throws: AMQPError.preconditionFailed("inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received none but current is the value '5' of type 'signedint'")) {
            try QueueArguments.assertEquivalent(current: ["x-max-length": .int32(5)], received: [:], resource: "queue 'q' in vhost '/'")
        }
    }

    @Test("PLAIN and AMQPLAIN responses parse; malformed ones do not")
    func sasl() {
        #expect(SASL.parse(mechanism: "PLAIN", response: Array("\0user\0pa\0ss".utf8)) == Credentials(username: "user", password: "pa\0ss"))
        #expect(SASL.parse(mechanism: "PLAIN", response: Array("nouser".utf8)) == nil)
        var t = ByteBuffer()
        t.amqpWriteFieldTable(["LOGIN": "u", "PASSWORD": "p"])
        #expect(SASL.parse(mechanism: "AMQPLAIN", response: Array(t.readableBytesView.dropFirst(4))) == Credentials(username: "u", password: "p"))
        #expect(SASL.parse(mechanism: "AMQPLAIN", response: [1, 2, 3]) == nil)
    }
}

@Suite("Object graph")
struct ObjectGraphTests {
    @Test("a released broker frees its vhosts' bound queues and exchanges (found by the fuzzer's leak check)")
    func noCyclesLeftBehind() throws {
        weak var queue: MessageQueue?
        weak var exchange: Exchange?
        do {
            let broker = Broker(logger: Logger(label: "graph") { _ in SwiftLogNoOpLogHandler() })
            let client = TestClient.ready(broker)
            client.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "x", type: "topic")))
            client.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
            client.send(channel: 1, .queueBind(QueueBind(queue: "q", exchange: "x", routingKey: "a.#")))
            client.collect()
            queue = broker.vhosts["/"]!.queues["q"]
            exchange = broker.vhosts["/"]!.exchanges["x"]
            #expect(queue != nil && exchange != nil && queue!.bindings.count == 1)
            client.connection.transportClosed()
        }
        #expect(queue == nil, "the queue outlived its broker")
        #expect(exchange == nil, "the exchange outlived its broker")
    }
}
