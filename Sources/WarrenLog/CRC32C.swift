import CWarrenCRC
public import NIOCore

/// CRC-32C of byte ranges, for the logs' record checksums (hardware-accelerated where the CPU
/// has SSE4.2; see Sources/CWarrenCRC).
public enum CRC32C {
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return warren_crc32c(crc, base, bytes.count)
    }

    /// Over `length` readable bytes of `buffer` starting `at` its reader index plus that offset.
    public static func checksum(_ buffer: ByteBuffer, at offset: Int, length: Int, continuing crc: UInt32 = 0) -> UInt32 {
        buffer.withUnsafeReadableBytes { raw in
            checksum(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)]), continuing: crc)
        }
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
