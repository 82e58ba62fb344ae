import AMQPClient
import AMQPProtocol
import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

@main
struct WarrenPerf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-perf",
        abstract: "Load generator for AMQP 0-9-1 brokers (Warren, RabbitMQ, ...), in the spirit of RabbitMQ's PerfTest.",
        discussion: """
            Each producer and consumer has its own connection. Message bodies carry the send time, so \
            consumers measure end-to-end latency; with --verify they also carry ids, and the run reports \
            lost and duplicated messages. The last line of output is one JSON object with the results.
            """)

    @Option(help: "Broker URI (amqp://user:pass@host:port/vhost).") var uri = "amqp://guest:guest@127.0.0.1:5672/"
    @Option(help: "Consumers connect here instead of --uri (another node of a cluster).") var consumerUri: String?
    @Option(help: "Queues are declared through this URI instead of --uri (their home node in a cluster).") var declareUri: String?
    @Option(help: "A slow consumer: each ack waits this many milliseconds (use with --prefetch 1).") var consumerDelayMs: Int = 0
    @Option(name: .shortAndLong, help: "Producers.") var producers = 1
    @Option(name: .shortAndLong, help: "Consumers.") var consumers = 1
    @Option(help: "Queues; producer i publishes to queue i mod queues, consumer j consumes queue j mod queues.") var queues = 1
    @Option(help: "Queue name pattern; %d is the queue's number.") var queuePattern = "perf-%d"
    @Option(help: "Exchange to publish to; empty is the default exchange (routing key = queue name).") var exchange = ""
    @Option(help: "Type of --exchange: direct, fanout, topic or headers.") var exchangeType = "direct"
    @Option(help: "Routing key for --exchange (default: the queue's name).") var routingKey: String?
    @Option(name: .shortAndLong, help: "Message body size in bytes (at least 16).") var size = 16
    @Option(name: .shortAndLong, help: "Seconds to publish for.") var duration: Double = 10
    @Option(name: .shortAndLong, help: "Messages per second per producer; 0 is as fast as possible.") var rate: Double = 0
    @Flag(help: "Persistent messages (delivery_mode 2) on durable queues.") var persistent = false
    @Option(help: "Publisher confirms with at most this many outstanding per producer; 0 is off.") var confirm = 0
    @Option(help: "Consumer prefetch (basic.qos); 0 is unlimited.") var prefetch: UInt16 = 0
    @Flag(help: "Consume with auto-ack.") var autoAck = false
    @Option(help: "Ack with multiple=true every N messages.") var multiAckEvery = 1
    @Option(help: "Queue arguments, e.g. x-queue-type=classic,x-max-length=1000.") var queueArgs = ""
    @Flag(help: "Number messages and report lost and duplicated ones (each message must reach one queue).") var verify = false
    @Option(help: "Only open this many idle connections and hold them for --duration.") var idleConnections = 0
    @Option(help: "Event-loop threads of the client.") var threads = 1
    @Option(help: "A label for this run, echoed in the JSON line.") var label = ""
    @Flag(help: "Keep the queues at the end.") var keepQueues = false
    @Flag(help: "Do not purge the queues at the start (to drain a backlog left by an earlier run).") var noPurge = false
    @Option(help: "Each producer stops after this many messages; the run ends when all are published (and confirmed).") var pmessages: UInt64 = 0
    @Option(help: "The run ends once the consumers have taken this many messages in all.") var cmessages: UInt64 = 0
    @Flag(help: "No per-second progress lines.") var quiet = false
    @Option(help: "CA bundle (PEM) that verifies an amqps:// broker (default: the system's trust store).") var tlsCa: String?

    func validate() throws {
        if size < Payload.minimumSize { throw ValidationError("--size must be at least \(Payload.minimumSize)") }
        if queues < 1 { throw ValidationError("--queues must be at least 1") }
    }

    func run() async throws {
        var config = try AMQPClientConfiguration(url: uri)
        if let tlsCa, config.tls != nil {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(tlsCa)
            config.tls = try NIOSSLContext(configuration: tls)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let cpuBefore = Self.processCPUSeconds()
        if idleConnections > 0 {
            try await runIdle(config, group, cpuBefore)
        } else {
            try await runLoad(config, group, cpuBefore)
        }
        try await group.shutdownGracefully()
    }

    /// The configuration for another URI, with --uri's TLS settings.
    func configuration(_ other: String?, like config: AMQPClientConfiguration) throws -> AMQPClientConfiguration {
        guard let other else { return config }
        var c = try AMQPClientConfiguration(url: other)
        if c.tls != nil { c.tls = config.tls }
        return c
    }

    func runLoad(_ config: AMQPClientConfiguration, _ group: MultiThreadedEventLoopGroup, _ cpuBefore: Double) async throws {

        let queueNames = (0..<queues).map { queuePattern.replacingOccurrences(of: "%d", with: "\($0)") }
        let setup = try await AMQPClientConnection.connect(try configuration(declareUri, like: config), eventLoopGroup: group)
        let sch = try await setup.openChannel()
        let args = try Self.parseArguments(queueArgs)
        for q in queueNames {
            try await sch.queueDeclare(q, durable: persistent, arguments: args)
            if !noPurge { try await sch.queuePurge(q) }
        }
        if !exchange.isEmpty {
            try await sch.exchangeDeclare(exchange, type: exchangeType, durable: persistent)
            for q in queueNames { try await sch.queueBind(q, exchange: exchange, routingKey: routingKey ?? q) }
        }

        var consumerList: [Consumer] = []
        let consumerConfig = try configuration(consumerUri, like: config)
        for j in 0..<consumers {
            let conn = try await AMQPClientConnection.connect(consumerConfig, eventLoopGroup: group)
            let c = Consumer(
                channel: try await conn.openChannel(), autoAck: autoAck, ackEvery: multiAckEvery, verify: verify,
                ackDelay: consumerDelayMs > 0 ? .milliseconds(Int64(consumerDelayMs)) : nil)
            try await c.start(queue: queueNames[j % queues], prefetch: prefetch)
            consumerList.append(c)
        }
        var producerList: [Producer] = []
        let properties = persistent ? BasicProperties(deliveryMode: 2) : BasicProperties.empty
        for i in 0..<producers {
            let conn = try await AMQPClientConnection.connect(config, eventLoopGroup: group)
            let ch = try await conn.openChannel()
            let q = queueNames[i % queues]
            let key = exchange.isEmpty ? q : (routingKey ?? q)
            let template = PublishTemplate(channel: ch.number, exchange: exchange, routingKey: key, properties: properties, bodySize: size)
            producerList.append(Producer(index: i, channel: ch, template: template, confirmBound: confirm, rate: rate, limit: pmessages))
        }

        let start = ContinuousClock.now
        for p in producerList { try await p.start() }
        var last = (published: UInt64(0), consumed: UInt64(0))
        var elapsed = 0.0
        let countedRun = pmessages > 0 || cmessages > 0
        while elapsed < duration {
            try await Task.sleep(for: .seconds(countedRun ? min(0.05, duration - elapsed) : min(1.0, duration - elapsed)))
            elapsed = Self.seconds(ContinuousClock.now - start)
            if countedRun {
                let now = try await Self.totals(producerList, consumerList)
                let produced = pmessages == 0 || (now.published >= pmessages * UInt64(producers) && (confirm == 0 || now.confirmed + now.nacked >= now.published))
                let consumedAll = cmessages == 0 || now.consumed >= cmessages
                if produced && consumedAll { break }
                continue
            }
            if !quiet {
                let now = try await Self.totals(producerList, consumerList)
                print(String(format: "%6.1fs published %9.0f/s  consumed %9.0f/s  confirmed %llu", elapsed, Double(now.published - last.published), Double(now.consumed - last.consumed), now.confirmed))
                last = (now.published, now.consumed)
            }
        }
        for p in producerList { await p.stop() }
        let runTime = Self.seconds(ContinuousClock.now - start)
        let atStop = try await Self.totals(producerList, consumerList)

        // Drain: let consumers take what is still on its way (up to 10 s without progress... or
        // until every published message was consumed).
        let fanoutFactor = exchangeType == "fanout" && !exchange.isEmpty ? UInt64(queues) : 1
        var drained = atStop
        var quietSince = ContinuousClock.now
        while ContinuousClock.now - quietSince < .seconds(2) {
            try await Task.sleep(for: .milliseconds(50))
            let now = try await Self.totals(producerList, consumerList)
            if now.consumed != drained.consumed || now.confirmed != drained.confirmed { quietSince = ContinuousClock.now }
            drained = now
            if consumers == 0 || now.consumed >= now.published * fanoutFactor, confirm == 0 || now.confirmed + now.nacked >= now.published { break }
        }
        for c in consumerList { await c.flushAcks() }

        var histogram = LatencyHistogram()
        var ledger = VerifyLedger()
        for c in consumerList {
            let (h, l) = try await c.channel.connection.eventLoop.submit { (c.histogram, c.seen) }.get()
            histogram.merge(h)
            if verify { ledger.merge(l) }
        }
        var lost: UInt64 = 0
        if verify {
            for p in producerList {
                let sent = try await p.loop.submit { confirm > 0 ? p.confirmed : p.published }.get()
                lost += sent - min(sent, ledger.received(producer: p.index, below: sent))
            }
        }
        let cpu = Self.processCPUSeconds() - cpuBefore

        let result = RunResult(
            label: label, producers: producers, consumers: consumers, queues: queues, size: size, durationSeconds: runTime,
            published: drained.published, confirmed: drained.confirmed, nacked: drained.nacked, consumed: drained.consumed,
            publishedPerSecond: Double(atStop.published) / runTime, confirmedPerSecond: Double(atStop.confirmed) / runTime,
            consumedPerSecond: Double(atStop.consumed) / runTime,
            latency: .init(histogram), lost: verify ? lost : nil, duplicated: verify ? ledger.duplicates : nil,
            clientCPUSeconds: cpu, idleConnections: nil)
        result.printSummary()

        if !keepQueues {
            for q in queueNames { _ = try? await sch.queueDelete(q) }
            if !exchange.isEmpty { try? await sch.exchangeDelete(exchange) }
        }
        for c in consumerList { try? await c.channel.connection.close() }
        for p in producerList { try? await p.channel.connection.close() }
        try? await setup.close()
    }

    func runIdle(_ config: AMQPClientConfiguration, _ group: MultiThreadedEventLoopGroup, _ cpuBefore: Double) async throws {
        var conns: [AMQPClientConnection] = []
        let start = ContinuousClock.now
        for _ in 0..<idleConnections {
            let c = try await AMQPClientConnection.connect(config, eventLoopGroup: group)
            _ = try await c.openChannel()
            conns.append(c)
        }
        if !quiet { print("opened \(idleConnections) connections in \(Self.seconds(ContinuousClock.now - start)) s; holding") }
        try await Task.sleep(for: .seconds(duration))
        for c in conns { try? await c.close() }
        RunResult(
            label: label, producers: 0, consumers: 0, queues: 0, size: 0, durationSeconds: duration, published: 0, confirmed: 0,
            nacked: 0, consumed: 0, publishedPerSecond: 0, confirmedPerSecond: 0, consumedPerSecond: 0,
            latency: .init(LatencyHistogram()), lost: nil, duplicated: nil,
            clientCPUSeconds: Self.processCPUSeconds() - cpuBefore, idleConnections: idleConnections
        ).printSummary()
    }

    struct Totals { var published: UInt64, confirmed: UInt64, nacked: UInt64, consumed: UInt64 }

    static func totals(_ producers: [Producer], _ consumers: [Consumer]) async throws -> Totals {
        var t = Totals(published: 0, confirmed: 0, nacked: 0, consumed: 0)
        for p in producers {
            let (a, b, c) = try await p.loop.submit { (p.published, p.confirmed, p.nacked) }.get()
            t.published += a
            t.confirmed += b
            t.nacked += c
        }
        for c in consumers {
            t.consumed += try await c.channel.connection.eventLoop.submit { c.consumed }.get()
        }
        return t
    }

    /// `k=v,k=v`; integer values become integers, true/false booleans, the rest strings.
    static func parseArguments(_ s: String) throws -> FieldTable {
        var t = FieldTable()
        for pair in s.split(separator: ",") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ValidationError("--queue-args: expected key=value, got '\(pair)'") }
            if let n = Int64(kv[1]) {
                t[kv[0]] = .int64(n)
            } else if kv[1] == "true" || kv[1] == "false" {
                t[kv[0]] = .boolean(kv[1] == "true")
            } else {
                t[kv[0]] = .string(kv[1])
            }
        }
        return t
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// User plus system CPU time of this process, in seconds.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
    }
}

/// What a run measured; printed for people, then as one JSON line for scripts.
struct RunResult: Encodable {
    struct Latency: Encodable {
        var p50: Double, p95: Double, p99: Double, p999: Double, max: Double, samples: UInt64

        init(_ h: LatencyHistogram) {
            func us(_ ns: UInt64) -> Double { (Double(ns) / 1000).rounded(toPlaces: 1) }
            p50 = us(h.percentile(50))
            p95 = us(h.percentile(95))
            p99 = us(h.percentile(99))
            p999 = us(h.percentile(99.9))
            max = us(h.max)
            samples = h.total
        }

        enum CodingKeys: String, CodingKey { case p50, p95, p99, p999 = "p99.9", max, samples }
    }

    var label: String
    var producers: Int, consumers: Int, queues: Int, size: Int
    var durationSeconds: Double
    var published: UInt64, confirmed: UInt64, nacked: UInt64, consumed: UInt64
    var publishedPerSecond: Double, confirmedPerSecond: Double, consumedPerSecond: Double
    /// End-to-end latency in microseconds.
    var latency: Latency
    var lost: UInt64?, duplicated: UInt64?
    var clientCPUSeconds: Double
    var idleConnections: Int?

    func printSummary() {
        if idleConnections == nil {
            print(String(format: "published %.0f msg/s, confirmed %.0f msg/s, consumed %.0f msg/s over %.1f s", publishedPerSecond, confirmedPerSecond, consumedPerSecond, durationSeconds))
            print("latency (us): p50 \(latency.p50)  p95 \(latency.p95)  p99 \(latency.p99)  p99.9 \(latency.p999)  max \(latency.max)")
            if let lost, let duplicated { print("verify: \(lost) lost, \(duplicated) duplicated") }
            if consumed > 0 {
                print(String(format: "client CPU %.2f s (%.2f us per consumed message)", clientCPUSeconds, clientCPUSeconds * 1e6 / Double(consumed)))
            }
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        if let data = try? encoder.encode(self), let line = String(data: data, encoding: .utf8) { print(line) }
    }
}

extension Double {
    func rounded(toPlaces p: Int) -> Double {
        let m = pow(10, Double(p))
        return (self * m).rounded() / m
    }
}
