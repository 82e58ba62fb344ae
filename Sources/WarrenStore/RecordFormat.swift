import AMQPProtocol
import NIOCore
import WarrenCore
import WarrenLog

/// The message store's records, in the framing of `LogRecord` (WarrenLog):
///
///     u32 length      payload bytes after this 12-byte header
///     u32 crc32c      over the length, type, flags and reserved bytes and the payload
///     u8  type        RecordType
///     u8  flags
///     u16 reserved    0
///     payload
///
/// all big-endian. A torn write shows up as a short or checksum-failing record at the end of
/// the last segment; anything else that fails is corruption.
enum RecordType: UInt8 {
    /// A message and the queues that hold it (its destinations).
    case message = 1
    /// Persisted messages that left a queue: queue id and sequence-number ranges.
    case removed = 2
    /// Persisted messages handed to consumers (redelivered after a restart).
    case delivered = 3
    /// A metadata change (JSON), journaled by the broker.
    case metadata = 4
    /// A queue and all its messages are gone.
    case queueDropped = 5
    /// Nothing: `warren repair` writes it over damaged bytes, so the records after them keep
    /// their offsets.
    case padding = 6
}

/// Flags of a message record.
enum MessageFlags {
    /// A copy made by compaction; valid only once its source segment is retired.
    static let relocated: UInt8 = 1
}

/// One queue's copy of a message.
struct MessageDestination: Equatable {
    var queue: StoreQueueID
    var seq: UInt64
    var expiresAt: Int64
    /// Kept until removed and recovered after a restart; otherwise the record only holds a
    /// paged message until it is read back.
    var persist: Bool
}

/// A record cut out of a buffer: its payload is a slice (no copy).
struct RawRecord {
    var type: RecordType
    var flags: UInt8
    var payload: ByteBuffer
    /// Header and payload.
    var size: Int
}

enum RecordParse {
    case record(RawRecord)
    /// More bytes are needed to see the whole record (this many from its start).
    case incomplete(Int)
    case corrupt(String)
}

enum RecordFormat {
    static let headerSize = 12
    /// Larger than any message Warren accepts (max-message-size is at most 512 MiB) plus its
    /// metadata; a length beyond it is damage, not a record.
    static let maxPayload = 600 * 1024 * 1024

    /// Appends a record to `buffer`; `payload` writes the payload. Returns the record's size.
    @discardableResult
    static func write(_ type: RecordType, flags: UInt8 = 0, into buffer: inout ByteBuffer, payload: (inout ByteBuffer) -> Void) -> Int {
        LogRecord.write(type: type.rawValue, flags: flags, into: &buffer, payload: payload)
    }

    /// The record at the reader index of `buffer` (which is not moved).
    static func parse(_ buffer: ByteBuffer) -> RecordParse {
        switch LogRecord.parse(buffer, maxPayload: maxPayload) {
        case .incomplete(let n): return .incomplete(n)
        case .corrupt(let why): return .corrupt(why)
        case .record(let r):
            guard let type = RecordType(rawValue: r.type) else { return .corrupt("unknown record type") }
            return .record(RawRecord(type: type, flags: r.flags, payload: r.payload, size: r.size))
        }
    }

    // MARK: message records

    static func writeMessage(
        _ message: Message, destinations: [MessageDestination], relocatedFrom source: UInt32 = 0, into buffer: inout ByteBuffer
    ) -> Int {
        write(.message, flags: source == 0 ? 0 : MessageFlags.relocated, into: &buffer) { b in
            writeDestinations(destinations, relocatedFrom: source, into: &b)
            message.write(into: &b)
        }
    }

    /// The part of a message record before the message: the source segment (0 unless a
    /// compaction copy) and the destinations. `messageDestinations` reads it back.
    static func writeDestinations(_ destinations: [MessageDestination], relocatedFrom source: UInt32, into b: inout ByteBuffer) {
        b.writeInteger(source)
        b.writeInteger(UInt16(destinations.count))
        for d in destinations {
            b.writeInteger(d.queue)
            b.writeInteger(d.seq)
            b.writeInteger(d.expiresAt)
            b.writeInteger(UInt8(d.persist ? 1 : 0))
        }
    }

    /// The destinations of a message record and where its message part starts; cheap enough to
    /// run over every record at recovery.
    static func messageDestinations(_ payload: ByteBuffer) -> (source: UInt32, destinations: [MessageDestination], messageAt: Int)? {
        var p = payload
        guard let source = p.readInteger(as: UInt32.self), let n = p.readInteger(as: UInt16.self) else { return nil }
        var out: [MessageDestination] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n {
            guard let q = p.readInteger(as: UInt32.self), let seq = p.readInteger(as: UInt64.self),
                let exp = p.readInteger(as: Int64.self), let flags = p.readInteger(as: UInt8.self)
            else { return nil }
            out.append(MessageDestination(queue: q, seq: seq, expiresAt: exp, persist: flags & 1 != 0))
        }
        return (source, out, p.readerIndex - payload.readerIndex)
    }

    /// The message a record holds; its body and property bytes are slices of `payload`.
    static func message(_ payload: ByteBuffer, at offset: Int) -> Message? {
        var p = payload
        p.moveReaderIndex(forwardBy: offset)
        return try? Message.read(from: &p)
    }

    // MARK: range records (removed, delivered)

    static func writeRanges(_ type: RecordType, queue: StoreQueueID, _ ranges: RangeSet, into buffer: inout ByteBuffer) -> Int {
        write(type, into: &buffer) { b in
            b.writeInteger(queue)
            b.writeInteger(UInt32(ranges.rangeCount))
            for r in ranges.ranges {
                b.writeInteger(r.lowerBound)
                b.writeInteger(r.upperBound)
            }
        }
    }

    static func ranges(_ payload: ByteBuffer) -> (queue: StoreQueueID, ranges: [Range<UInt64>])? {
        var p = payload
        guard let q = p.readInteger(as: UInt32.self), let n = p.readInteger(as: UInt32.self), Int(n) * 16 <= p.readableBytes else { return nil }
        var out: [Range<UInt64>] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n {
            let lo = p.readInteger(as: UInt64.self)!
            let hi = p.readInteger(as: UInt64.self)!
            guard lo < hi else { return nil }
            out.append(lo..<hi)
        }
        return (q, out)
    }

    static func writeQueueDropped(_ queue: StoreQueueID, into buffer: inout ByteBuffer) -> Int {
        write(.queueDropped, into: &buffer) { $0.writeInteger(queue) }
    }

    /// A padding record exactly `size` bytes long (at least a header).
    static func writePadding(size: Int, into buffer: inout ByteBuffer) -> Int {
        write(.padding, into: &buffer) { $0.writeRepeatingByte(0, count: size - headerSize) }
    }

    static func writeMetadata(_ json: [UInt8], into buffer: inout ByteBuffer) -> Int {
        write(.metadata, into: &buffer) { $0.writeBytes(json) }
    }
}
