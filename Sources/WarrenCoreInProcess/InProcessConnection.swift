public import AMQPProtocol
import NIOCore
public import WarrenCore

/// A transport for connections that live inside this process (benchmarks, the fuzzer): no
/// socket, no timers; the caller takes the output with `takeOutbound()` or drops it.
public final class NullTransport: ConnectionTransport {
    public init() {}
    public func outputPending() {}
    public func disconnect() {}
    public func startHeartbeatTimer(intervalMilliseconds: Int) {}
    public func startCloseTimer() {}
    public func setReading(_ enabled: Bool) {}
}

extension AMQPConnection {
    /// A connection to `broker` inside this process, logged in as guest to "/" with channel 1
    /// open, then fed `setup` (methods on channel 1); its output so far is dropped.
    public static func inProcess(broker: Broker, transport: NullTransport, setup: [AMQPMethod] = []) -> AMQPConnection {
        let c = AMQPConnection(broker: broker, peer: PeerInfo(address: "127.0.0.1:1", isLoopback: true))
        c.start(transport: transport)
        var b = ByteBuffer()
        b.writeAMQPProtocolHeader()
        b.writeAMQPFrame(
            .method(channel: 0, .connectionStartOk(ConnectionStartOk(clientProperties: [:], mechanism: "PLAIN", response: Array("\0guest\0guest".utf8)))))
        b.writeAMQPFrame(.method(channel: 0, .connectionTuneOk(ConnectionTuneOk(channelMax: 0, frameMax: 131_072, heartbeat: 0))))
        b.writeAMQPFrame(.method(channel: 0, .connectionOpen(ConnectionOpen())))
        b.writeAMQPFrame(.method(channel: 1, .channelOpen(ChannelOpen())))
        for m in setup { b.writeAMQPFrame(.method(channel: 1, m)) }
        c.receive(b)
        c.receiveComplete()
        _ = c.takeOutbound()
        return c
    }
}
