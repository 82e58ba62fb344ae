import AMQPClient
import AMQPProtocol
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing
import WarrenCore
import WarrenNode

/// Access control, the message lifecycle and RabbitMQ's extensions over real sockets with
/// AMQPClient; the admin interface (what the management API will expose) driven on a live node.
@Suite("Extensions over a real socket")
struct ExtensionsTests {
    static let definitions = """
        {"users": [{"name": "guest", "password": "guest", "tags": ["administrator"]},
                   {"name": "alice", "password": "alicepw", "tags": []},
                   {"name": "bob", "password": "bobpw", "tags": [], "limits": {"max-channels": 1}}],
         "vhosts": [{"name": "/"}, {"name": "v1"}],
         "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
                         {"user": "guest", "vhost": "v1", "configure": ".*", "write": ".*", "read": ".*"},
                         {"user": "alice", "vhost": "v1", "configure": "^alice-", "write": "^alice-|amq\\\\.default", "read": "^alice-"},
                         {"user": "bob", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
         "topic_permissions": [{"user": "alice", "vhost": "v1", "exchange": "alice-t", "write": "^ok\\\\.", "read": ".*"}]}
        """

    func withSecuredNode(_ body: (TestNode) async throws -> Void) async throws {
        let path = NSTemporaryDirectory() + "warren-defs-\(UUID().uuidString).json"
        try Data(Self.definitions.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withNode({ $0.loadDefinitions = path }, body)
    }

    func user(_ name: String, _ password: String, _ vhost: String) -> (inout AMQPClientConfiguration) -> Void {
        { $0.username = name; $0.password = password; $0.virtualHost = vhost }
    }

    @Test("permissions per method, topic permissions, logins and limits, each with a log line")
    func accessControl() async throws {
        try await withSecuredNode { node in
            let alice = try await node.connect(user("alice", "alicepw", "v1"))
            var ch = try await alice.openChannel()
            let refused = { (kind: String, name: String) in "ACCESS_REFUSED - access to \(kind) '\(name)' in vhost 'v1' refused for user 'alice'" }
            let attempts: [(String, (AMQPClientChannel) async throws -> Void)] = [
                (refused("queue", "other"), { try await $0.queueDeclare("other") }),
                (refused("exchange", "amq.fanout"), { try await $0.queueDeclare("alice-q"); try await $0.queueBind("alice-q", exchange: "amq.fanout") }),
                (refused("exchange", "amq.direct"), { try await $0.basicPublish(exchange: "amq.direct", routingKey: "k", body: "x"); try await $0.queueDeclare("alice-q") }),
                (refused("queue", "other"), { _ = try await $0.basicGet(queue: "other") }),
                ("ACCESS_REFUSED - access to topic 'no.key' in exchange 'alice-t' in vhost 'v1' refused for user 'alice'", {
                    try await $0.exchangeDeclare("alice-t", type: "topic")
                    try await $0.basicPublish(exchange: "alice-t", routingKey: "no.key", body: "x")
                    try await $0.queueDeclare("alice-q")
                }),
            ]
            for (text, attempt) in attempts {
                let e = await brokerError { try await attempt(ch) }
                #expect(e?.replyCode == 403)
                if case .channelClosed(let err) = e { #expect(err.text == text) }
                #expect(node.logs.contains(text))
                ch = try await alice.openChannel()
            }
            try await ch.basicPublish(exchange: "alice-t", routingKey: "ok.key", body: "allowed")
            try await ch.queueDeclare("alice-q")
            try await alice.close()

            let wrong = await brokerError { _ = try await node.connect(self.user("guest", "nope", "/")) }
            #expect(wrong?.replyCode == 403)
            #expect(node.logs.contains("PLAIN login refused: user 'guest' - invalid credentials"))
            let noVhost = await brokerError { _ = try await node.connect(self.user("guest", "guest", "nope")) }
            #expect(noVhost?.replyCode == 530 && "\(noVhost!)".hasSuffix("NOT_ALLOWED - vhost nope not found"))
            let bob = try await node.connect(user("bob", "bobpw", "/"))
            _ = try await bob.openChannel()
            let tooMany = await brokerError { _ = try await bob.openChannel() }
            #expect(tooMany?.replyCode == 530)
            try await node.assertServing()
        }
    }

    @Test("with definitions loaded at boot there is no default guest user, as in RabbitMQ")
    func noDefaultUserWithDefinitions() async throws {
        let path = NSTemporaryDirectory() + "warren-defs-\(UUID().uuidString).json"
        try Data(#"{"users": [{"name": "ops", "password": "opspw", "tags": []}], "vhosts": [{"name": "/"}], "permissions": [{"user": "ops", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withNode({ $0.loadDefinitions = path }) { node in
            let guest = await brokerError { _ = try await node.connect() }
            #expect(guest?.replyCode == 403)
            try await node.connect(user("ops", "opspw", "/")).close()
        }
    }

    @Test("admin interface: deleting a vhost closes its connections and removes its objects")
    func deleteVirtualHost() async throws {
        try await withSecuredNode { node in
            let conn = try await node.connect(user("guest", "guest", "v1"))
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("doomed")
            try await node.node.withBroker { try $0.deleteVirtualHost("v1") }
            try await conn.closeFuture.get()
            let reason = await conn.closeReason()
            #expect(reason == .connectionClosed(AMQPError(.connectionForced, "broker forced connection closure with reason 'vhost 'v1' is deleted'", classID: 0, methodID: 0)))
            let gone = await brokerError { _ = try await node.connect(self.user("guest", "guest", "v1")) }
            #expect(gone?.replyCode == 530)
            try await node.node.withBroker { $0.addVirtualHost("v1"); $0.setPermissions(user: "guest", vhost: "v1", .all) }
            let again = try await node.connect(user("guest", "guest", "v1"))
            let e = await brokerError { try await again.openChannel().queueDeclare("doomed", passive: true) }
            #expect(e?.replyCode == 404, "the vhost came back empty")
            try await node.assertServing()
        }
    }

    @Test("admin interface: a policy change applies to an existing queue at once")
    func policyChange() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("pol-q")
            for i in 0..<5 { try await ch.basicPublish(routingKey: "pol-q", body: "\(i)") }
            #expect(try await ch.queueDeclare("pol-q", passive: true).messageCount == 5)
            try await node.node.withBroker {
                try $0.setPolicy(Policy(name: "cap", vhost: "/", pattern: "^pol-", applyTo: .queues, definition: ["max-length": .int(2)]))
            }
            #expect(try await ch.queueDeclare("pol-q", passive: true).messageCount == 2)
            #expect(try await ch.basicGet(queue: "pol-q", noAck: true)?.bodyString == "3", "drop-head kept the newest")
            try await node.node.withBroker { try $0.clearPolicy(vhost: "/", name: "cap") }
            for i in 5..<10 { try await ch.basicPublish(routingKey: "pol-q", body: "\(i)") }
            #expect(try await ch.queueDeclare("pol-q", passive: true).messageCount == 6)
            try await conn.close()
        }
    }

    @Test("admin interface: definitions export and import at runtime")
    func runtimeDefinitions() async throws {
        try await withSecuredNode { node in
            let exported = try await node.node.withBroker { $0.exportDefinitionsJSON() }
            let doc = try #require(try JSONSerialization.jsonObject(with: exported) as? [String: Any])
            #expect((doc["users"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted() == ["alice", "bob", "guest"])
            try await node.node.withBroker {
                try $0.importDefinitions(json: Data(#"{"users": [{"name": "dave", "password": "davepw", "tags": []}], "permissions": [{"user": "dave", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]}"#.utf8))
            }
            try await node.connect(user("dave", "davepw", "/")).close()
        }
    }

    @Test("connection.blocked reaches publishers when an alarm is set, and unblocked when it clears")
    func blocked() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let events = NIOLockedValueBox<[String?]>([])
            try await conn.setBlockedListener { reason in events.withLockedValue { $0.append(reason) } }
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("b-q")
            try await ch.basicPublish(routingKey: "b-q", body: "makes this connection a publisher")
            #expect(try await ch.queueDeclare("b-q", passive: true).messageCount == 1)
            try await node.node.withBroker { $0.setAlarm("memory", active: true) }
            // The node's resource monitor may clear this hand-set alarm on its next reading, so
            // the unblock can follow at once: wait for the block, then for an unblock after it.
            try await waitUntil { events.withLockedValue { $0.count } >= 1 }
            try await node.node.withBroker { $0.setAlarm("memory", active: false) }
            try await waitUntil { events.withLockedValue { $0.count } >= 2 }
            #expect(events.withLockedValue { Array($0.prefix(2)) } == ["low on resources: memory", nil])
            try await conn.close()
        }
    }

    @Test("dead-lettering on reject writes x-death with RabbitMQ's field types")
    func deadLetter() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.exchangeDeclare("dlx", type: "fanout")
            try await ch.queueDeclare("dead")
            try await ch.queueBind("dead", exchange: "dlx")
            try await ch.queueDeclare("src", arguments: ["x-dead-letter-exchange": .longString(Array("dlx".utf8))])
            try await ch.basicPublish(routingKey: "src", body: "bye", properties: BasicProperties(expiration: "60000"))
            let d = try #require(try await ch.getEventually(queue: "src", noAck: false))
            try await ch.basicReject(d.deliveryTag, requeue: false)
            let dead = try #require(try await ch.getEventually(queue: "dead"))
            let headers = try #require(dead.properties.headers)
            guard case .array(let deaths)? = headers["x-death"], case .table(let death)? = deaths.first else {
                Issue.record("no x-death table")
                return
            }
            #expect(death["count"] == .int64(1))
            #expect(death["reason"] == .longString(Array("rejected".utf8)))
            #expect(death["queue"] == .longString(Array("src".utf8)))
            #expect(death["exchange"] == .longString([]))
            #expect(death["routing-keys"] == .array([.longString(Array("src".utf8))]))
            #expect(death["original-expiration"] == .longString(Array("60000".utf8)))
            if case .timestamp(let t)? = death["time"] {
                #expect(abs(Int64(t) - Int64(Date().timeIntervalSince1970)) < 60)
            } else {
                Issue.record("time is not a timestamp")
            }
            #expect(headers["x-first-death-reason"] == .longString(Array("rejected".utf8)))
            #expect(dead.properties.expiration == nil)
            try await conn.close()
        }
    }

    @Test("reject-publish nacks under confirms; priority order; SAC failover; direct reply-to")
    func consumingExtensions() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            // reject-publish: the second message is nacked.
            try await ch.queueDeclare("rp", arguments: ["x-max-length": .int64(1), "x-overflow": .longString(Array("reject-publish".utf8))])
            let confirms = NIOLockedValueBox<[(UInt64, Bool)]>([])
            try await ch.confirmSelect()
            try await ch.setConfirmListener { tag, _, ack in confirms.withLockedValue { $0.append((tag, ack)) } }
            try await ch.basicPublish(routingKey: "rp", body: "1")
            try await ch.basicPublish(routingKey: "rp", body: "2")
            try await waitUntil { confirms.withLockedValue { $0.count } == 2 }
            #expect(confirms.withLockedValue { $0.map(\.1) } == [true, false])

            // Priorities: delivered highest first to a consumer with prefetch 2.
            try await ch.queueDeclare("prio", arguments: ["x-max-priority": .int64(10)])
            for p: UInt8 in [1, 7, 3, 9] {
                try await ch.basicPublish(routingKey: "prio", body: "\(p)", properties: BasicProperties(priority: p))
            }
            let consumerConn = try await node.connect()
            let cch = try await consumerConn.openChannel()
            try await cch.basicQos(prefetchCount: 2)
            let prio = DeliveryCollector(try await cch.basicConsume(queue: "prio", noAck: false))
            let first = await prio.wait(for: 2)
            #expect(first.map(\.bodyString) == ["9", "7"])
            try await cch.basicAck(first[1].deliveryTag, multiple: true)
            #expect(await prio.wait(for: 4).map(\.bodyString) == ["9", "7", "3", "1"])

            // Single active consumer: the second takes over when the first's connection dies.
            try await ch.queueDeclare("sac", arguments: ["x-single-active-consumer": .boolean(true)])
            let a = try await node.connect()
            let aDeliveries = DeliveryCollector(try await a.openChannel().basicConsume(queue: "sac", noAck: true))
            let b = try await node.connect()
            let bDeliveries = DeliveryCollector(try await b.openChannel().basicConsume(queue: "sac", noAck: true))
            try await ch.basicPublish(routingKey: "sac", body: "to a")
            #expect(await aDeliveries.wait(for: 1).map(\.bodyString) == ["to a"])
            try await a.dropSocket()
            try await Task.sleep(for: .milliseconds(50))
            try await ch.basicPublish(routingKey: "sac", body: "to b")
            #expect(await bDeliveries.wait(for: 1).map(\.bodyString) == ["to b"])

            // Direct reply-to: a request carries a generated reply-to the server answers.
            let client = try await node.connect()
            let clientCh = try await client.openChannel()
            let replies = DeliveryCollector(try await clientCh.basicConsume(queue: "amq.rabbitmq.reply-to", noAck: true))
            try await ch.queueDeclare("rpc")
            try await clientCh.basicPublish(routingKey: "rpc", body: "ping", properties: BasicProperties(replyTo: "amq.rabbitmq.reply-to"))
            let request = try #require(try await ch.getEventually(queue: "rpc"))
            let replyTo = try #require(request.properties.replyTo)
            #expect(replyTo.hasPrefix("amq.rabbitmq.reply-to."))
            try await ch.basicPublish(routingKey: replyTo, body: "pong")
            #expect(await replies.wait(for: 1).map(\.bodyString) == ["pong"])
            for c in [conn, consumerConn, b, client] { try await c.close() }
        }
    }
}

/// Polls `condition` every 5 ms for up to 5 s.
func waitUntil(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while !condition() {
        if ContinuousClock.now > deadline {
            Issue.record("condition not met within 5 s", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}
