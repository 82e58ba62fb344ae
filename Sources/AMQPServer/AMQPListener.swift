public import NIOCore
import Logging
import NIOPosix
import NIOSSL
import WarrenTLS
public import WarrenCore

/// Socket-level settings of the AMQP listener.
public struct AMQPServerConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port; `AMQPListener.localAddress` tells which.
    public var port: Int
    /// How long a client has from connecting to connection.open-ok.
    public var handshakeTimeout: TimeAmount
    /// How long we wait for close-ok after sending connection.close.
    public var closeTimeout: TimeAmount
    /// Set for an AMQPS listener.
    public var tls: AMQPTLSOptions?
    /// Sockets beyond this many connections (all listeners together) are closed at once, as
    /// RabbitMQ's `connection_max`; nil is no limit.
    public var maxConnections: Int?

    public init(host: String = "0.0.0.0", port: Int = 5672, handshakeTimeout: TimeAmount = .seconds(10), closeTimeout: TimeAmount = .seconds(3)) {
        self.host = host
        self.port = port
        self.handshakeTimeout = handshakeTimeout
        self.closeTimeout = closeTimeout
    }
}

/// A bound AMQP listener. Every connection it accepts runs on the broker's event loop.
public final class AMQPListener: Sendable {
    public let serverChannel: any Channel
    public let localAddress: SocketAddress
    let broker: NIOLoopBound<Broker>

    private init(serverChannel: any Channel, broker: NIOLoopBound<Broker>) {
        self.serverChannel = serverChannel
        self.localAddress = serverChannel.localAddress!
        self.broker = broker
    }

    /// Binds the listener. `broker` must belong to `brokerLoop`; accepted sockets are placed on it.
    public static func bind(
        configuration: AMQPServerConfiguration,
        broker: NIOLoopBound<Broker>,
        brokerLoop: any EventLoop
    ) async throws -> AMQPListener {
        let bootstrap = ServerBootstrap(group: brokerLoop)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 262_144))
            .childChannelInitializer { channel in
                if let max = configuration.maxConnections, broker.value.connections.count >= max {
                    broker.value.logger.warning(
                        "connection refused: the node's connection limit is reached",
                        metadata: ["peer": "\(peerInfo(channel.remoteAddress).address)", "limit": "\(max)"])
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture {
                    var peer = peerInfo(channel.remoteAddress)
                    peer.localAddress = channel.localAddress.map { peerInfo($0).address } ?? ""
                    peer.isTLS = configuration.tls != nil
                    let connection = AMQPConnection(broker: broker.value, peer: peer)
                    let handler = AMQPConnectionHandler(connection: connection, configuration: configuration)
                    if let tls = configuration.tls {
                        // TLS wraps the AMQP pipeline; the AMQP handler sees plain bytes.
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.contexts.context))
                        try channel.pipeline.syncOperations.addHandler(TLSHandshakeHandler(options: tls, connection: connection))
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        return AMQPListener(serverChannel: channel, broker: broker)
    }

    /// Stops accepting, asks every client to close (320 CONNECTION_FORCED, as RabbitMQ does at
    /// shutdown), and waits up to `timeout` for them to go.
    public func shutdown(reason: String, timeout: TimeAmount) async {
        try? await serverChannel.close()
        let loop = broker.eventLoop
        let broker = self.broker
        try? await loop.submit {
            for c in broker.value.connections.values { c.close(reason: reason) }
        }.get()
        let deadline = NIODeadline.now() + timeout
        while NIODeadline.now() < deadline {
            let remaining = try? await loop.submit { broker.value.connections.count }.get()
            if remaining ?? 0 == 0 { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The peer as the broker sees it: its address and whether it is on loopback (what
    /// `--loopback-users` checks, for AMQP and the management API alike).
    public static func peerInfo(_ address: SocketAddress?) -> PeerInfo {
        guard let address else { return PeerInfo(address: "unknown", isLoopback: false) }
        switch address {
        case .v4:
            let ip = address.ipAddress ?? "?"
            return PeerInfo(address: "\(ip):\(address.port ?? 0)", isLoopback: ip.hasPrefix("127."))
        case .v6:
            let ip = address.ipAddress ?? "?"
            return PeerInfo(address: "[\(ip)]:\(address.port ?? 0)", isLoopback: ip == "::1" || ip.hasPrefix("::ffff:127."))
        case .unixDomainSocket:
            return PeerInfo(address: "\(address)", isLoopback: true)
        }
    }
}
