import Foundation
public import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Why a log (the message store's, the Raft write-ahead log) cannot go on; the text is for the
/// operator.
public struct StoreError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }

    public static func io(_ what: String, _ path: String) -> StoreError {
        StoreError("\(what) '\(path)': \(String(cString: strerror(errno)))")
    }
}

/// One segment of a log on disk: a 16-byte header (8 magic bytes naming the log, the segment
/// number, 4 bytes reserved), then records. The message store's segments start "WRNSEG01", the
/// Raft write-ahead log's "WRNWAL01". The only code that touches segment files.
public final class SegmentFile {
    public static let magic: [UInt8] = Array("WRNSEG01".utf8)
    public static let headerSize = 16

    public let number: UInt32
    public let path: String
    public private(set) var fd: Int32
    /// Where the next write goes (the file's length as far as this process wrote it).
    public private(set) var size: Int

    private init(number: UInt32, path: String, fd: Int32, size: Int) {
        self.number = number
        self.path = path
        self.fd = fd
        self.size = size
    }

    deinit { close() }

    public static func fileName(_ number: UInt32) -> String {
        let hex = String(number, radix: 16)
        return String(repeating: "0", count: max(0, 8 - hex.count)) + hex + ".seg"
    }

    public static func number(fromFileName name: String) -> UInt32? {
        guard name.hasSuffix(".seg"), name.count == 12 else { return nil }
        return UInt32(name.dropLast(4), radix: 16)
    }

    /// Segment numbers present in `directory`, ascending.
    public static func list(_ directory: String) -> [UInt32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap(number(fromFileName:)).sorted()
    }

    public static func path(_ directory: String, _ number: UInt32) -> String {
        (directory as NSString).appendingPathComponent(fileName(number))
    }

    /// A new, empty segment (its header written, not yet synced).
    public static func create(directory: String, number: UInt32, magic: [UInt8] = SegmentFile.magic) throws(StoreError) -> SegmentFile {
        let path = path(directory, number)
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot create segment", path) }
        var header = ByteBuffer()
        header.writeBytes(magic)
        header.writeInteger(number)
        header.writeInteger(UInt32(0))
        let file = SegmentFile(number: number, path: path, fd: fd, size: 0)
        try file.append(header)
        return file
    }

    /// An existing segment, its header checked.
    public static func open(
        directory: String, number: UInt32, writable: Bool = false, magic: [UInt8] = SegmentFile.magic
    ) throws(StoreError) -> SegmentFile {
        let path = path(directory, number)
        let fd = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw .io("cannot open segment", path) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            Glibc.close(fd)
            throw .io("cannot stat segment", path)
        }
        let file = SegmentFile(number: number, path: path, fd: fd, size: Int(st.st_size))
        let header = try file.read(at: 0, length: headerSize)
        guard header.readableBytes == headerSize, header.getBytes(at: header.readerIndex, length: 8) == magic,
            header.getInteger(at: header.readerIndex + 8, as: UInt32.self) == number
        else {
            throw StoreError("segment '\(path)' does not start with a Warren \(String(decoding: magic, as: UTF8.self)) header for segment \(number)")
        }
        return file
    }

    /// Appends `buffer`'s readable bytes at the end of the file.
    public func append(_ buffer: ByteBuffer) throws(StoreError) {
        var written = 0
        let total = buffer.readableBytes
        let offset = size
        let ok = buffer.withUnsafeReadableBytes { raw -> Bool in
            while written < total {
                let n = pwrite(fd, raw.baseAddress! + written, total - written, off_t(offset + written))
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                written += n
            }
            return true
        }
        guard ok else { throw .io("cannot write segment", path) }
        size += total
    }

    /// Up to `length` bytes from `offset` (fewer at the end of the file).
    public func read(at offset: Int, length: Int) throws(StoreError) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        var failed = false
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { raw -> Int in
            var got = 0
            while got < length {
                let n = pread(fd, raw.baseAddress! + got, length - got, off_t(offset + got))
                if n < 0 {
                    if errno == EINTR { continue }
                    failed = true
                    return 0
                }
                if n == 0 { break }
                got += n
            }
            return got
        }
        guard !failed else { throw .io("cannot read segment", path) }
        return buffer
    }

    /// fdatasync: the data (and the length) reach the disk.
    public func sync() throws(StoreError) {
        guard fdatasync(fd) == 0 else { throw .io("cannot sync segment", path) }
    }

    public func truncate(to length: Int) throws(StoreError) {
        guard ftruncate(fd, off_t(length)) == 0 else { throw .io("cannot truncate segment", path) }
        size = length
    }

    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }
}

/// fsync of a directory, so a created, renamed or deleted name is durable.
public func syncDirectory(_ path: String) throws(StoreError) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw .io("cannot open directory", path) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw .io("cannot sync directory", path) }
}
