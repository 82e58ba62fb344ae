import NIOCore

/// Runs long work on an event loop one slice per turn, with the loop's sockets served between
/// slices.
///
/// A task that hands the next slice to `execute` would starve them: NIO runs every queued task,
/// including ones queued meanwhile, before it looks at its sockets again, so a chain of
/// `execute`s holds all I/O of the loop until the chain ends (found with 100,000 queues: AMQP
/// round trips of 24 s while every task ran on time). A task scheduled a little in the future
/// is not due when the loop finishes its current tasks, so the loop polls its sockets first.
enum LoopSlices {
    static let gap = TimeAmount.microseconds(200)

    /// Calls `step` on `loop` (already on it) until it returns true, one call per turn.
    static func run(on loop: any EventLoop, _ step: @escaping () -> Bool) {
        if step() { return }
        loop.assumeIsolated().scheduleTask(in: gap) { run(on: loop, step) }
    }
}
