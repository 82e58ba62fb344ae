import AMQPClient
import AMQPProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// 50 connections x 5 channels, each publishing and consuming at once across shared queues.
/// Every message carries a unique id; at the end every id was delivered exactly once.
@Suite("Concurrency")
struct ConcurrencyTests {
    static let connections = 50
    static let channelsPerConnection = 5
    static let messagesPerChannel = 100
    static let queues = 10

    @Test("50 connections x 5 channels: none lost, none duplicated")
    func manyClients() async throws {
        try await withNode { node in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let seen = NIOLockedValueBox<[String: Int]>([:])
            let total = Self.connections * Self.channelsPerConnection * Self.messagesPerChannel

            let setup = try await node.connect()
            let sch = try await setup.openChannel()
            for q in 0..<Self.queues { try await sch.queueDeclare("load-\(q)") }

            var conns: [AMQPClientConnection] = []
            for _ in 0..<Self.connections {
                conns.append(try await AMQPClientConnection.connect(node.configuration, eventLoopGroup: group))
            }
            // Consumers first, on every channel, with manual acks and a prefetch window.
            var consumerTasks: [Task<Void, any Error>] = []
            var publishChannels: [(AMQPClientChannel, Int)] = []
            for (ci, conn) in conns.enumerated() {
                for k in 0..<Self.channelsPerConnection {
                    let index = ci * Self.channelsPerConnection + k
                    let ch = try await conn.openChannel()
                    try await ch.basicQos(prefetchCount: 20)
                    let consumer = try await ch.basicConsume(queue: "load-\((index + 3) % Self.queues)")
                    consumerTasks.append(Task {
                        for await d in consumer.deliveries {
                            seen.withLockedValue { $0[d.bodyString, default: 0] += 1 }
                            try await ch.basicAck(d.deliveryTag)
                        }
                    })
                    publishChannels.append((ch, index))
                }
            }
            // Every channel publishes at once, with confirms so nothing is in flight at the end.
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for (ch, index) in publishChannels {
                    tasks.addTask {
                        let pub = try await ch.connection.openChannel()
                        try await pub.confirmSelect()
                        for m in 0..<Self.messagesPerChannel {
                            try await pub.basicPublish(routingKey: "load-\((index + m) % Self.queues)", body: "\(index)-\(m)")
                        }
                        try await pub.waitForConfirms()
                    }
                }
                try await tasks.waitForAll()
            }
            let deadline = ContinuousClock.now + .seconds(60)
            while seen.withLockedValue({ $0.count }) < total && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            try await Task.sleep(for: .milliseconds(200))  // would a duplicate still arrive?
            let counts = seen.withLockedValue { $0 }
            let duplicated = counts.values.filter { $0 > 1 }.count
            #expect(counts.count == total, "delivered \(counts.count) of \(total) distinct messages")
            #expect(duplicated == 0, "\(duplicated) messages delivered more than once")
            for q in 0..<Self.queues {
                let ok = try await sch.queueDeclare("load-\(q)", passive: true)
                #expect(ok.messageCount == 0)
            }
            for c in conns { try await c.close() }
            for t in consumerTasks { _ = try? await t.value }
            try await setup.close()
            try await group.shutdownGracefully()
        }
    }
}
