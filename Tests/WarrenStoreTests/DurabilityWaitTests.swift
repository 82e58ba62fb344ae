import Foundation
import NIOConcurrencyHelpers
import Testing
import WarrenCore

@testable import WarrenStore
import WarrenLog

/// What a confirm waits for: the position the store names, and an answer when it is reached.
/// Regressions for confirms held forever on an idle node (issue 13).
@Suite("Store durability waits")
struct DurabilityWaitTests {
    @Test("only the message committed last has a position; one never staged has none")
    func persistedPositionIsByIdentity() throws {
        let f = try StoreFixture()
        let q = f.store.openQueue(id: nil, durable: true)
        let stored = message("persisted")
        #expect(f.store.put(stored, queue: q, seq: 0) > 0)
        // Before the fix the store kept only the ObjectIdentifier of the message committed
        // last: once that message was freed, the next one allocated at its address looked
        // persisted at the old position, and its confirm waited for a sync of nothing.
        #expect(f.store.persistedPosition(of: message("never staged")) == nil)
        f.store.flushWrites()
        #expect(f.store.persistedPosition(of: stored) == nil)  // the loop turn is over
    }

    @Test("a sync asked for when everything is durable is answered at once")
    func syncOfNothingIsAnswered() throws {
        let f = try StoreFixture()
        let q = f.store.openQueue(id: nil, durable: true)
        let position = f.store.put(message("m"), queue: q, seq: 0)
        f.sync()
        let reported = NIOLockedValueBox<[UInt64]>([])
        f.store.onDurable = { p in reported.withLockedValue { $0.append(p) } }
        f.store.requestSync()
        f.executor.runAll()
        #expect(reported.withLockedValue { $0 } == [f.store.durablePosition])
        #expect(f.store.durablePosition >= position)
    }
}
