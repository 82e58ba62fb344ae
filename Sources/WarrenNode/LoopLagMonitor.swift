import Logging
import NIOCore

/// Notices when the broker loop was held up: a 100 ms timer that fires late by more than
/// 100 ms means one piece of work ran that long, and every AMQP connection of the node waited
/// for it. Logged at debug from 100 ms, at warning from 1 s.
final class LoopLagMonitor: @unchecked Sendable {
    private let logger: Logger
    private var last: NIODeadline?

    init(logger: Logger) {
        self.logger = logger
    }

    /// Called by the 100 ms timer, on the broker loop (only there: hence unchecked).
    func tick() {
        let now = NIODeadline.now()
        defer { last = now }
        guard let last else { return }
        let lateMs = (now - last).nanoseconds / 1_000_000 - 100
        guard lateMs >= 100 else { return }
        logger.log(
            level: lateMs >= 1000 ? .warning : .debug, "the broker loop was busy: AMQP traffic waited",
            metadata: ["loop_lag_ms": "\(lateMs)"])
    }
}
