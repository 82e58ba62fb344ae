import AMQPClient
import AMQPProtocol
import NIOCore

/// Message bodies carry the send time (monotonic nanoseconds) and an id: producer << 40 | seq.
enum Payload {
    static let minimumSize = 16

    static func id(producer: Int, seq: UInt64) -> UInt64 { UInt64(producer) << 40 | seq }

    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
}

/// One producer: publishes from its connection's event loop in batches, within the bound on
/// outstanding confirms, the socket's writability and the publish rate.
///
/// Confined to that event loop: every member is touched only there (hence unchecked Sendable).
final class Producer: @unchecked Sendable {
    let index: Int
    let channel: AMQPClientChannel
    let template: PublishTemplate
    let confirmBound: Int
    let rate: Double
    /// Stop after this many messages; 0 is no limit.
    let limit: UInt64
    var published: UInt64 = 0
    var confirmed: UInt64 = 0
    var nacked: UInt64 = 0
    private var stopped = false
    private var waiting = false
    private var started: UInt64 = 0
    private let padding: Int

    init(index: Int, channel: AMQPClientChannel, template: PublishTemplate, confirmBound: Int, rate: Double, limit: UInt64 = 0) {
        self.index = index
        self.limit = limit
        self.channel = channel
        self.template = template
        self.confirmBound = confirmBound
        self.rate = rate
        self.padding = template.bodySize - Payload.minimumSize
    }

    var loop: any EventLoop { channel.connection.eventLoop }

    /// Sets up listeners and starts publishing (call on any thread).
    func start() async throws {
        if confirmBound > 0 {
            try await channel.confirmSelect()
            try await channel.setConfirmListener { [self] _, _, ack in
                let settled = (self.published - UInt64(self.channel.onEventLoop.unconfirmedCount)) - (self.confirmed + self.nacked)
                if ack { self.confirmed += settled } else { self.nacked += settled }
                self.resume()
            }
        }
        try await loop.submit { [self] in
            self.channel.onEventLoop.onWritabilityChange { [self] writable in if writable { self.resume() } }
            self.started = Payload.now()
            self.pump()
        }.get()
    }

    func stop() async {
        try? await loop.submit { self.stopped = true }.get()
    }

    private func resume() {
        guard waiting, !stopped else { return }
        waiting = false
        pump()
    }

    private func pump() {
        let ch = channel.onEventLoop
        var batch = 0
        while batch < 200 && !stopped {
            if limit > 0 && published >= limit {
                stopped = true
                return
            }
            if confirmBound > 0 && ch.unconfirmedCount >= confirmBound {
                waiting = true
                return
            }
            if !ch.isWritable {
                waiting = true
                return
            }
            if rate > 0 {
                let due = UInt64(Double(Payload.now() - started) / 1e9 * rate)
                if published >= due {
                    let wait = Int64(1e9 / rate)
                    loop.assumeIsolated().scheduleTask(in: .nanoseconds(max(wait, 100_000))) { self.pump() }
                    return
                }
            }
            let id = Payload.id(producer: index, seq: published)
            let padding = self.padding
            do {
                try ch.publish(template) { body in
                    body.writeMultipleIntegers(Payload.now(), id)
                    if padding > 0 { body.writeRepeatingByte(0x2A, count: padding) }
                }
            } catch {
                stopped = true
                return
            }
            published += 1
            batch += 1
        }
        if !stopped {
            // Yield so replies and deliveries are read, then go on.
            loop.assumeIsolated().execute { self.pump() }
        }
    }
}

/// One consumer: records latency from the body's timestamp, acks every `ackEvery` messages
/// (multiple), and in verify mode records each id.
final class Consumer: @unchecked Sendable {
    let channel: AMQPClientChannel
    let autoAck: Bool
    let ackEvery: Int
    let verify: Bool
    var consumed: UInt64 = 0
    var histogram = LatencyHistogram()
    var seen = VerifyLedger()
    private var unackedSinceAck = 0
    /// A slow consumer: each ack waits this long (with prefetch 1, at most 1000/ms acks a second).
    let ackDelay: TimeAmount?

    init(channel: AMQPClientChannel, autoAck: Bool, ackEvery: Int, verify: Bool, ackDelay: TimeAmount? = nil) {
        self.channel = channel
        self.autoAck = autoAck
        self.ackEvery = max(1, ackEvery)
        self.verify = verify
        self.ackDelay = ackDelay
    }

    func start(queue: String, prefetch: UInt16) async throws {
        if prefetch > 0 { try await channel.basicQos(prefetchCount: prefetch) }
        _ = try await channel.basicConsume(queue: queue, noAck: autoAck) { [self] d in self.receive(d) }
    }

    private func receive(_ d: AMQPDelivery) {
        consumed += 1
        if let (sent, id) = d.body.getMultipleIntegers(at: d.body.readerIndex, as: (UInt64, UInt64).self) {
            let now = Payload.now()
            histogram.record(now > sent ? now - sent : 0)
            if verify { seen.record(id) }
        }
        if !autoAck {
            unackedSinceAck += 1
            if unackedSinceAck >= ackEvery {
                let multiple = unackedSinceAck > 1
                unackedSinceAck = 0
                if let ackDelay {
                    let tag = d.deliveryTag
                    channel.connection.eventLoop.scheduleTask(in: ackDelay) { [self] in self.channel.onEventLoop.ack(tag, multiple: multiple) }
                } else {
                    channel.onEventLoop.ack(d.deliveryTag, multiple: multiple)
                }
            }
        }
    }

    /// Acks what the last partial batch left (at the end of a run).
    func flushAcks() async {
        // Nothing to do for auto-ack; otherwise a multiple ack of 0 settles everything.
        guard !autoAck else { return }
        try? await channel.connection.eventLoop.submit { [self] in
            if self.unackedSinceAck > 0 {
                self.channel.onEventLoop.ack(0, multiple: true)
                self.unackedSinceAck = 0
            }
        }.get()
    }
}

/// Which message ids were received, per producer, as bitsets; counts duplicates on the way.
struct VerifyLedger {
    private(set) var bits: [Int: [UInt64]] = [:]
    private(set) var duplicates: UInt64 = 0

    mutating func record(_ id: UInt64) {
        let producer = Int(id >> 40)
        let seq = Int(id & (1 << 40 - 1))
        let word = seq / 64
        var words = bits[producer, default: []]
        bits[producer] = nil  // unique reference while mutating
        if words.count <= word { words += [UInt64](repeating: 0, count: word - words.count + 1 + words.count / 2) }
        let mask: UInt64 = 1 << UInt64(seq % 64)
        if words[word] & mask != 0 { duplicates += 1 } else { words[word] |= mask }
        bits[producer] = words
    }

    /// Merges another consumer's ledger; an id both saw is a duplicate.
    mutating func merge(_ other: VerifyLedger) {
        duplicates += other.duplicates
        for (producer, theirs) in other.bits {
            var mine = bits[producer, default: []]
            if mine.count < theirs.count { mine += [UInt64](repeating: 0, count: theirs.count - mine.count) }
            for i in theirs.indices {
                duplicates += UInt64((mine[i] & theirs[i]).nonzeroBitCount)
                mine[i] |= theirs[i]
            }
            bits[producer] = mine
        }
    }

    /// Distinct ids seen from `producer` below `count`.
    func received(producer: Int, below count: UInt64) -> UInt64 {
        guard let words = bits[producer] else { return 0 }
        var n: UInt64 = 0
        for (i, w) in words.enumerated() {
            let base = UInt64(i * 64)
            if base >= count { break }
            let valid = count - base >= 64 ? w : w & ((1 << (count - base)) - 1)
            n += UInt64(valid.nonzeroBitCount)
        }
        return n
    }
}
