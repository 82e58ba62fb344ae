public import NIOCore

/// The framing every record of a Warren log has (the message store's and the Raft
/// write-ahead log's):
///
///     u32 length      payload bytes after this 12-byte header
///     u32 crc32c      over the length, type, flags and reserved bytes and the payload
///     u8  type        the log's own record type
///     u8  flags
///     u16 reserved    0
///     payload
///
/// all big-endian. A torn write shows up as a short or checksum-failing record at the end of
/// the last segment; anything else that fails is corruption.
public enum LogRecord {
    public static let headerSize = 12

    /// A record cut out of a buffer: its payload is a slice (no copy).
    public struct Raw {
        public var type: UInt8
        public var flags: UInt8
        public var payload: ByteBuffer
        /// Header and payload.
        public var size: Int
    }

    public enum Parse {
        case record(Raw)
        /// More bytes are needed to see the whole record (this many from its start).
        case incomplete(Int)
        case corrupt(String)
    }

    /// Appends a record to `buffer`; `payload` writes the payload. Returns the record's size.
    @discardableResult
    public static func write(type: UInt8, flags: UInt8 = 0, into buffer: inout ByteBuffer, payload: (inout ByteBuffer) -> Void) -> Int {
        let start = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(type)
        buffer.writeInteger(flags)
        buffer.writeInteger(UInt16(0))
        payload(&buffer)
        let end = buffer.writerIndex
        buffer.setInteger(UInt32(end - start - headerSize), at: start)
        let crc = buffer.withVeryUnsafeBytes { raw -> UInt32 in
            let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[start..<(start + 4)]))
            return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[(start + 8)..<end]), continuing: first)
        }
        buffer.setInteger(crc, at: start + 4)
        return end - start
    }

    /// The record at the reader index of `buffer` (which is not moved). `maxPayload` bounds a
    /// plausible length: beyond it the bytes are damage, not a record.
    public static func parse(_ buffer: ByteBuffer, maxPayload: Int) -> Parse {
        let available = buffer.readableBytes
        guard available >= headerSize else { return .incomplete(headerSize) }
        let base = buffer.readerIndex
        let length = Int(buffer.getInteger(at: base, as: UInt32.self)!)
        guard length <= maxPayload else { return .corrupt("record length \(length) is implausible") }
        let size = headerSize + length
        guard available >= size else { return .incomplete(size) }
        let stored = buffer.getInteger(at: base + 4, as: UInt32.self)!
        let crc = buffer.withUnsafeReadableBytes { raw -> UInt32 in
            let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<4]))
            return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[8..<size]), continuing: first)
        }
        guard crc == stored else { return .corrupt("checksum mismatch") }
        let type = buffer.getInteger(at: base + 8, as: UInt8.self)!
        let flags = buffer.getInteger(at: base + 9, as: UInt8.self)!
        return .record(Raw(type: type, flags: flags, payload: buffer.getSlice(at: base + headerSize, length: length)!, size: size))
    }
}
