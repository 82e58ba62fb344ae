import Foundation
import WarrenManagement

/// What the management API reports about the process: memory and disk from the resource
/// monitor's latest reading, descriptors counted now.
enum NodeStatusReader {
    static let startedAt = Date()
    static func read(
        name: String, readings r: ResourceReadings, limits: ResourceLimits, listeners: [NodeStatus.Listener], managementPort: Int
    ) -> NodeStatus {
        var s = NodeStatus(name: name)
        s.pid = ProcessInfo.processInfo.processIdentifier
        s.uptimeMilliseconds = Int64(Date().timeIntervalSince(startedAt) * 1000)
        s.memoryUsed = r.residentMemory
        s.memoryLimit = limits.watermarkBytes(total: r.totalMemory)
        s.diskFree = r.diskFree ?? 0
        s.diskFreeLimit = limits.diskFreeLimit
        s.fdUsed = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 { s.fdTotal = Int(clamping: rl.rlim_cur) }
        s.processors = ProcessInfo.processInfo.activeProcessorCount
        s.listeners = listeners
        s.managementPort = managementPort
        return s
    }
}
