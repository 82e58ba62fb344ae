#if canImport(Glibc)
    import Glibc
#endif

/// Where the broker core gets the time: wall-clock milliseconds since the epoch (x-death stamps
/// and message expiry need wall time). Injected so tests control it.
public protocol BrokerClock: Sendable {
    func nowMilliseconds() -> Int64
}

/// The real clock.
public struct SystemClock: BrokerClock {
    public init() {}
    public func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
