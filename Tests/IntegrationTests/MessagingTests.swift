import AMQPClient
import AMQPProtocol
import NIOCore
import Testing

/// The behaviours of the foundation issue, each through a real socket with AMQPClient.
@Suite("Messaging over a real socket")
struct MessagingTests {
    @Test("the handshake negotiates RabbitMQ's defaults and names the product")
    func handshake() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            #expect(conn.serverProperties["product"]?.stringValue == "Warren")
            #expect(conn.serverProperties["capabilities"]?.tableValue?["publisher_confirms"] == true)
            try await conn.close()
            let plain = try await node.connect { $0.mechanism = "AMQPLAIN" }
            try await plain.close()
        }
    }

    @Test("each exchange type routes as RabbitMQ's does")
    func exchanges() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.exchangeDeclare("d", type: "direct")
            try await ch.exchangeDeclare("f", type: "fanout")
            try await ch.exchangeDeclare("t", type: "topic")
            try await ch.exchangeDeclare("h", type: "headers")
            for q in ["qd", "qf1", "qf2", "qt", "qh"] { try await ch.queueDeclare(q) }
            try await ch.queueBind("qd", exchange: "d", routingKey: "red")
            try await ch.queueBind("qf1", exchange: "f")
            try await ch.queueBind("qf2", exchange: "f")
            try await ch.queueBind("qt", exchange: "t", routingKey: "*.orange.#")
            try await ch.queueBind("qh", exchange: "h", arguments: ["x-match": "any", "color": "red", "size": .int32(3)])

            try await ch.basicPublish(exchange: "d", routingKey: "red", body: "direct")
            try await ch.basicPublish(exchange: "d", routingKey: "blue", body: "dropped")
            try await ch.basicPublish(exchange: "f", routingKey: "whatever", body: "fanout")
            try await ch.basicPublish(exchange: "t", routingKey: "quick.orange", body: "topic")
            try await ch.basicPublish(exchange: "t", routingKey: "orange", body: "dropped")
            try await ch.basicPublish(exchange: "h", routingKey: "", body: "headers", properties: BasicProperties(headers: ["size": .int64(3)]))
            try await ch.basicPublish(exchange: "h", routingKey: "", body: "dropped", properties: BasicProperties(headers: ["size": .int64(4)]))

            #expect(try await ch.getEventually(queue: "qd")?.bodyString == "direct")
            #expect(try await ch.getEventually(queue: "qf1")?.bodyString == "fanout")
            #expect(try await ch.getEventually(queue: "qf2")?.bodyString == "fanout")
            #expect(try await ch.getEventually(queue: "qt")?.bodyString == "topic")
            #expect(try await ch.getEventually(queue: "qh")?.bodyString == "headers")
            for q in ["qd", "qf1", "qt", "qh"] { #expect(try await ch.basicGet(queue: q) == nil, "only one message in \(q)") }
            try await conn.close()
        }
    }

    @Test("queue declare reports counts; purge and delete report what they dropped")
    func counts() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("c")
            for i in 0..<3 { try await ch.basicPublish(routingKey: "c", body: "\(i)") }
            let consumerChannel = try await conn.openChannel()
            try await consumerChannel.basicQos(prefetchCount: 1)
            _ = try await consumerChannel.basicConsume(queue: "c")
            try await Task.sleep(for: .milliseconds(50))
            let ok = try await ch.queueDeclare("c", passive: true)
            #expect(ok.messageCount == 2 && ok.consumerCount == 1)
            #expect(try await ch.queuePurge("c") == 2)
            try await consumerChannel.close()  // its unacked message goes back
            #expect(try await ch.queueDelete("c") == 1)
            try await conn.close()
        }
    }

    @Test("manual acks, redelivery after nack, reject without requeue, and get-empty")
    func acks() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("a")
            try await ch.basicPublish(routingKey: "a", body: "m1")
            try await ch.basicPublish(routingKey: "a", body: "m2")
            let first = try await ch.getEventually(queue: "a", noAck: false)
            #expect(first?.bodyString == "m1" && first?.redelivered == false && first?.messageCount == 1)
            try await ch.basicNack(first!.deliveryTag, requeue: true)
            let again = try await ch.getEventually(queue: "a", noAck: false)
            #expect(again?.bodyString == "m1" && again?.redelivered == true)
            try await ch.basicReject(again!.deliveryTag, requeue: false)
            let second = try await ch.getEventually(queue: "a", noAck: false)
            #expect(second?.bodyString == "m2")
            try await ch.basicAck(second!.deliveryTag)
            #expect(try await ch.basicGet(queue: "a") == nil)
            try await ch.basicRecover()  // nothing unacked: fine
            try await conn.close()
        }
    }

    @Test("prefetch 1 gives the next message to whichever consumer acked (fair dispatch)")
    func fairDispatch() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let setup = try await conn.openChannel()
            try await setup.queueDeclare("work")
            let busyChannel = try await conn.openChannel()
            try await busyChannel.basicQos(prefetchCount: 1)
            let busy = DeliveryCollector(try await busyChannel.basicConsume(queue: "work"))
            let idleChannel = try await conn.openChannel()
            try await idleChannel.basicQos(prefetchCount: 1)
            let idle = DeliveryCollector(try await idleChannel.basicConsume(queue: "work"))
            for i in 0..<6 { try await setup.basicPublish(routingKey: "work", body: "job\(i)") }
            await busy.wait(for: 1)
            // `busy` never acks; `idle` acks everything and so gets the other five.
            var acked = 0
            while acked < 5 {
                let got = await idle.wait(for: acked + 1)
                guard got.count > acked else { break }
                try await idleChannel.basicAck(got[acked].deliveryTag)
                acked += 1
            }
            #expect(busy.deliveries.count == 1)
            #expect(idle.deliveries.count == 5)
            try await conn.close()
        }
    }

    @Test("unacked messages return to the queue when their channel or connection goes")
    func requeueOnClose() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("r")
            for i in 0..<3 { try await ch.basicPublish(routingKey: "r", body: "\(i)") }
            let consumerConn = try await node.connect()
            let cch = try await consumerConn.openChannel()
            let c = DeliveryCollector(try await cch.basicConsume(queue: "r"))
            #expect(await c.wait(for: 3).count == 3)
            try await consumerConn.dropSocket()  // no AMQP close, as when a client dies
            var got: [AMQPDelivery] = []
            for _ in 0..<3 { if let d = try await ch.getEventually(queue: "r") { got.append(d) } }
            #expect(got.map(\.bodyString) == ["0", "1", "2"])
            #expect(got.allSatisfy { $0.redelivered })
            try await conn.close()
        }
    }

    @Test("publisher confirms, and mandatory messages returned with 312 NO_ROUTE")
    func confirmsAndReturns() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.confirmSelect()
            try await ch.queueDeclare("conf")
            var last: UInt64 = 0
            for i in 0..<500 { last = try await ch.basicPublish(routingKey: "conf", body: "\(i)") }
            #expect(last == 500)
            try await ch.waitForConfirms()
            try await ch.basicPublish(routingKey: "nowhere", body: "bounce", mandatory: true)
            try await ch.waitForConfirms()
            var returns = ch.returns.makeAsyncIterator()
            let returned = await returns.next()
            #expect(returned?.replyCode == 312 && returned?.replyText == "NO_ROUTE" && returned.map { String(buffer: $0.body) } == "bounce")
            #expect(try await ch.queueDeclare("conf", passive: true).messageCount == 500)
            try await conn.close()
        }
    }

    @Test("transactions: publishes and acks take effect at commit; rollback discards")
    func transactions() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("tx")
            try await ch.txSelect()
            try await ch.basicPublish(routingKey: "tx", body: "a")
            #expect(try await ch.queueDeclare("tx", passive: true).messageCount == 0)
            try await ch.txCommit()
            #expect(try await ch.queueDeclare("tx", passive: true).messageCount == 1)
            try await ch.basicPublish(routingKey: "tx", body: "b")
            try await ch.txRollback()
            #expect(try await ch.queueDeclare("tx", passive: true).messageCount == 1)
            try await conn.close()
        }
    }

    @Test("consumers: server-generated tags, cancel, exclusive and auto-delete queues")
    func consumers() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            let q = try await ch.queueDeclare("", exclusive: true).queue
            #expect(q.hasPrefix("amq.gen-"))
            let consumer = try await ch.basicConsume(queue: q, noAck: true)
            #expect(consumer.tag.hasPrefix("amq.ctag-"))
            let collected = DeliveryCollector(consumer)
            try await ch.basicPublish(routingKey: q, body: "hello")
            #expect(await collected.wait(for: 1).first?.bodyString == "hello")
            try await ch.basicCancel(consumer.tag)
            #expect(await collected.waitUntilFinished())

            try await ch.queueDeclare("ad", autoDelete: true)
            let adc = try await ch.basicConsume(queue: "ad")
            try await ch.basicCancel(adc.tag)
            let gone = await brokerError { try await conn.openChannel().queueDeclare("ad", passive: true) }
            #expect(gone?.replyCode == 404)
            try await conn.close()

            let other = try await node.connect()
            let missing = await brokerError { try await other.openChannel().queueDeclare(q, passive: true) }
            #expect(missing?.replyCode == 404, "the exclusive queue went with its connection")
            try await other.close()
        }
    }

    @Test("a consumer is told when its queue is deleted (consumer_cancel_notify)")
    func cancelNotify() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("doomed")
            let c = DeliveryCollector(try await ch.basicConsume(queue: "doomed"))
            let admin = try await node.connect()
            try await admin.openChannel().queueDelete("doomed")
            #expect(await c.waitUntilFinished())
            try await conn.close()
            try await admin.close()
        }
    }

    @Test("large bodies are split at frame_max and reassembled")
    func largeBodies() async throws {
        try await withNode { node in
            let conn = try await node.connect { $0.frameMax = 4096 }
            let ch = try await conn.openChannel()
            try await ch.queueDeclare("big")
            let body = ByteBuffer(bytes: (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            try await ch.basicPublish(routingKey: "big", body: body)
            let got = try await ch.getEventually(queue: "big")
            #expect(got?.body == body)
            try await conn.close()
        }
    }

    @Test("exchange-to-exchange bindings")
    func e2e() async throws {
        try await withNode { node in
            let conn = try await node.connect()
            let ch = try await conn.openChannel()
            try await ch.exchangeDeclare("src", type: "topic")
            try await ch.exchangeDeclare("dst", type: "fanout")
            try await ch.exchangeBind(destination: "dst", source: "src", routingKey: "a.#")
            try await ch.queueDeclare("e2e")
            try await ch.queueBind("e2e", exchange: "dst")
            try await ch.basicPublish(exchange: "src", routingKey: "a.b", body: "through")
            try await ch.basicPublish(exchange: "src", routingKey: "b.a", body: "no")
            #expect(try await ch.getEventually(queue: "e2e")?.bodyString == "through")
            #expect(try await ch.basicGet(queue: "e2e") == nil)
            try await conn.close()
        }
    }

    @Test("graceful shutdown tells clients 320 CONNECTION_FORCED")
    func shutdown() async throws {
        let node = try await TestNode.start()
        let conn = try await node.connect()
        try await node.stop()
        _ = try? await conn.closeFuture.get()
        let reason = await conn.closeReason()
        #expect(reason == .connectionClosed(AMQPError(.connectionForced, "broker forced connection closure with reason 'shutdown'")))
    }
}
