public import NIOCore

/// Reads a segment's records in order at recovery. A record that does not check out at the
/// end of the last segment, with nothing valid after it, is a write the crash interrupted: it
/// is cut off and recovery goes on. Anything else that fails is corruption: recovery stops with
/// an error naming the file, the offset and what to do.
public enum LogScanner {
    public struct Result: Sendable, Equatable {
        public var records = 0
        public var bytes = 0
        /// Bytes cut off the end (a torn write); 0 when the segment ended cleanly.
        public var tornTailBytes = 0
    }

    static let chunkBytes = 8 * 1024 * 1024

    /// Calls `record` for each record of `file` with its offset. `isKnown` tells the record
    /// types of this log (to find valid records after damage cheaply); `hint` is the sentence
    /// that says what the operator can do about corruption.
    public static func scan(
        _ file: SegmentFile, isLast: Bool, maxPayload: Int, isKnown: (UInt8) -> Bool, hint: String,
        record: (LogRecord.Raw, Int) throws(StoreError) -> Void
    ) throws(StoreError) -> Result {
        var result = Result()
        var offset = SegmentFile.headerSize
        let size = file.size
        func damage(_ reason: String) throws(StoreError) {
            if isLast, try !hasValidRecord(file, after: offset, maxPayload: maxPayload, isKnown: isKnown) {
                result.tornTailBytes = file.size - offset
                try file.truncate(to: offset)
                try file.sync()
                return
            }
            throw StoreError(
                "segment \(file.path) is corrupt at offset \(offset) (\(reason))\(isLast ? "; valid records follow, so this is not a torn write" : ""). \(hint)"
            )
        }
        while offset < size {
            var chunk = try file.read(at: offset, length: min(chunkBytes, size - offset))
            var progressed = false
            recordLoop: while chunk.readableBytes > 0 {
                switch LogRecord.parse(chunk, maxPayload: maxPayload) {
                case .record(let r):
                    guard isKnown(r.type) else {
                        try damage("unknown record type \(r.type)")
                        result.bytes = offset - SegmentFile.headerSize
                        return result
                    }
                    try record(r, offset)
                    result.records += 1
                    chunk.moveReaderIndex(forwardBy: r.size)
                    offset += r.size
                    progressed = true
                case .incomplete(let needed):
                    if offset + needed <= size {
                        if !progressed {
                            // A record larger than the chunk: read it whole.
                            chunk = try file.read(at: offset, length: needed)
                            continue recordLoop
                        }
                        break recordLoop  // read the next chunk from here
                    }
                    try damage("the file ends inside a record")
                    result.bytes = offset - SegmentFile.headerSize
                    return result
                case .corrupt(let why):
                    try damage(why)
                    result.bytes = offset - SegmentFile.headerSize
                    return result
                }
            }
        }
        result.bytes = offset - SegmentFile.headerSize
        return result
    }

    /// Whether any whole, checksum-valid record starts somewhere after `offset` (then the damage
    /// is in the middle of the log, not a torn write at its end).
    public static func hasValidRecord(_ file: SegmentFile, after offset: Int, maxPayload: Int, isKnown: (UInt8) -> Bool) throws(StoreError) -> Bool {
        let rest = try file.read(at: offset, length: file.size - offset)
        return firstValidRecord(in: rest, from: 1, maxPayload: maxPayload, isKnown: isKnown) != nil
    }

    /// The offset (within `buffer`) of the first whole valid record at or after `from`.
    public static func firstValidRecord(in buffer: ByteBuffer, from: Int, maxPayload: Int, isKnown: (UInt8) -> Bool) -> Int? {
        var i = from
        let n = buffer.readableBytes
        let base = buffer.readerIndex
        while i + LogRecord.headerSize <= n {
            // Cheap checks first (type, flags, reserved bytes), so a long damaged tail is not
            // checksummed at every offset.
            let type = buffer.getInteger(at: base + i + 8, as: UInt8.self)!
            let flags = buffer.getInteger(at: base + i + 9, as: UInt8.self)!
            let reserved = buffer.getInteger(at: base + i + 10, as: UInt16.self)!
            if isKnown(type) && flags <= 1 && reserved == 0 {
                var b = buffer
                b.moveReaderIndex(forwardBy: i)
                if case .record = LogRecord.parse(b, maxPayload: maxPayload) { return i }
            }
            i += 1
        }
        return nil
    }
}
