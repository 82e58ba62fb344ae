public import NIOCore

/// The deepest nesting of tables and arrays a decoder accepts. Hostile input could otherwise
/// recurse until the stack overflows; no real client nests more than a few levels.
public let amqpMaxFieldNestingDepth = 32

extension ByteBuffer {
    // MARK: integers

    @inlinable
    public mutating func amqpReadUInt8() throws(AMQPError) -> UInt8 {
        guard let v = self.readInteger(as: UInt8.self) else { throw .malformed("truncated octet") }
        return v
    }

    @inlinable
    public mutating func amqpReadUInt16() throws(AMQPError) -> UInt16 {
        guard let v = self.readInteger(as: UInt16.self) else { throw .malformed("truncated short") }
        return v
    }

    @inlinable
    public mutating func amqpReadUInt32() throws(AMQPError) -> UInt32 {
        guard let v = self.readInteger(as: UInt32.self) else { throw .malformed("truncated long") }
        return v
    }

    @inlinable
    public mutating func amqpReadUInt64() throws(AMQPError) -> UInt64 {
        guard let v = self.readInteger(as: UInt64.self) else { throw .malformed("truncated longlong") }
        return v
    }

    // MARK: strings

    @inlinable
    public mutating func amqpReadShortString() throws(AMQPError) -> String {
        guard let len = self.readInteger(as: UInt8.self), let s = self.readString(length: Int(len)) else {
            throw .malformed("truncated shortstr")
        }
        return s
    }

    /// Writes a short string. Text longer than 255 bytes is cut at a character boundary, so a
    /// long reply text can never produce an invalid frame.
    @inlinable
    public mutating func amqpWriteShortString(_ s: String) {
        let count = s.utf8.count
        if count <= 255 {
            self.writeInteger(UInt8(truncatingIfNeeded: count))
            self.writeString(s)
            return
        }
        // Back off from byte 255 while it is a UTF-8 continuation byte (10xxxxxx), so the cut
        // falls between characters.
        let bytes = Array(s.utf8.prefix(256))
        var n = 255
        while n > 0 && bytes[n] & 0xC0 == 0x80 { n -= 1 }
        self.writeInteger(UInt8(n))
        self.writeBytes(bytes[0..<n])
    }

    @inlinable
    public mutating func amqpReadLongString() throws(AMQPError) -> String {
        guard let len = self.readInteger(as: UInt32.self), len <= self.readableBytes,
            let s = self.readString(length: Int(len))
        else {
            throw .malformed("truncated longstr")
        }
        return s
    }

    @inlinable
    public mutating func amqpWriteLongString(_ s: String) {
        let lengthIndex = self.writerIndex
        self.writeInteger(UInt32(0))
        let written = self.writeString(s)
        self.setInteger(UInt32(written), at: lengthIndex)
    }

    @inlinable
    public mutating func amqpReadLongBytes() throws(AMQPError) -> [UInt8] {
        guard let len = self.readInteger(as: UInt32.self), len <= self.readableBytes,
            let b = self.readBytes(length: Int(len))
        else {
            throw .malformed("truncated longstr")
        }
        return b
    }

    @inlinable
    public mutating func amqpWriteLongBytes(_ b: [UInt8]) {
        self.writeInteger(UInt32(b.count))
        self.writeBytes(b)
    }

    // MARK: tables

    @inlinable
    public mutating func amqpReadFieldTable() throws(AMQPError) -> FieldTable {
        try self.amqpReadFieldTable(depth: 0)
    }

    @usableFromInline
    mutating func amqpReadFieldTable(depth: Int) throws(AMQPError) -> FieldTable {
        guard depth < amqpMaxFieldNestingDepth else {
            throw .malformed("field table nesting deeper than \(amqpMaxFieldNestingDepth)")
        }
        guard let len = self.readInteger(as: UInt32.self), len <= self.readableBytes,
            var slice = self.readSlice(length: Int(len))
        else {
            throw .malformed("truncated table")
        }
        var table = FieldTable()
        while slice.readableBytes > 0 {
            let key = try slice.amqpReadShortString()
            let value = try slice.amqpReadFieldValue(depth: depth)
            table.entries.append(FieldTable.Entry(key: key, value: value))
        }
        return table
    }

    @usableFromInline
    mutating func amqpReadFieldValue(depth: Int) throws(AMQPError) -> FieldValue {
        guard let tag = self.readInteger(as: UInt8.self) else { throw .malformed("truncated field value") }
        switch tag {
        case UInt8(ascii: "t"): return .boolean(try amqpReadUInt8() != 0)
        case UInt8(ascii: "b"): return .int8(Int8(bitPattern: try amqpReadUInt8()))
        case UInt8(ascii: "B"): return .uint8(try amqpReadUInt8())
        case UInt8(ascii: "s"): return .int16(Int16(bitPattern: try amqpReadUInt16()))
        case UInt8(ascii: "u"): return .uint16(try amqpReadUInt16())
        case UInt8(ascii: "I"): return .int32(Int32(bitPattern: try amqpReadUInt32()))
        case UInt8(ascii: "i"): return .uint32(try amqpReadUInt32())
        case UInt8(ascii: "l"): return .int64(Int64(bitPattern: try amqpReadUInt64()))
        case UInt8(ascii: "f"): return .float(Float(bitPattern: try amqpReadUInt32()))
        case UInt8(ascii: "d"): return .double(Double(bitPattern: try amqpReadUInt64()))
        case UInt8(ascii: "D"):
            let scale = try amqpReadUInt8()
            return .decimal(scale: scale, value: try amqpReadUInt32())
        case UInt8(ascii: "S"): return .longString(try amqpReadLongBytes())
        case UInt8(ascii: "x"): return .byteArray(try amqpReadLongBytes())
        case UInt8(ascii: "T"): return .timestamp(try amqpReadUInt64())
        case UInt8(ascii: "V"): return .void
        case UInt8(ascii: "F"): return .table(try amqpReadFieldTable(depth: depth + 1))
        case UInt8(ascii: "A"):
            guard depth + 1 < amqpMaxFieldNestingDepth else {
                throw .malformed("field table nesting deeper than \(amqpMaxFieldNestingDepth)")
            }
            guard let len = self.readInteger(as: UInt32.self), len <= self.readableBytes,
                var slice = self.readSlice(length: Int(len))
            else {
                throw .malformed("truncated array")
            }
            var values: [FieldValue] = []
            while slice.readableBytes > 0 {
                values.append(try slice.amqpReadFieldValue(depth: depth + 1))
            }
            return .array(values)
        default:
            throw .malformed("unknown field type tag \(tag)")
        }
    }

    @inlinable
    public mutating func amqpWriteFieldTable(_ table: FieldTable) {
        let lengthIndex = self.writerIndex
        self.writeInteger(UInt32(0))
        let start = self.writerIndex
        for entry in table.entries {
            self.amqpWriteShortString(entry.key)
            self.amqpWriteFieldValue(entry.value)
        }
        self.setInteger(UInt32(self.writerIndex - start), at: lengthIndex)
    }

    @usableFromInline
    mutating func amqpWriteFieldValue(_ value: FieldValue) {
        switch value {
        case .boolean(let v): writeMultipleIntegers(UInt8(ascii: "t"), UInt8(v ? 1 : 0))
        case .int8(let v): writeMultipleIntegers(UInt8(ascii: "b"), v)
        case .uint8(let v): writeMultipleIntegers(UInt8(ascii: "B"), v)
        case .int16(let v): writeMultipleIntegers(UInt8(ascii: "s"), v)
        case .uint16(let v): writeMultipleIntegers(UInt8(ascii: "u"), v)
        case .int32(let v): writeMultipleIntegers(UInt8(ascii: "I"), v)
        case .uint32(let v): writeMultipleIntegers(UInt8(ascii: "i"), v)
        case .int64(let v): writeMultipleIntegers(UInt8(ascii: "l"), v)
        case .float(let v): writeMultipleIntegers(UInt8(ascii: "f"), v.bitPattern)
        case .double(let v): writeMultipleIntegers(UInt8(ascii: "d"), v.bitPattern)
        case .decimal(let scale, let v): writeMultipleIntegers(UInt8(ascii: "D"), scale, v)
        case .longString(let b):
            writeInteger(UInt8(ascii: "S"))
            amqpWriteLongBytes(b)
        case .byteArray(let b):
            writeInteger(UInt8(ascii: "x"))
            amqpWriteLongBytes(b)
        case .timestamp(let v): writeMultipleIntegers(UInt8(ascii: "T"), v)
        case .void: writeInteger(UInt8(ascii: "V"))
        case .table(let t):
            writeInteger(UInt8(ascii: "F"))
            amqpWriteFieldTable(t)
        case .array(let values):
            writeInteger(UInt8(ascii: "A"))
            let lengthIndex = self.writerIndex
            writeInteger(UInt32(0))
            let start = self.writerIndex
            for v in values { amqpWriteFieldValue(v) }
            setInteger(UInt32(self.writerIndex - start), at: lengthIndex)
        }
    }
}
