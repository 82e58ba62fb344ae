/// A place in the log: the segment number in the high 32 bits, the byte offset within the
/// segment in the low 32. Positions only grow, so durability is one comparison.
typealias LogPosition = UInt64

extension LogPosition {
    init(segment: UInt32, offset: UInt32) { self = UInt64(segment) << 32 | UInt64(offset) }
    var segment: UInt32 { UInt32(truncatingIfNeeded: self >> 32) }
    var offset: UInt32 { UInt32(truncatingIfNeeded: self) }
}
