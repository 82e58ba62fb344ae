import AMQPClient
import AMQPProtocol
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing
import WarrenCore
import WarrenNode
import WarrenStore

/// What survives a restart of a real node (same data directory), over real sockets.
@Suite("Durability across restarts")
struct DurabilityTests {
    static func dataDirectory() -> String { NSTemporaryDirectory() + "warren-durable-\(UUID().uuidString)" }

    func withRestarts(_ steps: [(TestNode) async throws -> Void], adjust: @escaping (inout NodeConfiguration) -> Void = { _ in }) async throws {
        let dir = Self.dataDirectory()
        for step in steps {
            try await withNode({
                $0.dataDirectory = dir
                adjust(&$0)
            }, step)
        }
    }

    let persistent = BasicProperties(deliveryMode: 2)

    @Test("durable definitions survive; transient, exclusive and deleted ones do not")
    func definitions() async throws {
        try await withRestarts([
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                try await ch.exchangeDeclare("d.x", type: "topic", durable: true)
                try await ch.exchangeDeclare("t.x", type: "fanout", durable: false)
                try await ch.queueDeclare("d.q", durable: true, arguments: ["x-max-length": .int64(100)])
                try await ch.queueDeclare("t.q", durable: false)
                try await ch.queueDeclare("gone.q", durable: true)
                try await ch.queueDeclare("excl.q", durable: true, exclusive: true)
                try await ch.queueBind("d.q", exchange: "d.x", routingKey: "a.#")
                try await ch.queueBind("t.q", exchange: "d.x", routingKey: "b.#")
                _ = try await ch.queueDelete("gone.q")
                try await node.propose(.putVHost(name: "v2", description: "", tags: []))
                try await node.propose(.putUser(User(name: "carol", password: "carolpw")))
                try await node.propose(.setPermissions(user: "carol", vhost: "v2", .all))
                try await node.propose(
                    .setPolicy(Policy(name: "ttl", vhost: "/", pattern: "^d\\.", applyTo: .queues, definition: ["message-ttl": .int(60000)]), operator: false))
                try await conn.close()
            },
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                #expect(try await ch.queueDeclare("d.q", passive: true).queue == "d.q")
                try await ch.basicPublish(exchange: "d.x", routingKey: "a.b", body: "routed")
                #expect(try await ch.getEventually(queue: "d.q")?.bodyString == "routed", "the binding survived")
                for gone in ["t.q", "gone.q", "excl.q"] {
                    let e = await brokerError { try await conn.openChannel().queueDeclare(gone, passive: true) }
                    #expect(e?.replyCode == 404, "\(gone) must not survive")
                }
                let x = await brokerError { try await conn.openChannel().exchangeDeclare("t.x", type: "fanout", passive: true) }
                #expect(x?.replyCode == 404)
                let ttl = try await node.node.withBroker { $0.vhosts["/"]?.queues["d.q"]?.settings.messageTTL }
                #expect(ttl == 60000, "the policy survived and applies")
                let carol = try await node.connect { $0.username = "carol"; $0.password = "carolpw"; $0.virtualHost = "v2" }
                try await carol.close()
                try await conn.close()
            },
        ])
    }

    @Test("persistent messages on durable queues survive; acked ones stay gone; unacked ones come back redelivered")
    func messages() async throws {
        try await withRestarts([
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                try await ch.queueDeclare("m.q", durable: true)
                try await ch.confirmSelect()
                for i in 0..<10 { try await ch.basicPublish(routingKey: "m.q", body: "p\(i)", properties: persistent) }
                try await ch.basicPublish(routingKey: "m.q", body: "transient")
                try await ch.waitForConfirms()
                let first = try #require(try await ch.basicGet(queue: "m.q"))  // p0, left unacked
                #expect(first.bodyString == "p0")
                let second = try #require(try await ch.basicGet(queue: "m.q"))
                try await ch.basicAck(second.deliveryTag)  // p1, acked
                try await conn.close()  // p0 goes back to the queue, redelivered
            },
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                #expect(try await ch.queueDeclare("m.q", passive: true).messageCount == 9)
                var got: [(String, Bool)] = []
                while let d = try await ch.basicGet(queue: "m.q", noAck: true) { got.append((d.bodyString, d.redelivered)) }
                #expect(got.map(\.0) == ["p0"] + (2..<10).map { "p\($0)" })
                #expect(got.first?.1 == true && got.dropFirst().allSatisfy { !$0.1 })
                try await conn.close()
            },
        ])
    }

    @Test("a backlog longer than the in-memory window is paged and drains in order, across a restart too")
    func paging() async throws {
        let count = 6000
        try await withRestarts([
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                try await ch.queueDeclare("long.q", durable: true)
                try await ch.confirmSelect()
                for i in 0..<count { try await ch.basicPublish(routingKey: "long.q", body: "\(i)", properties: persistent) }
                try await ch.waitForConfirms()
                let inMemory = try await node.node.withBroker { $0.vhosts["/"]!.queues["long.q"]!.messageCount }
                #expect(inMemory == count)
                // Half now, in order.
                for i in 0..<(count / 2) {
                    let d = try #require(try await ch.basicGet(queue: "long.q", noAck: true))
                    #expect(d.bodyString == "\(i)")
                    if d.bodyString != "\(i)" { break }
                }
                try await conn.close()
            },
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                try await ch.basicQos(prefetchCount: 500)
                let consumer = DeliveryCollector(try await ch.basicConsume(queue: "long.q", noAck: true))
                let got = await consumer.wait(for: count / 2)
                #expect(got.map(\.bodyString) == ((count / 2)..<count).map { "\($0)" })
                try await conn.close()
            },
        ])
    }

    @Test("tx.commit with persistent messages, and publisher confirms, both after the store has them")
    func transactions() async throws {
        try await withRestarts([
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                try await ch.queueDeclare("tx.q", durable: true)
                try await ch.txSelect()
                try await ch.basicPublish(routingKey: "tx.q", body: "committed", properties: persistent)
                try await ch.txCommit()
                try await ch.basicPublish(routingKey: "tx.q", body: "rolled back", properties: persistent)
                try await ch.txRollback()
                let durable = try await node.node.store.eventLoop.submit { node.node.store.value.durablePosition }.get()
                #expect(durable > 0)
                try await conn.close()
            },
            { node in
                let conn = try await node.connect()
                let ch = try await conn.openChannel()
                #expect(try await ch.basicGet(queue: "tx.q", noAck: true)?.bodyString == "committed")
                #expect(try await ch.basicGet(queue: "tx.q", noAck: true) == nil)
                try await conn.close()
            },
        ])
    }

    @Test("resource alarms block publishers with connection.blocked, and lift")
    func alarms() async throws {
        try await withNode({ $0.resources.diskFreeLimit = Int.max }) { node in
            let conn = try await node.connect()
            let events = NIOLockedValueBox<[String?]>([])
            try await conn.setBlockedListener { reason in events.withLockedValue { $0.append(reason) } }
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("al.q")
            try await ch.basicPublish(routingKey: "al.q", body: "first")
            try await waitUntil { events.withLockedValue { $0.count } >= 1 }
            #expect(events.withLockedValue { $0.first } == "low on resources: disk")
            #expect(node.logs.contains("disk resource limit alarm set"))
            // While blocked the node reads nothing more from the publisher; the message waits.
            try await ch.basicPublish(routingKey: "al.q", body: "second")
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await node.node.withBroker { $0.vhosts["/"]!.queues["al.q"]!.messageCount } == 1)
            var relaxed = node.node.currentResourceLimits
            relaxed.diskFreeLimit = 0
            try await node.node.setResourceLimits(relaxed)
            try await waitUntil { events.withLockedValue { $0.count } >= 2 }
            #expect(events.withLockedValue { $0.last } == .some(nil))
            #expect(node.logs.contains("disk resource limit alarm cleared"))
            var count = 0
            for _ in 0..<200 where count < 2 {
                count = try await node.node.withBroker { $0.vhosts["/"]!.queues["al.q"]!.messageCount }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(count == 2, "the held publish went through once unblocked")
            try await conn.close()
        }
    }
}
