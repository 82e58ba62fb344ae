import AMQPProtocol
import NIOCore
import Testing

@Suite("Field tables")
struct FieldTableTests {
    @Test("every field type round-trips, nested tables and arrays included")
    func roundTrip() throws {
        var buffer = ByteBuffer()
        buffer.amqpWriteFieldTable(sampleTable)
        let decoded = try buffer.amqpReadFieldTable()
        #expect(decoded == sampleTable)
        #expect(buffer.readableBytes == 0)
    }

    @Test("wire bytes follow RabbitMQ's type tags", arguments: [
        (FieldValue.boolean(true), [UInt8(ascii: "t"), 1]),
        (.int8(-1), [UInt8(ascii: "b"), 0xFF]),
        (.uint8(1), [UInt8(ascii: "B"), 1]),
        (.int16(-2), [UInt8(ascii: "s"), 0xFF, 0xFE]),
        (.uint16(2), [UInt8(ascii: "u"), 0, 2]),
        (.int32(-3), [UInt8(ascii: "I"), 0xFF, 0xFF, 0xFF, 0xFD]),
        (.uint32(3), [UInt8(ascii: "i"), 0, 0, 0, 3]),
        (.int64(4), [UInt8(ascii: "l"), 0, 0, 0, 0, 0, 0, 0, 4]),
        (.float(1.0), [UInt8(ascii: "f"), 0x3F, 0x80, 0, 0]),
        (.double(1.0), [UInt8(ascii: "d"), 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]),
        (.decimal(scale: 2, value: 5), [UInt8(ascii: "D"), 2, 0, 0, 0, 5]),
        (.string("ab"), [UInt8(ascii: "S"), 0, 0, 0, 2, 0x61, 0x62]),
        (.byteArray([9]), [UInt8(ascii: "x"), 0, 0, 0, 1, 9]),
        (.timestamp(7), [UInt8(ascii: "T"), 0, 0, 0, 0, 0, 0, 0, 7]),
        (.void, [UInt8(ascii: "V")]),
        (.array([.uint8(1)]), [UInt8(ascii: "A"), 0, 0, 0, 2, UInt8(ascii: "B"), 1]),
        (.table(["k": .void]), [UInt8(ascii: "F"), 0, 0, 0, 3, 1, UInt8(ascii: "k"), UInt8(ascii: "V")]),
    ])
    func wireBytes(_ value: FieldValue, _ bytes: [UInt8]) throws {
        var buffer = ByteBuffer()
        buffer.amqpWriteFieldTable(["k": value])
        let expected: [UInt8] = [0, 0, 0, UInt8(2 + bytes.count), 1, UInt8(ascii: "k")] + bytes
        #expect(Array(buffer.readableBytesView) == expected)
        #expect(try buffer.amqpReadFieldTable()["k"] == value)
    }

    @Test("nesting deeper than the limit is refused, not recursed into")
    func depthLimit() {
        var value = FieldValue.void
        for _ in 0..<(amqpMaxFieldNestingDepth + 2) { value = .table(["n": value]) }
        var buffer = ByteBuffer()
        buffer.amqpWriteFieldTable(["n": value])
        #expect(throws: AMQPError.self) { try buffer.amqpReadFieldTable() }

        var arrays = FieldValue.void
        for _ in 0..<(amqpMaxFieldNestingDepth + 2) { arrays = .array([arrays]) }
        var b2 = ByteBuffer()
        b2.amqpWriteFieldTable(["a": arrays])
        #expect(throws: AMQPError.self) { try b2.amqpReadFieldTable() }
    }

    @Test("an unknown type tag and a length past the end are errors")
    func malformed() {
        var bad = ByteBuffer(bytes: [0, 0, 0, 3, 1, UInt8(ascii: "k"), UInt8(ascii: "Z")])
        #expect(throws: AMQPError.self) { try bad.amqpReadFieldTable() }
        var long = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0])
        #expect(throws: AMQPError.self) { try long.amqpReadFieldTable() }
    }

    @Test("lookups and edits keep order")
    func editing() {
        var t: FieldTable = ["a": 1, "b": "x"]
        t["a"] = 2
        t["c"] = true
        t["b"] = nil
        #expect(t.entries.map(\.key) == ["a", "c"])
        #expect(t["a"] == .int64(2))
        #expect(FieldValue.int16(5).integerValue == 5)
        #expect(FieldValue.string("s").stringValue == "s")
    }
}

@Suite("Basic properties")
struct BasicPropertiesTests {
    static let full = BasicProperties(
        contentType: "application/json", contentEncoding: "gzip", headers: sampleTable, deliveryMode: 2, priority: 9,
        correlationID: "corr", replyTo: "amq.rabbitmq.reply-to", expiration: "60000", messageID: "id-1",
        timestamp: 1_700_000_000, type: "t", userID: "guest", appID: "app", clusterID: "c")

    @Test("all 14 properties round-trip", arguments: [
        full, BasicProperties(), BasicProperties(deliveryMode: 1), BasicProperties(headers: [:], clusterID: "only-last"),
        BasicProperties(contentType: "only-first"),
    ])
    func roundTrip(_ p: BasicProperties) throws {
        var buffer = ByteBuffer()
        p.encode(into: &buffer)
        #expect(try BasicProperties(decodingFrom: &buffer) == p)
        #expect(buffer.readableBytes == 0)
    }

    @Test("flags: content-type is bit 15, cluster-id bit 2")
    func flags() {
        var b = ByteBuffer()
        BasicProperties(contentType: "").encode(into: &b)
        #expect(b.getInteger(at: 0, as: UInt16.self) == 0x8000)
        b.clear()
        BasicProperties(clusterID: "").encode(into: &b)
        #expect(b.getInteger(at: 0, as: UInt16.self) == 0x0004)
    }

    @Test("a continuation flag word is read and ignored")
    func continuation() throws {
        var b = ByteBuffer(bytes: [0x10, 0x01, 0x00, 0x00, 2])  // delivery-mode present, continuation set
        let p = try BasicProperties(decodingFrom: &b)
        #expect(p.deliveryMode == 2)
    }
}
