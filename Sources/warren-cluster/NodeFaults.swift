import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// Faults done to one node's machine rather than its network: a damaged log tail, a disk that
/// fills up, a clock that jumps. Each is what a real machine does to a running node; none
/// removes data a node had made durable (that is outside what any replicated log survives:
/// a disk that loses fsynced writes on a majority loses confirmed messages, in RabbitMQ too).
enum NodeFaults {
    // MARK: damaged log tail

    /// The newest segment of each of the node's logs (the Raft log and the message store).
    static func newestSegments(_ dataDir: String) -> [String] {
        ["raft/segments", "store/segments"].compactMap { sub in
            let dir = (dataDir as NSString).appendingPathComponent(sub)
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
            return names.last.map { (dir as NSString).appendingPathComponent($0) }
        }
    }

    enum Damage: CaseIterable {
        /// The file grew but its last blocks were never written (zeros): a crash after the
        /// size was updated, before the data.
        case zeros
        /// A record cut off part-way: a header that promises more than follows, then bytes.
        case partialRecord
    }

    /// Damages the end of each of the node's newest segments (the node must be stopped).
    /// Returns what was done, for the history.
    static func damageTail(_ dataDir: String, _ damage: Damage, bytes: Int, rng: inout SeededRandom) throws -> String {
        var done: [String] = []
        for path in newestSegments(dataDir) {
            guard let h = FileHandle(forWritingAtPath: path) else { throw DriverError("cannot open '\(path)' to damage it") }
            defer { try? h.close() }
            try h.seekToEnd()
            var tail: [UInt8]
            switch damage {
            case .zeros:
                tail = [UInt8](repeating: 0, count: bytes)
            case .partialRecord:
                // Length, a checksum that cannot match, type 2, then fewer bytes than promised.
                let promised = UInt32(bytes * 4)
                tail = withUnsafeBytes(of: promised.bigEndian, Array.init) + (0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) }
                tail[8] = 2
                tail += (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            try h.write(contentsOf: Data(tail))
            done.append("\(tail.count) bytes of \(damage == .zeros ? "zeros" : "a cut-off record") after \((path as NSString).lastPathComponent) of \(((path as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent.split(separator: "/").last ?? "")")
        }
        return done.joined(separator: ", ")
    }

    // MARK: a disk that fills up

    /// The size of the small disk (a tmpfs) a `disk-full` node's data is moved to.
    static let smallDiskBytes = 768 * 1024 * 1024
    static func fillerPath(_ dataDir: String) -> String { (dataDir as NSString).appendingPathComponent("disk-filler") }

    static func isMountPoint(_ path: String) -> Bool {
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        let resolved = (path as NSString).resolvingSymlinksInPath
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == resolved }
    }

    /// Moves a stopped node's data directory onto a tmpfs of its own (root only), so that
    /// filling it fills nothing else. Its contents are copied; the path stays the same.
    static func mountSmallDisk(_ dataDir: String, log: String) throws {
        guard !isMountPoint(dataDir) else { return }
        guard geteuid() == 0, let mount = Processes.which("mount") else {
            throw DriverError("disk-full needs root (to mount a small tmpfs under the node's data directory)")
        }
        let aside = dataDir + ".before-small-disk"
        try? FileManager.default.removeItem(atPath: aside)
        try FileManager.default.moveItem(atPath: dataDir, toPath: aside)
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        try Processes.run([mount, "-t", "tmpfs", "-o", "size=\(smallDiskBytes)", "warren-small-disk", dataDir], log: log)
        try Processes.run(["/bin/cp", "-a", aside + "/.", dataDir], log: log)
        try FileManager.default.removeItem(atPath: aside)
    }

    /// Unmounts a small disk (at `down`; its contents go with it).
    static func unmountSmallDisk(_ dataDir: String) {
        guard isMountPoint(dataDir), let umount = Processes.which("umount") else { return }
        try? Processes.run([umount, "-l", dataDir], log: "/dev/null")
    }

    /// Free bytes of the file system holding `path`.
    static func freeBytes(_ path: String) -> Int {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return 0 }
        return Int(s.f_bavail) * Int(s.f_frsize)
    }

    /// Fills the disk until `leaving` bytes are free (0: completely; writes then fail).
    static func fill(_ dataDir: String, leaving: Int) throws {
        let path = fillerPath(dataDir)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw DriverError("cannot create '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0xAB, count: 1 << 20)
        while freeBytes(dataDir) > leaving {
            let n = min(chunk.count, max(4096, freeBytes(dataDir) - leaving))
            if chunk.withUnsafeBytes({ write(fd, $0.baseAddress, n) }) <= 0 { break }  // full
        }
    }

    static func unfill(_ dataDir: String) {
        unlink(fillerPath(dataDir))
    }

    // MARK: a clock that jumps

    /// libfaketime (Debian's `faketime` package), whose offset file a node started with this
    /// environment rereads every second: writing "+30s" there moves both its wall clock and
    /// its monotonic clock 30 s ahead at once.
    static let faketimeLibrary = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
    static func clockFile(_ dir: String, _ node: Int) -> String { (dir as NSString).appendingPathComponent("clock-\(node + 1).offset") }

    static func fakedClockEnvironment(_ dir: String, _ node: Int) throws -> [String: String] {
        guard FileManager.default.fileExists(atPath: faketimeLibrary) else {
            throw DriverError("clock-jump needs libfaketime (\(faketimeLibrary)): apt-get install faketime")
        }
        try "+0s\n".write(toFile: clockFile(dir, node), atomically: true, encoding: .utf8)
        return ["LD_PRELOAD": faketimeLibrary, "FAKETIME_TIMESTAMP_FILE": clockFile(dir, node), "FAKETIME_CACHE_DURATION": "1"]
    }

    /// Sets the node's clock offset (seconds, from the true time).
    static func setClockOffset(_ dir: String, _ node: Int, seconds: Int) throws {
        try "\(seconds >= 0 ? "+" : "")\(seconds)s\n".write(toFile: clockFile(dir, node), atomically: true, encoding: .utf8)
    }
}
