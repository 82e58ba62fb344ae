import AMQPProtocol
import Foundation
import Logging
import NIOCore
import WarrenCore
import WarrenCoreInProcess

// The fuzz target over the codec: frame reader (before and after tune), method decoders,
// content headers, field tables, and the command assembler. Built two ways:
//
// - `Scripts/fuzz` builds it with `-sanitize=fuzzer,address -DFUZZING`: libFuzzer calls
//   `LLVMFuzzerTestOneInput` with generated inputs.
// - A normal build makes `warren-fuzz FILE...`, which runs files through the same code (the
//   regression tests replay the crashers and the seed corpus this way).
//
// Besides "does not crash", it checks a property: what decodes, re-encodes to bytes that
// decode and re-encode to the same bytes (byte-level, so NaN doubles compare fine).

enum Fuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        guard let selector = data.first else { return }
        var buffer = ByteBuffer(bytes: data.dropFirst())
        switch selector % 5 {
        case 0: frames(&buffer, chunk: Int(selector / 5) + 1)
        case 1: method(&buffer)
        case 2: table(&buffer)
        case 3: properties(&buffer)
        default: broker(&buffer, chunk: Int(selector / 5) + 1)
        }
    }

    /// The broker core behind the codec, on a fresh broker: connection A (logged in, channel 1
    /// open) gets the input as frames after its handshake, in chunks; connection B consumes
    /// queue "q" with prefetch 2, so A's traffic reaches another connection. Then the broker
    /// ticks and both connections go away. Whatever a client sends must
    /// end in a reply or a close, never a crash, and leave the broker consistent.
    static func broker(_ input: inout ByteBuffer, chunk: Int) {
        let broker = Broker(logger: Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() })
        let transport = NullTransport()
        // B consumes "q" (declared here), so A's traffic can reach another connection.
        let connections = [
            AMQPConnection.inProcess(broker: broker, transport: transport),
            AMQPConnection.inProcess(
                broker: broker, transport: transport,
                setup: [.queueDeclare(QueueDeclare(queue: "q")), .basicQos(BasicQos(prefetchCount: 2)), .basicConsume(BasicConsume(queue: "q", consumerTag: "b"))]),
        ]
        let a = connections[0]
        while input.readableBytes > 0 {
            let slice = input.readSlice(length: min(chunk, input.readableBytes))!
            a.receive(slice)
            a.receiveComplete()
            _ = a.takeOutbound()
            _ = connections[1].takeOutbound()
        }
        for _ in 0..<3 { broker.tick() }
        for c in connections {
            _ = c.takeOutbound()
            c.transportClosed()
        }
        precondition(broker.connections.isEmpty, "connections left registered after both closed")
    }

    /// Frames as the server reads them: protocol header first, small frames before tune, fed in
    /// chunks; each command goes through the assembler.
    static func frames(_ input: inout ByteBuffer, chunk: Int) {
        var reader = AMQPFrameReader(decoder: AMQPFrameDecoder(maxFrameSize: 8192, expectsProtocolHeader: true))
        var assembler = CommandAssembler(maxBodySize: 1 << 20)
        while input.readableBytes > 0 {
            let slice = input.readSlice(length: min(chunk, input.readableBytes))!
            reader.append(slice)
            while true {
                let frame: AMQPFrame?
                do {
                    frame = try reader.next()
                } catch {
                    return  // a frame error closes the connection: nothing more is read
                }
                guard let frame else { break }
                switch frame {
                case .method(let ch, let m):
                    roundTripMethod(m, channel: ch)
                    _ = try? assembler.method(m)
                case .header(_, let h):
                    _ = try? assembler.header(h)
                case .body(_, let b):
                    _ = try? assembler.body(b)
                case .protocolHeader, .heartbeat:
                    break
                }
            }
        }
    }

    static func roundTripMethod(_ m: AMQPMethod, channel: UInt16) {
        var once = ByteBuffer()
        once.writeAMQPMethodFrame(channel: channel, m)
        var decoder = AMQPFrameDecoder(maxFrameSize: UInt32.max)
        var copy = once
        guard case .method(_, let again)? = try? decoder.next(&copy) else {
            fatalError("a decoded method did not decode after re-encoding: \(m)")
        }
        var twice = ByteBuffer()
        twice.writeAMQPMethodFrame(channel: channel, again)
        precondition(once == twice, "method re-encoding is not stable: \(m)")
    }

    static func method(_ input: inout ByteBuffer) {
        guard let m = try? AMQPMethod.decode(from: &input) else { return }
        roundTripMethod(m, channel: 1)
    }

    static func table(_ input: inout ByteBuffer) {
        guard let t = try? input.amqpReadFieldTable() else { return }
        var once = ByteBuffer()
        once.amqpWriteFieldTable(t)
        var copy = once
        guard let again = try? copy.amqpReadFieldTable() else { fatalError("a decoded table did not decode after re-encoding") }
        var twice = ByteBuffer()
        twice.amqpWriteFieldTable(again)
        precondition(once == twice, "field table re-encoding is not stable")
    }

    static func properties(_ input: inout ByteBuffer) {
        guard let p = try? BasicProperties(decodingFrom: &input) else { return }
        var once = ByteBuffer()
        p.encode(into: &once)
        var copy = once
        guard let again = try? BasicProperties(decodingFrom: &copy) else { fatalError("decoded properties did not decode after re-encoding") }
        var twice = ByteBuffer()
        again.encode(into: &twice)
        precondition(once == twice, "properties re-encoding is not stable")
    }
}

#if FUZZING
    // libFuzzer's driver, called from our own main (SwiftPM names the executable's entry point,
    // so libFuzzer's main is not used).
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    @main
    struct FuzzMain {
        static func main() {
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            let code = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                Fuzz.run(UnsafeRawBufferPointer(start: data, count: size))
                return 0
            }
            exit(code)
        }
    }
#else
    @main
    struct FuzzReplay {
        static func main() {
            var count = 0
            for path in CommandLine.arguments.dropFirst() {
                var files = [path]
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
                    files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
                }
                for file in files {
                    guard let data = FileManager.default.contents(atPath: file) else { continue }
                    data.withUnsafeBytes { Fuzz.run($0) }
                    count += 1
                }
            }
            print("warren-fuzz: \(count) inputs ran without a crash")
        }
    }
#endif
