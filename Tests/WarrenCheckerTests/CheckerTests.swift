import Testing

@testable import WarrenChecker

/// The checker fed histories whose answer is known: a lost, an unexpected, a duplicated and a
/// recovered message are each found and named; availability is measured from faults.
@Suite("Failure-test checker")
struct CheckerTests {
    func send(_ id: Int64, _ t: Double) -> HistoryEvent { HistoryEvent(t: t, op: .send, id: id) }
    func ok(_ id: Int64, _ t: Double) -> HistoryEvent { HistoryEvent(t: t, op: .ok, id: id) }
    func recv(_ id: Int64, _ t: Double) -> HistoryEvent { HistoryEvent(t: t, op: .recv, id: id) }

    @Test("a clean history is OK")
    func clean() {
        let r = Checker.check([send(1, 0.0), ok(1, 0.01), send(2, 0.02), ok(2, 0.03), recv(1, 0.04), recv(2, 0.05)])
        #expect(r.ok && r.sent == 2 && r.confirmed == 2 && r.delivered == 2 && r.lost.isEmpty && r.unexpected.isEmpty)
        #expect(r.duplicatedIds == 0 && r.recovered == 0)
        #expect(abs(r.latencyMax - 10) < 0.001)
    }

    @Test("a confirmed message never delivered is lost")
    func lost() {
        let r = Checker.check([send(1, 0), ok(1, 0.1), send(2, 0.2), ok(2, 0.3), recv(2, 0.4)])
        #expect(!r.ok && r.lost == [1])
        #expect(Checker.summary(r).contains("lost (confirmed, never delivered): 1 1"))
        #expect(Checker.summary(r).hasPrefix("FAILED"))
    }

    @Test("a delivered message never sent is unexpected")
    func unexpected() {
        let r = Checker.check([send(1, 0), ok(1, 0.1), recv(1, 0.2), recv(99, 0.3)])
        #expect(!r.ok && r.unexpected == [99] && r.lost.isEmpty)
    }

    @Test("a message delivered twice is duplicated, not an error")
    func duplicated() {
        let r = Checker.check([send(1, 0), ok(1, 0.1), recv(1, 0.2), HistoryEvent(t: 0.5, op: .recv, id: 1, redelivered: true), recv(1, 0.6)])
        #expect(r.ok && r.duplicatedIds == 1 && r.duplicateDeliveries == 2)
    }

    @Test("sent, not confirmed, delivered anyway: recovered; not confirmed and not delivered: neither lost nor an error")
    func recovered() {
        let r = Checker.check([
            send(1, 0), HistoryEvent(t: 5, op: .fail, id: 1), recv(1, 6),
            send(2, 0), HistoryEvent(t: 0.2, op: .nack, id: 2),
            send(3, 0), HistoryEvent(t: 5, op: .fail, id: 3),
        ])
        #expect(r.ok && r.recovered == 1 && r.nacked == 1 && r.unconfirmed == 3 && r.lost.isEmpty)
    }

    @Test("each fault's time to the next confirm, and the longest")
    func availability() {
        let r = Checker.check([
            send(1, 0.5), ok(1, 0.6), HistoryEvent(t: 1.0, op: .fault, info: "kill warren-1"), send(2, 1.1), ok(2, 3.5),
            HistoryEvent(t: 4.0, op: .fault, info: "pause warren-2"), send(3, 4.1), ok(3, 4.5),
            HistoryEvent(t: 9.0, op: .fault, info: "partition"), recv(1, 9.5), recv(2, 9.6), recv(3, 9.7),
        ])
        #expect(r.faults.count == 3)
        #expect(abs((r.faults[0].nextConfirmAfter ?? -1) - 2.5) < 1e-9)
        #expect(abs((r.faults[1].nextConfirmAfter ?? -1) - 0.5) < 1e-9)
        #expect(r.faults[2].nextConfirmAfter == nil, "no confirm after the last fault")
        #expect(abs((r.longestUnavailability ?? 0) - 2.5) < 1e-9)
        #expect(r.confirmsPerSecond == [1, 0, 0, 1, 1])
        #expect(Checker.summary(r).contains("next confirm after never"))
    }
}
