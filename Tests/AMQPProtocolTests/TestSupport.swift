import AMQPProtocol
import NIOCore

/// A table holding every field-value type of RabbitMQ's dialect, nested tables and arrays
/// included.
let sampleTable: FieldTable = [
    "bool": .boolean(true),
    "int8": .int8(-8),
    "uint8": .uint8(200),
    "int16": .int16(-1600),
    "uint16": .uint16(60000),
    "int32": .int32(-320_000),
    "uint32": .uint32(4_000_000_000),
    "int64": .int64(-64_000_000_000),
    "float": .float(1.5),
    "double": .double(-2.25),
    "decimal": .decimal(scale: 2, value: 12345),
    "string": .string("héllo"),
    "bytes": .byteArray([0, 1, 0xFF]),
    "timestamp": .timestamp(1_700_000_000),
    "void": .void,
    "array": .array([.int32(1), .string("two"), .array([.boolean(false)]), .table(["k": .void])]),
    "table": .table(["nested": .table(["deeper": .int64(42)]), "list": .array([])]),
]

extension ByteBuffer {
    init(bytes: [UInt8]) {
        self = ByteBuffer()
        self.writeBytes(bytes)
    }
}

/// Encodes frames into one buffer, the way a peer would send them.
func encodeFrames(_ frames: [AMQPFrame]) -> ByteBuffer {
    var b = ByteBuffer()
    for f in frames { b.writeAMQPFrame(f) }
    return b
}
