import AMQPClient
import AMQPProtocol
import Foundation
import NIOCore
import NIOPosix
import WarrenChecker

/// Appends history events from every client, with the time since the run began.
final class HistoryRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [HistoryEvent] = []
    private let start = Date()

    func record(_ op: HistoryEvent.Op, id: Int64? = nil, by: String? = nil, redelivered: Bool? = nil, info: String? = nil) {
        let t = Date().timeIntervalSince(start)
        lock.lock()
        events.append(HistoryEvent(t: t, op: op, id: id, by: by, redelivered: redelivered, info: info))
        lock.unlock()
    }

    var snapshot: [HistoryEvent] {
        lock.lock()
        defer { lock.unlock() }
        return events
    }

    var lastDelivery: Date? {
        lock.lock()
        defer { lock.unlock() }
        return events.last(where: { $0.op == .recv }).map { start.addingTimeInterval($0.t) }
    }

    /// JSON lines.
    func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var text = ""
        for e in snapshot { text += String(decoding: try encoder.encode(e), as: UTF8.self) + "\n" }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// A flag the workload's tasks poll.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// The failure tests' clients: publishers with confirms (one message in flight each, a confirm
/// awaited at most `confirmTimeout` seconds, then the connection is dropped and the message
/// recorded as `fail`), push consumers with manual acks, and a `basic.get` poller; every one
/// moves to the next node when its connection goes. Each message's body is its id.
///
/// With `deadLetterFrom`, publishers send to that queue instead, `rejecters` consumers there
/// reject every delivery (dead-lettered into `queue`), and the consumers read `queue`: a
/// message is delivered only once it has been dead-lettered.
struct Workload: Sendable {
    /// Where each client connects (the k-th client starts at endpoint k and moves on).
    let endpoints: [AMQPClientConfiguration]
    let names: [String]
    let queue: String
    var deadLetterFrom: String?
    var rejecters = 2
    /// The federation workload consumes `queue` in another vhost, federated from `queue` in "/".
    var consumeVhost: String?
    let history: HistoryRecorder
    let group: MultiThreadedEventLoopGroup
    var publishers = 2
    var consumers = 2
    var confirmTimeout = 5.0
    /// Pause between two publishes of one publisher (seconds).
    var publishInterval = 0.005

    func configuration(_ k: Int, vhost: String? = nil) -> (AMQPClientConfiguration, String) {
        var c = endpoints[k % endpoints.count]
        if let vhost { c.virtualHost = vhost }
        c.heartbeat = 5
        c.handshakeTimeoutSeconds = 5
        c.connectionName = "warren-cluster workload"
        return (c, names[k % names.count])
    }

    func publish(_ p: Int, stop: StopFlag) async {
        var n: Int64 = 0
        var k = p
        while !stop.isSet {
            let (config, node) = configuration(k)
            k += 1
            let by = "p\(p)@\(node)"
            guard let conn = try? await AMQPClientConnection.connect(config, eventLoopGroup: group) else {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            do {
                let ch = try await conn.openChannel()
                try await ch.confirmSelect()
                while !stop.isSet {
                    let id = Int64(p) * 1_000_000_000 + n
                    n += 1
                    history.record(.send, id: id, by: by)
                    let seq = try await ch.basicPublish(
                        routingKey: deadLetterFrom ?? queue, body: ByteBuffer(string: String(id)), properties: BasicProperties(deliveryMode: 2))
                    switch await confirm(ch, seq, conn) {
                    case .ok: history.record(.ok, id: id, by: by)
                    case .nack: history.record(.nack, id: id, by: by)
                    case .failed:
                        history.record(.fail, id: id, by: by)
                        throw AMQPClientError.connectionClosed(nil)
                    }
                    if publishInterval > 0 { try? await Task.sleep(for: .milliseconds(Int64(publishInterval * 1000))) }
                }
                try? await conn.close()
            } catch {
                try? await conn.dropSocket()
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    enum Confirm { case ok, nack, failed }

    /// Waits for one confirm; after `confirmTimeout` the socket is dropped, which ends the wait.
    func confirm(_ ch: AMQPClientChannel, _ seq: UInt64, _ conn: AMQPClientConnection) async -> Confirm {
        let timeout = confirmTimeout
        return await withTaskGroup(of: Confirm?.self) { g in
            g.addTask {
                do {
                    try await ch.waitForConfirms(upTo: seq)
                    return .ok
                } catch let e as AMQPClientError {
                    // (The client reports every nack of the channel so far: only this
                    // message's own nack counts.)
                    if case .nacked(let tags) = e { return tags.contains(seq) ? .nack : .ok }
                    return .failed
                } catch {
                    return .failed
                }
            }
            g.addTask {
                try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                if Task.isCancelled { return nil }
                try? await conn.dropSocket()
                return nil
            }
            var answer = Confirm.failed
            for await r in g {
                if let r {
                    answer = r
                    g.cancelAll()
                    break
                }
            }
            return answer
        }
    }

    func consume(_ c: Int, stop: StopFlag) async {
        let history = self.history
        await consumeLoop(start: c + 1, vhost: consumeVhost, queue: queue, stop: stop) { node, ch, d in
            history.record(.recv, id: Int64(d.bodyString), by: "c\(c)@\(node)", redelivered: d.redelivered)
            ch.onEventLoop.ack(d.deliveryTag)
        }
    }

    /// Rejects (requeue false) everything `deadLetterFrom` delivers: the source queue
    /// dead-letters it into `queue`.
    func reject(_ r: Int, stop: StopFlag) async {
        guard let source = deadLetterFrom else { return }
        await consumeLoop(start: r + 2, vhost: nil, queue: source, stop: stop) { _, ch, d in
            ch.onEventLoop.nack(d.deliveryTag, requeue: false)
        }
    }

    /// A push consumer (manual ack, prefetch 20) that moves to the next node when its
    /// connection goes or its consumer is cancelled, until `stop`.
    private func consumeLoop(
        start: Int, vhost: String?, queue: String, stop: StopFlag,
        _ handle: @escaping @Sendable (String, AMQPClientChannel, AMQPDelivery) -> Void
    ) async {
        var k = start
        while !stop.isSet {
            let (config, node) = configuration(k, vhost: vhost)
            k += 1
            guard let conn = try? await AMQPClientConnection.connect(config, eventLoopGroup: group) else {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            do {
                let ch = try await conn.openChannel()
                try await ch.basicQos(prefetchCount: 20)
                let cancelled = StopFlag()
                try await ch.setCancelListener { _ in cancelled.set() }
                _ = try await ch.basicConsume(queue: queue) { d in handle(node, ch, d) }
                while !stop.isSet, !cancelled.isSet, await conn.closeReason() == nil {
                    try? await Task.sleep(for: .milliseconds(100))
                }
                try? await conn.close()
            } catch {
                try? await conn.dropSocket()
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    func poll(stop: StopFlag) async {
        var k = 2
        while !stop.isSet {
            let (config, node) = configuration(k, vhost: consumeVhost)
            k += 1
            let by = "get@\(node)"
            guard let conn = try? await AMQPClientConnection.connect(config, eventLoopGroup: group) else {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            do {
                let ch = try await conn.openChannel()
                while !stop.isSet {
                    if let d = try await ch.basicGet(queue: queue) {
                        history.record(.recv, id: Int64(d.bodyString), by: by, redelivered: d.redelivered)
                        try await ch.basicAck(d.deliveryTag)
                    } else {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                try? await conn.close()
            } catch {
                try? await conn.dropSocket()
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
