import Foundation
import Logging
public import WarrenCore

#if canImport(Glibc)
    import Glibc
#endif

/// RabbitMQ's resource alarms: when the node's memory passes the high watermark, or free disk
/// space under the data directory falls below the limit, publishing connections are blocked
/// (`connection.blocked`, no more reads) until it clears. Past half the watermark queues start
/// paging new messages to the store instead of keeping them in memory.
public struct ResourceLimits: Sendable, Equatable {
    public enum Memory: Sendable, Equatable {
        /// A share of the machine's (or the cgroup's) memory.
        case relative(Double)
        case absolute(Int)
    }

    public var memoryHighWatermark = Memory.relative(0.4)
    public var diskFreeLimit = 50_000_000
    /// Paging starts at this share of the watermark (RabbitMQ's paging ratio).
    public var pagingRatio = 0.5

    public init() {}

    /// Bytes of memory the watermark stands for on a machine with `total` bytes.
    public func watermarkBytes(total: Int) -> Int {
        switch memoryHighWatermark {
        case .relative(let r): return Int(Double(total) * r)
        case .absolute(let n): return n
        }
    }

    /// What the alarms and paging should be given the readings.
    public func evaluate(_ r: ResourceReadings) -> (memoryAlarm: Bool, diskAlarm: Bool, paging: Bool) {
        let watermark = watermarkBytes(total: r.totalMemory)
        let memoryAlarm = r.residentMemory >= watermark
        let diskAlarm = r.diskFree.map { $0 < diskFreeLimit } ?? false
        let paging = Double(r.residentMemory) >= Double(watermark) * pagingRatio
        return (memoryAlarm, diskAlarm, paging)
    }

    /// "0.4" (a share of memory), or bytes with an optional unit: "2GB", "512MiB", "1000000".
    public static func parseMemory(_ text: String) -> Memory? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.contains("."), let r = Double(t), r > 0, r <= 1 { return .relative(r) }
        return parseBytes(t).map(Memory.absolute)
    }

    /// Bytes with RabbitMQ's units: kB/KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024.
    public static func parseBytes(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
            ("kB", 1_000), ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
        ]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            guard let n = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n >= 0 else { return nil }
            return Int(n * Double(factor))
        }
        guard let n = Int(t), n >= 0 else { return nil }
        return n
    }
}

public struct ResourceReadings: Sendable {
    public var residentMemory: Int
    public var totalMemory: Int
    public var diskFree: Int?
    public init(residentMemory: Int, totalMemory: Int, diskFree: Int?) {
        self.residentMemory = residentMemory
        self.totalMemory = totalMemory
        self.diskFree = diskFree
    }

    /// This process's RSS, the memory it may use (the machine's, or its cgroup limit if lower),
    /// and the free space of the file system holding `path`.
    public static func read(dataDirectory path: String) -> ResourceReadings {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var rss = 0
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) { rss = pages * page }
        }
        var total = Int(sysconf(Int32(_SC_PHYS_PAGES))) * page
        if let limit = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
            let n = Int(limit.trimmingCharacters(in: .whitespacesAndNewlines)), n > 0
        {
            total = min(total, n)
        }
        var fs = statvfs()
        let free: Int? = statvfs(path, &fs) == 0 ? Int(fs.f_bavail) * Int(fs.f_frsize) : nil
        return ResourceReadings(residentMemory: rss, totalMemory: total, diskFree: free)
    }
}

extension Broker {
    /// Applies one evaluation: raises or clears the alarms, turns paging on or off.
    public func apply(resources r: ResourceReadings, limits: ResourceLimits) {
        let d = limits.evaluate(r)
        if d.memoryAlarm != localAlarms.contains("memory") {
            logger.warning(
                d.memoryAlarm ? "memory resource limit alarm set: publishers are blocked" : "memory resource limit alarm cleared",
                metadata: ["used": "\(r.residentMemory)", "watermark": "\(limits.watermarkBytes(total: r.totalMemory))"])
            setAlarm("memory", active: d.memoryAlarm)
        }
        if d.diskAlarm != localAlarms.contains("disk") {
            logger.warning(
                d.diskAlarm ? "disk resource limit alarm set: publishers are blocked" : "disk resource limit alarm cleared",
                metadata: ["free": "\(r.diskFree ?? -1)", "limit": "\(limits.diskFreeLimit)"])
            setAlarm("disk", active: d.diskAlarm)
        }
        if d.paging != pagingActive {
            logger.info(d.paging ? "memory is past the paging threshold: queues page new messages to the store" : "paging threshold cleared")
            pagingActive = d.paging
        }
    }
}
