import AMQPProtocol
import ArgumentParser
import CMallocCounter
import Foundation
import NIOCore
import Logging
import WarrenCore
import WarrenCoreInProcess

/// The broker core with no sockets: publish frames go in as 64 KiB "reads", deliveries come out
/// and are dropped. What is left is the broker's own cost per message: CPU time and allocations.
@main
struct Microbench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-microbench",
        abstract: "CPU time and allocations per message on the broker's hot path, without IO.")

    @Option(help: "Scenarios: deliver, ack, fanout, confirm (comma-separated).") var scenarios = "deliver,ack,fanout,confirm"
    @Option(help: "Messages per scenario.") var messages = 1_000_000
    @Option(help: "Body size.") var size = 16
    @Flag(help: "One JSON line per scenario only.") var json = false

    /// Allocation counts differ by build: the smoke test holds each to its own ceiling.
    #if DEBUG
        static let build = "debug"
    #else
        static let build = "release"
    #endif

    func run() throws {
        for name in scenarios.split(separator: ",") {
            let r = try Scenario(name: String(name), messages: messages, size: size).run()
            if json {
                print(#"{"scenario":"\#(r.name)","build":"\#(Self.build)","messages":\#(r.messages),"ns_per_message":\#(Int(r.nsPerMessage)),"allocations_per_message":\#(String(format: "%.2f", r.allocationsPerMessage))}"#)
            } else {
                print(String(format: "%-8@ %9d msgs  %7.0f ns/msg  %6.2f allocations/msg", r.name, r.messages, r.nsPerMessage, r.allocationsPerMessage))
            }
        }
    }
}


struct Scenario {
    struct Result {
        var name: String
        var messages: Int
        var nsPerMessage: Double
        var allocationsPerMessage: Double
    }

    let name: String
    let messages: Int
    let size: Int

    func connect(_ broker: Broker, _ transport: NullTransport) -> AMQPConnection {
        AMQPConnection.inProcess(broker: broker, transport: transport)
    }

    func send(_ c: AMQPConnection, _ methods: AMQPMethod...) {
        var b = ByteBuffer()
        for m in methods { b.writeAMQPFrame(.method(channel: 1, m)) }
        c.receive(b)
        c.receiveComplete()
        _ = c.takeOutbound()
    }

    func run() throws -> Result {
        let broker = Broker(logger: Logger(label: "microbench") { _ in SwiftLogNoOpLogHandler() })
        let transport = NullTransport()
        let publisher = connect(broker, transport)
        var consumers: [AMQPConnection] = []
        var routingKey = "q"
        var exchange = ""
        let queueCount = name == "fanout" ? 10 : 1
        for i in 0..<queueCount {
            let c = connect(broker, transport)
            let q = "q\(i)"
            send(c, .queueDeclare(QueueDeclare(queue: q)))
            if name == "fanout" { send(c, .queueBind(QueueBind(queue: q, exchange: "amq.fanout"))) }
            if name == "ack" { send(c, .basicQos(BasicQos(prefetchCount: 1000))) }
            send(c, .basicConsume(BasicConsume(queue: q, consumerTag: "ctag-\(i)", noAck: name != "ack")))
            consumers.append(c)
        }
        if name == "fanout" {
            exchange = "amq.fanout"
            routingKey = ""
        } else {
            routingKey = "q0"
        }
        if name == "confirm" { send(publisher, .confirmSelect(ConfirmSelect())) }

        // One "read" of publishes, fed again and again.
        let body = ByteBuffer(repeating: 0x2A, count: size)
        var chunk = ByteBuffer()
        var perChunk = 0
        while chunk.readableBytes < 65_536 - 200 {
            chunk.writeAMQPCommand(channel: 1, .basicPublish(BasicPublish(exchange: exchange, routingKey: routingKey)), body: body, maxFrameSize: 131_072)
            perChunk += 1
        }
        var acks = ByteBuffer()
        var nextTag: UInt64 = 1

        let rounds = max(1, messages / perChunk)
        // Warm up: sizes the queues' and buffers' storage.
        for _ in 0..<min(20, rounds) { cycle(publisher, consumers, chunk, perChunk, &acks, &nextTag) }

        let allocationsBefore = warren_allocation_count()
        let cpuBefore = threadCPUNanoseconds()
        for _ in 0..<rounds { cycle(publisher, consumers, chunk, perChunk, &acks, &nextTag) }
        let cpu = threadCPUNanoseconds() - cpuBefore
        let allocations = warren_allocation_count() - allocationsBefore
        let deliveries = rounds * perChunk * queueCount
        return Result(
            name: name, messages: deliveries, nsPerMessage: Double(cpu) / Double(deliveries),
            allocationsPerMessage: Double(allocations) / Double(deliveries))
    }

    private func cycle(_ publisher: AMQPConnection, _ consumers: [AMQPConnection], _ chunk: ByteBuffer, _ perChunk: Int, _ acks: inout ByteBuffer, _ nextTag: inout UInt64) {
        publisher.receive(chunk)
        publisher.receiveComplete()
        _ = publisher.takeOutbound()
        for c in consumers { _ = c.takeOutbound() }
        if name == "ack" {
            // The consumer acks each delivery, as a client would, in one read.
            acks.clear()
            for _ in 0..<perChunk {
                acks.writeAMQPMethodFrame(channel: 1, .basicAck(BasicAck(deliveryTag: nextTag)))
                nextTag += 1
            }
            consumers[0].receive(acks)
            consumers[0].receiveComplete()
            _ = consumers[0].takeOutbound()
        }
    }

    func threadCPUNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
