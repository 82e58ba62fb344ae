import AMQPProtocol
import Testing

@testable import WarrenCore

@Suite("Topic exchange")
struct TopicRoutingTests {
    /// A vhost with one topic exchange and a queue per binding of the table.
    func routed() throws -> (VirtualHost, Exchange) {
        let broker = Broker()
        let vhost = broker.vhosts["/"]!
        let x = try vhost.declareExchange(name: "t", type: "topic", durable: false, autoDelete: false, internal: false, arguments: [:])
        for (i, b) in TopicTable.bindings.enumerated() {
            let (q, _) = try vhost.declareQueue(QueueDeclaration(vhost: vhost.name, name: b.name, durable: false, node: vhost.broker.nodeName))
            // t27 is bound twice with different arguments in RabbitMQ's table.
            try vhost.bind(source: x, destination: .queue(q), routingKey: b.key, arguments: ["i": .int64(Int64(i))])
        }
        return (vhost, x)
    }

    @Test("matches RabbitMQ's table", arguments: TopicTable.expected.indices)
    func table(_ row: Int) throws {
        let (vhost, x) = try routed()
        let (key, expected) = TopicTable.expected[row]
        var queues: [MessageQueue] = []
        vhost.route(x, routingKey: key, headers: nil, into: &queues)
        #expect(queues.map(\.name).sorted() == expected.sorted(), "routing key '\(key)'")
    }

    @Test("the tutorial's examples")
    func tutorial() {
        let cases: [(String, String, Bool)] = [
            ("*.orange.*", "quick.orange.rabbit", true), ("*.*.rabbit", "quick.orange.rabbit", true),
            ("lazy.#", "lazy.orange.elephant", true), ("*.orange.*", "quick.brown.fox", false),
            ("lazy.#", "lazy", true), ("*.orange.*", "orange", false), ("*.orange.*", "quick.orange.male.rabbit", false),
            ("lazy.#", "lazy.orange.male.rabbit", true), ("routing.dcs.*", "routing.dcs.topic1", true),
        ]
        for (binding, key, expected) in cases {
            #expect(matches(binding, key) == expected, "\(binding) vs \(key)")
        }
    }

    /// A vhost with topic exchange "t" and queue "q", unbound.
    func topicAndQueue() throws -> (VirtualHost, Exchange, MessageQueue) {
        let vhost = liveDefaultVirtualHost()
        let x = try vhost.declareExchange(name: "t", type: "topic", durable: false, autoDelete: false, internal: false, arguments: [:])
        let (q, _) = try vhost.declareQueue(QueueDeclaration(vhost: vhost.name, name: "q", durable: false, node: vhost.broker.nodeName))
        return (vhost, x, q)
    }

    @Test("unbinding prunes the trie and stops routing")
    func unbind() throws {
        let (vhost, x, q) = try topicAndQueue()
        try vhost.bind(source: x, destination: .queue(q), routingKey: "a.#.c", arguments: [:])
        try vhost.bind(source: x, destination: .queue(q), routingKey: "a.*.c", arguments: [:])
        try vhost.unbind(source: x, destination: .queue(q), routingKey: "a.#.c", arguments: [:])
        var out: [MessageQueue] = []
        vhost.route(x, routingKey: "a.b.c", headers: nil, into: &out)
        #expect(out.count == 1)
        out = []
        vhost.route(x, routingKey: "a.b.b.c", headers: nil, into: &out)
        #expect(out.isEmpty)
    }

    func matches(_ binding: String, _ key: String) -> Bool {
        let (vhost, x, q) = try! topicAndQueue()
        try! vhost.bind(source: x, destination: .queue(q), routingKey: binding, arguments: [:])
        var out: [MessageQueue] = []
        vhost.route(x, routingKey: key, headers: nil, into: &out)
        return !out.isEmpty
    }
}

@Suite("Headers, direct and fanout exchanges")
struct OtherRoutingTests {
    struct HeadersCase: Sendable, CustomTestStringConvertible {
        let binding: FieldTable
        let headers: FieldTable
        let matches: Bool
        var testDescription: String { "\(binding.entries.map { "\($0.key)=\($0.value)" }) vs \(headers.entries.map { "\($0.key)=\($0.value)" })" }
    }

    static func row(_ binding: FieldTable, _ headers: FieldTable, _ matches: Bool) -> HeadersCase {
        HeadersCase(binding: binding, headers: headers, matches: matches)
    }

    static let headerCases: [HeadersCase] = [
        row(["x-match": "all", "a": 1, "b": "x"], ["a": 1, "b": "x", "c": 3], true),
        row(["x-match": "all", "a": 1, "b": "x"], ["a": 1], false),
        row(["a": 1, "b": "x"], ["a": 1], false),  // all is the default
        row(["x-match": "any", "a": 1, "b": "x"], ["b": "x"], true),
        row(["x-match": "any", "a": 1], ["a": 2], false),
        row(["x-match": "all", "a": .void], ["a": "anything"], true),  // void: presence only
        row(["x-match": "all", "a": .int16(5)], ["a": .int64(5)], true),  // integers compare by value
        row(["x-match": "all", "a": "5"], ["a": .int64(5)], false),
        row(["x-match": "all", "x-foo": "bar"], [:], true),  // x- keys ignored: all of nothing
        row(["x-match": "all-with-x", "x-foo": "bar"], [:], false),
        row(["x-match": "all-with-x", "x-foo": "bar"], ["x-foo": "bar"], true),
        row(["x-match": "any", "x-foo": "bar"], ["x-foo": "bar"], false),
        row(["x-match": "any-with-x", "x-foo": "bar"], ["x-foo": "bar"], true),
        row(["x-match": "any"], ["a": 1], false),  // any of nothing
    ]

    @Test("x-match modes", arguments: headerCases)
    func headers(_ c: HeadersCase) {
        #expect(HeadersMatcher(c.binding).matches(c.headers) == c.matches)
    }

    @Test("direct: equal keys only; a queue bound twice receives once; fanout ignores keys")
    func directAndFanout() throws {
        let broker = Broker()
        let v = broker.vhosts["/"]!
        let (q, _) = try v.declareQueue(QueueDeclaration(vhost: v.name, name: "q", durable: false, node: v.broker.nodeName))
        let direct = v.exchanges["amq.direct"]!
        try v.bind(source: direct, destination: .queue(q), routingKey: "k", arguments: [:])
        try v.bind(source: direct, destination: .queue(q), routingKey: "k", arguments: ["other": 1])
        var out: [MessageQueue] = []
        v.route(direct, routingKey: "k", headers: nil, into: &out)
        #expect(out.count == 1)
        out = []
        v.route(direct, routingKey: "K", headers: nil, into: &out)
        #expect(out.isEmpty)
        let fanout = v.exchanges["amq.fanout"]!
        try v.bind(source: fanout, destination: .queue(q), routingKey: "ignored", arguments: [:])
        out = []
        v.route(fanout, routingKey: "anything", headers: nil, into: &out)
        #expect(out.map(\.name) == ["q"])
        out = []
        v.route(v.defaultExchange, routingKey: "q", headers: nil, into: &out)
        #expect(out.map(\.name) == ["q"], "the default exchange routes by queue name")
    }

    @Test("exchange-to-exchange bindings are followed once, cycles cut")
    func exchangeToExchange() throws {
        let broker = Broker()
        let v = broker.vhosts["/"]!
        let a = try v.declareExchange(name: "a", type: "fanout", durable: false, autoDelete: false, internal: false, arguments: [:])
        let b = try v.declareExchange(name: "b", type: "fanout", durable: false, autoDelete: false, internal: false, arguments: [:])
        let (q, _) = try v.declareQueue(QueueDeclaration(vhost: v.name, name: "q", durable: false, node: v.broker.nodeName))
        try v.bind(source: a, destination: .exchange(b), routingKey: "", arguments: [:])
        try v.bind(source: b, destination: .exchange(a), routingKey: "", arguments: [:])
        try v.bind(source: b, destination: .queue(q), routingKey: "", arguments: [:])
        try v.bind(source: a, destination: .queue(q), routingKey: "", arguments: [:])
        var out: [MessageQueue] = []
        v.route(a, routingKey: "", headers: nil, into: &out)
        #expect(out.map(\.name) == ["q"])
    }
}
