import AMQPProtocol
import Foundation
import NIOCore
import Testing

@testable import WarrenCore

/// Records what a connection asks of its socket.
final class RecordingTransport: ConnectionTransport {
    var outputPendingCalls = 0
    var disconnected = false
    var heartbeatInterval: Int?
    var closeTimerStarted = false
    var reading = true

    func outputPending() { outputPendingCalls += 1 }
    func disconnect() { disconnected = true }
    func startHeartbeatTimer(intervalMilliseconds: Int) { heartbeatInterval = intervalMilliseconds }
    func startCloseTimer() { closeTimerStarted = true }
    func setReading(_ enabled: Bool) { reading = enabled }
}

/// A client driving an `AMQPConnection` through bytes, with no socket: frames in, frames out.
final class TestClient {
    let connection: AMQPConnection
    let transport = RecordingTransport()
    private var decoder = AMQPFrameDecoder(maxFrameSize: 0)
    private var assemblers: [UInt16: CommandAssembler] = [:]
    /// Every frame the server sent, in order.
    var frames: [AMQPFrame] = []
    /// Every byte the server sent.
    var raw: [UInt8] = []
    private var read = 0

    init(_ broker: Broker, peer: PeerInfo = PeerInfo(address: "127.0.0.1:5555", isLoopback: true)) {
        connection = AMQPConnection(broker: broker, peer: peer)
        connection.start(transport: transport)
    }

    /// Sends raw bytes as one read batch.
    func sendBytes(_ bytes: ByteBuffer) {
        connection.receive(bytes)
        connection.receiveComplete()
        collect()
    }

    func send(_ frames: AMQPFrame...) { sendBytes(encodeFrames(frames)) }

    func send(channel: UInt16, _ method: AMQPMethod) { send(.method(channel: channel, method)) }

    func publish(channel: UInt16 = 1, exchange: String = "", routingKey: String, body: String, properties: BasicProperties = .empty, mandatory: Bool = false) {
        var b = ByteBuffer()
        b.writeAMQPCommand(
            channel: channel, .basicPublish(BasicPublish(exchange: exchange, routingKey: routingKey, mandatory: mandatory)),
            properties: properties, body: ByteBuffer(string: body), maxFrameSize: 131_072)
        sendBytes(b)
    }

    /// Takes whatever the server wrote (also output caused by other connections).
    func collect() {
        while var out = connection.takeOutbound() {
            raw += out.readableBytesView
            if raw.starts(with: Array("AMQP".utf8)) { continue }  // a protocol header, not frames
            while let f = try! decoder.next(&out) { frames.append(f) }
        }
    }

    /// The frames not yet looked at.
    func unread() -> [AMQPFrame] {
        collect()
        defer { read = frames.count }
        return Array(frames[read...])
    }

    /// Unread methods on a channel, as whole commands (content attached).
    func commands(channel: UInt16? = nil) -> [AMQPCommand] {
        var out: [AMQPCommand] = []
        for f in unread() {
            guard channel == nil || f.channel == channel else { continue }
            var a = assemblers[f.channel] ?? CommandAssembler()
            let c: AMQPCommand?
            switch f {
            case .method(_, let m): c = try! a.method(m)
            case .header(_, let h): c = try! a.header(h)
            case .body(_, let b): c = try! a.body(b)
            default: c = nil
            }
            assemblers[f.channel] = a
            if let c { out.append(c) }
        }
        return out
    }

    func methods(channel: UInt16? = nil) -> [AMQPMethod] { commands(channel: channel).map(\.method) }

    /// Protocol header, start-ok, tune-ok, open: a connection ready for channels.
    @discardableResult
    func handshake(
        user: String = "guest", password: String = "guest", vhost: String = "/", heartbeat: UInt16 = 0, channelMax: UInt16 = 2047
    ) -> [AMQPMethod] {
        var b = ByteBuffer()
        b.writeAMQPProtocolHeader()
        sendBytes(b)
        let response = [0] + Array(user.utf8) + [0] + Array(password.utf8)
        let caps: FieldTable = ["authentication_failure_close": true, "consumer_cancel_notify": true]
        send(channel: 0, .connectionStartOk(ConnectionStartOk(clientProperties: ["capabilities": .table(caps)], mechanism: "PLAIN", response: response)))
        send(channel: 0, .connectionTuneOk(ConnectionTuneOk(channelMax: channelMax, frameMax: 131_072, heartbeat: heartbeat)))
        send(channel: 0, .connectionOpen(ConnectionOpen(virtualHost: vhost)))
        return methods(channel: 0)
    }

    func openChannel(_ n: UInt16 = 1) {
        send(channel: n, .channelOpen(ChannelOpen()))
        #expect(methods(channel: n).last == .channelOpenOk(ChannelOpenOk()))
    }

    /// A client handshaken with channel 1 open.
    static func ready(_ broker: Broker) -> TestClient {
        let c = TestClient(broker)
        c.handshake()
        c.openChannel()
        return c
    }
}

extension AMQPMethod {
    /// The reply code of a channel.close or connection.close.
    var closeCode: UInt16? {
        switch self {
        case .channelClose(let c): return c.replyCode
        case .connectionClose(let c): return c.replyCode
        default: return nil
        }
    }

    var closeText: String? {
        switch self {
        case .channelClose(let c): return c.replyText
        case .connectionClose(let c): return c.replyText
        default: return nil
        }
    }
}

func encodeFrames(_ frames: [AMQPFrame]) -> ByteBuffer {
    var b = ByteBuffer()
    for f in frames { b.writeAMQPFrame(f) }
    return b
}

/// The default vhost of a fresh broker that stays alive for the whole test run. A vhost refers to
/// its broker unowned (the broker owns its vhosts), so a test that keeps only the vhost must not
/// let the broker go.
func liveDefaultVirtualHost() -> VirtualHost {
    let broker = Broker()
    LiveBrokers.shared.keep(broker)
    return broker.vhosts["/"]!
}

final class LiveBrokers: @unchecked Sendable {
    static let shared = LiveBrokers()
    private let lock = NSLock()
    private var brokers: [Broker] = []
    func keep(_ broker: Broker) { lock.withLock { brokers.append(broker) } }
}
