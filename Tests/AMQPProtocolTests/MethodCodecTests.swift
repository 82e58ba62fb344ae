import AMQPProtocol
import NIOCore
import Testing

@Suite("Method codec")
struct MethodCodecTests {
    @Test("every method of the spec round-trips", arguments: allMethodSamples)
    func roundTrip(_ method: AMQPMethod) throws {
        var buffer = ByteBuffer()
        method.encode(into: &buffer)
        let decoded = try AMQPMethod.decode(from: &buffer)
        #expect(decoded == method)
        #expect(buffer.readableBytes == 0, "decoding must consume exactly what encoding wrote")
    }

    @Test("samples cover every method in the spec")
    func coverage() {
        let distinct = Set(allMethodSamples.map { "\($0.classID).\($0.methodID)" })
        // 14 connection + 6 channel + 2 access + 8 exchange + 10 queue + 18 basic + 2 confirm + 6 tx.
        #expect(distinct.count == 66)
    }

    @Test("bits pack into one octet, least significant first")
    func bitPacking() throws {
        var buffer = ByteBuffer()
        AMQPMethod.queueDeclare(QueueDeclare(queue: "q", passive: true, durable: false, exclusive: true, autoDelete: false, nowait: true, arguments: [:]))
            .encode(into: &buffer)
        // class 50, method 10, ticket 0, "q", bits, empty table
        #expect(Array(buffer.readableBytesView) == [0, 50, 0, 10, 0, 0, 1, 0x71, 0b10101, 0, 0, 0, 0])
    }

    @Test("known wire bytes of basic.publish decode")
    func knownBytes() throws {
        var buffer = ByteBuffer(bytes: [0, 60, 0, 40, 0, 0, 3, 0x61, 0x62, 0x63, 2, 0x72, 0x6B, 0b01])
        let m = try AMQPMethod.decode(from: &buffer)
        #expect(m == .basicPublish(BasicPublish(exchange: "abc", routingKey: "rk", mandatory: true, immediate: false)))
    }

    @Test("an unknown method is 540 NOT_IMPLEMENTED naming its ids")
    func unknownMethod() {
        var buffer = ByteBuffer(bytes: [0, 60, 0, 99])
        #expect(throws: AMQPError(.notImplemented, "unknown method class 60 method 99", classID: 60, methodID: 99)) {
            try AMQPMethod.decode(from: &buffer)
        }
    }

    @Test("truncated arguments are a frame error naming the method")
    func truncated() throws {
        var buffer = ByteBuffer(bytes: [0, 50, 0, 10, 0])
        do {
            _ = try AMQPMethod.decode(from: &buffer)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .frameError)
            #expect(error.classID == 50 && error.methodID == 10)
        }
    }

    @Test("a short string longer than 255 bytes is cut between characters")
    func longShortString() throws {
        var buffer = ByteBuffer()
        let text = String(repeating: "a", count: 254) + "é" + "tail"  // é is 2 bytes, starting at byte 254
        buffer.amqpWriteShortString(text)
        #expect(buffer.getInteger(at: 0, as: UInt8.self) == 254)
        #expect(try buffer.amqpReadShortString() == String(repeating: "a", count: 254))
    }

    @Test("method metadata follows the spec")
    func metadata() {
        #expect(AMQPMethod.basicPublish(BasicPublish(routingKey: "")).hasContent)
        #expect(!AMQPMethod.basicAck(BasicAck()).hasContent)
        #expect(AMQPMethod.queueDeclare(QueueDeclare()).isSynchronous)
        #expect(AMQPMethod.name(classID: 50, methodID: 10) == "queue.declare")
        #expect(AMQPReplyCode.channelError.isHardError)
        #expect(!AMQPReplyCode.notFound.isHardError)
        #expect(AMQPReplyCode.resourceLocked.name == "RESOURCE_LOCKED")
    }
}
