import AMQPProtocol
import Foundation
import Logging
import NIOCore
import Testing
import WarrenCore

@testable import WarrenStore
import WarrenLog

/// Runs the store's loop tasks when the test says so (the sync thread posts from its own
/// thread, hence the lock).
final class TestExecutor: @unchecked Sendable {
    private let lock = NSLock()
    private var tasks: [@Sendable () -> Void] = []

    func execute(_ task: @escaping @Sendable () -> Void) {
        lock.withLock { tasks.append(task) }
    }

    /// Runs queued tasks (and the ones they queue) until none is left.
    func runAll() {
        while true {
            let batch = lock.withLock { () -> [@Sendable () -> Void] in
                let b = tasks
                tasks.removeAll()
                return b
            }
            if batch.isEmpty { return }
            for t in batch { t() }
        }
    }
}

/// A store in a fresh temporary directory (or `directory`), driven by hand.
struct StoreFixture {
    let directory: String
    let executor = TestExecutor()
    let store: FileMessageStore

    init(directory: String? = nil, configuration: FileMessageStore.Configuration = FileMessageStore.Configuration()) throws {
        let dir = directory ?? NSTemporaryDirectory() + "warren-store-\(UUID().uuidString)"
        self.directory = dir
        let executor = self.executor
        store = try FileMessageStore(directory: dir, configuration: configuration, logger: Logger(label: "test")) { executor.execute($0) }
    }

    /// The same directory, opened again (after `close()` or a simulated crash).
    func reopened(configuration: FileMessageStore.Configuration = FileMessageStore.Configuration()) throws -> StoreFixture {
        try StoreFixture(directory: directory, configuration: configuration)
    }

    var segmentsDirectory: String { (directory as NSString).appendingPathComponent("segments") }

    /// Waits until everything written is durable.
    func sync() {
        store.requestSync()
        executor.runAll()
        let deadline = Date().addingTimeInterval(5)
        while (store.durablePosition < store.writtenPosition || store.manifestInFlight) && Date() < deadline {
            usleep(1000)
            executor.runAll()
        }
    }

    /// Stops the sync thread without a final checkpoint or sync: what a kill -9 leaves, given
    /// that written data is in the page cache.
    func crash() {
        store.flushWrites()
        store.worker.stop()
        store.worker = nil
    }
}

func message(_ body: String, persistent: Bool = true, exchange: String = "x", routingKey: String = "k") -> Message {
    Message(
        exchange: exchange, routingKey: routingKey, properties: BasicProperties(deliveryMode: persistent ? 2 : 1),
        body: ByteBuffer(string: body))
}

extension FileMessageStore {
    /// Stages and commits one message for one queue.
    @discardableResult
    func put(_ m: Message, queue: any StoreQueue, seq: UInt64, persist: Bool = true, page: Bool = true) -> UInt64 {
        stage(m, queue: queue, seq: seq, expiresAt: 0, persist: persist, page: page)
        return persistedPosition(of: m) ?? 0
    }

    /// Bodies of every paged message of level 0, in order.
    func drain(_ q: any StoreQueue, level: UInt8 = 0) -> [String] {
        var out: [String] = []
        while true {
            let batch = pageIn(q, level: level, max: 100)
            if batch.isEmpty { return out }
            out += batch.map { String(buffer: $0.message.body) }
        }
    }
}
