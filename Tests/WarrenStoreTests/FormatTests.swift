import AMQPProtocol
import CWarrenCRC
import NIOCore
import Testing
import WarrenCore

@testable import WarrenStore
import WarrenLog

@Suite("Record format")
struct FormatTests {
    @Test("CRC-32C matches the standard check value, in both implementations")
    func crc() {
        let check = Array("123456789".utf8)
        #expect(CRC32C.checksum(check) == 0xE306_9283)
        #expect(check.withUnsafeBytes { warren_crc32c_portable(0, $0.baseAddress, $0.count) } == 0xE306_9283)
        var random = SystemRandomNumberGenerator()
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4097] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let hw = bytes.withUnsafeBytes { warren_crc32c(0, $0.baseAddress, $0.count) }
            let sw = bytes.withUnsafeBytes { warren_crc32c_portable(0, $0.baseAddress, $0.count) }
            #expect(hw == sw, "length \(length)")
        }
    }

    @Test("a message record round-trips, destinations and message")
    func messageRecord() throws {
        let m = Message(
            exchange: "ex", routingKey: "rk", properties: BasicProperties(contentType: "text/plain", headers: ["a": 1], deliveryMode: 2),
            body: ByteBuffer(string: "hello"))
        let dests = [
            MessageDestination(queue: 7, seq: 3 << 56 | 42, expiresAt: 1234, persist: true),
            MessageDestination(queue: 9, seq: 5, expiresAt: 0, persist: false),
        ]
        var b = ByteBuffer()
        let size = RecordFormat.writeMessage(m, destinations: dests, into: &b)
        #expect(size == b.readableBytes)
        guard case .record(let r) = RecordFormat.parse(b) else {
            Issue.record("not a record")
            return
        }
        #expect(r.type == .message && r.size == size && r.flags == 0)
        let (source, got, at) = try #require(RecordFormat.messageDestinations(r.payload))
        #expect(source == 0 && got == dests)
        let back = try #require(RecordFormat.message(r.payload, at: at))
        #expect(back.exchange == "ex" && back.routingKey == "rk" && String(buffer: back.body) == "hello")
        #expect(back.properties.contentType == "text/plain" && back.properties.headers?["a"] == .int64(1) && back.isPersistent)
    }

    @Test("short, torn and flipped records are told apart")
    func damage() {
        var b = ByteBuffer()
        RecordFormat.writeRanges(.removed, queue: 3, RangeSet([0..<10, 20..<30]), into: &b)
        let whole = b
        var short = whole
        short.moveWriterIndex(to: whole.writerIndex - 1)
        guard case .incomplete(let n) = RecordFormat.parse(short) else {
            Issue.record("a short record is incomplete")
            return
        }
        #expect(n == whole.readableBytes)
        var flipped = whole
        let at = flipped.readerIndex + 15
        flipped.setInteger(flipped.getInteger(at: at, as: UInt8.self)! ^ 0x10, at: at)
        guard case .corrupt(let why) = RecordFormat.parse(flipped) else {
            Issue.record("a flipped bit is corruption")
            return
        }
        #expect(why == "checksum mismatch")
        var zeros = ByteBuffer()
        zeros.writeRepeatingByte(0, count: 64)
        guard case .corrupt = RecordFormat.parse(zeros) else {
            Issue.record("zeros are not a record")
            return
        }
        if case .record(let r) = RecordFormat.parse(whole), let (q, ranges) = RecordFormat.ranges(r.payload) {
            #expect(q == 3 && ranges == [0..<10, 20..<30])
        } else {
            Issue.record("the ranges record does not parse")
        }
    }
}

@Suite("Range sets and segment maps")
struct RangeTests {
    @Test("RangeSet behaves as a set of numbers")
    func rangeSet() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<30 {
            var set = RangeSet()
            var model = Set<UInt64>()
            for _ in 0..<300 {
                let x = UInt64.random(in: 0..<200, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0:
                    set.insert(x)
                    model.insert(x)
                case 1:
                    let hi = x + UInt64.random(in: 1..<20, using: &random)
                    set.insert(x..<hi)
                    for i in x..<hi { model.insert(i) }
                case 2:
                    set.remove(x)
                    model.remove(x)
                default:
                    let hi = x + UInt64.random(in: 1..<20, using: &random)
                    set.remove(x..<hi)
                    for i in x..<hi { model.remove(i) }
                }
            }
            for i in UInt64(0)..<230 { #expect(set.contains(i) == model.contains(i)) }
            #expect(set.count == UInt64(model.count))
            #expect(set.count(in: 50..<120) == UInt64(model.filter { $0 >= 50 && $0 < 120 }.count))
            for (a, b) in zip(set.ranges, set.ranges.dropFirst()) { #expect(a.upperBound < b.lowerBound, "ranges stay apart") }
        }
    }

    @Test("SeqSegmentMap tracks members and their segments")
    func segmentMap() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<30 {
            var map = SeqSegmentMap()
            var model: [UInt64: UInt32] = [:]
            for _ in 0..<400 {
                let x = UInt64.random(in: 0..<150, using: &random)
                if Bool.random(using: &random) {
                    if model[x] == nil {
                        let s = UInt32.random(in: 1...3, using: &random)
                        map.insert(x, segment: s)
                        model[x] = s
                    }
                } else if Int.random(in: 0..<5, using: &random) == 0 {
                    let hi = x + 10
                    let removed = map.remove(x..<hi)
                    var expected: [UInt32: Int] = [:]
                    for i in x..<hi { if let s = model.removeValue(forKey: i) { expected[s, default: 0] += 1 } }
                    #expect(removed == expected)
                } else {
                    #expect(map.remove(x) == model.removeValue(forKey: x))
                }
            }
            for i in UInt64(0)..<160 { #expect(map.segment(of: i) == model[i]) }
            #expect(map.count == model.count)
            var bySegment: [UInt32: Int] = [:]
            for s in model.values { bySegment[s, default: 0] += 1 }
            #expect(map.countsBySegment() == bySegment)
        }
    }
}
