/// A value in an AMQP field table or array, in RabbitMQ's dialect of the type tags
/// (the one every RabbitMQ client speaks, which differs from the 0-9-1 PDF in places).
public indirect enum FieldValue: Sendable, Hashable {
    case boolean(Bool)  // t
    case int8(Int8)  // b
    case uint8(UInt8)  // B
    case int16(Int16)  // s
    case uint16(UInt16)  // u
    case int32(Int32)  // I
    case uint32(UInt32)  // i
    case int64(Int64)  // l
    case float(Float)  // f
    case double(Double)  // d
    case decimal(scale: UInt8, value: UInt32)  // D
    /// Long string; kept as bytes because RabbitMQ treats it as binary.
    case longString([UInt8])  // S
    case array([FieldValue])  // A
    case timestamp(UInt64)  // T, seconds since the epoch
    case table(FieldTable)  // F
    case void  // V
    case byteArray([UInt8])  // x

    /// A long string holding UTF-8 text.
    @inlinable
    public static func string(_ s: String) -> FieldValue { .longString(Array(s.utf8)) }

    /// The text of a long string (or of a byte array holding text), else nil.
    public var stringValue: String? {
        switch self {
        case .longString(let b), .byteArray(let b): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }

    /// The value of any integer type, widened; nil for non-integers.
    public var integerValue: Int64? {
        switch self {
        case .int8(let v): return Int64(v)
        case .uint8(let v): return Int64(v)
        case .int16(let v): return Int64(v)
        case .uint16(let v): return Int64(v)
        case .int32(let v): return Int64(v)
        case .uint32(let v): return Int64(v)
        case .int64(let v): return v
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .boolean(let b) = self { return b }
        return nil
    }

    /// The strings of an array of strings (CC and BCC headers); a lone string counts as one.
    public var stringArray: [String] {
        switch self {
        case .array(let values): return values.compactMap(\.stringValue)
        case .longString, .byteArray: return stringValue.map { [$0] } ?? []
        default: return []
        }
    }

    public var tableValue: FieldTable? {
        if case .table(let t) = self { return t }
        return nil
    }

    /// RabbitMQ's name for the value's type, used in error texts ("expected integer, got longstr").
    public var typeName: String {
        switch self {
        case .boolean: return "bool"
        case .int8: return "byte"
        case .uint8: return "unsignedbyte"
        case .int16: return "short"
        case .uint16: return "unsignedshort"
        case .int32: return "signedint"
        case .uint32: return "unsignedint"
        case .int64: return "long"
        case .float: return "float"
        case .double: return "double"
        case .decimal: return "decimal"
        case .longString: return "longstr"
        case .array: return "array"
        case .timestamp: return "timestamp"
        case .table: return "table"
        case .void: return "void"
        case .byteArray: return "binary"
        }
    }
}

extension FieldValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    /// Integer literals become `long` (64-bit signed), as most clients encode Python/Java ints.
    public init(integerLiteral value: Int64) { self = .int64(value) }
    public init(booleanLiteral value: Bool) { self = .boolean(value) }
}

/// An AMQP field table: an ordered list of name/value pairs, as on the wire.
///
/// Order is kept so that a table round-trips byte for byte; lookups by name are linear, which is
/// faster than hashing for the handful of entries real tables carry.
public struct FieldTable: Sendable, Hashable, ExpressibleByDictionaryLiteral, RandomAccessCollection {
    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: FieldValue
        @inlinable public init(key: String, value: FieldValue) {
            self.key = key
            self.value = value
        }
    }

    public var entries: [Entry]

    @inlinable public init() { self.entries = [] }
    @inlinable public init(_ entries: [Entry]) { self.entries = entries }

    public init(dictionaryLiteral elements: (String, FieldValue)...) {
        self.entries = elements.map { Entry(key: $0.0, value: $0.1) }
    }

    public var startIndex: Int { entries.startIndex }
    public var endIndex: Int { entries.endIndex }
    public subscript(position: Int) -> Entry { entries[position] }

    /// The first value stored under `key`; setting replaces it in place or appends, and `nil`
    /// removes every entry with that name.
    public subscript(key: String) -> FieldValue? {
        get {
            for e in entries where e.key == key { return e.value }
            return nil
        }
        set {
            if let newValue {
                if let i = entries.firstIndex(where: { $0.key == key }) {
                    entries[i].value = newValue
                } else {
                    entries.append(Entry(key: key, value: newValue))
                }
            } else {
                entries.removeAll { $0.key == key }
            }
        }
    }
}
