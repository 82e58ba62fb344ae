import Logging
public import NIOCore
import NIOSSL
import NIOTLS
import WarrenCore
public import WarrenTLS

/// TLS for an AMQP listener: the settings (with the reloadable context) and how long a client
/// has to finish the TLS handshake.
public struct AMQPTLSOptions: Sendable {
    public var contexts: TLSContextBox
    public var handshakeTimeout: TimeAmount
    public init(contexts: TLSContextBox, handshakeTimeout: TimeAmount = .seconds(5)) {
        self.contexts = contexts
        self.handshakeTimeout = handshakeTimeout
    }
}

/// Sits after the NIOSSL handler: closes connections whose TLS handshake does not finish in
/// time, logs failed handshakes (wrong version, unknown CA, expired or missing certificate),
/// and tells the AMQP connection whom a verified client certificate names (SASL EXTERNAL).
final class TLSHandshakeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let options: AMQPTLSOptions
    let connection: AMQPConnection
    private var timer: Scheduled<Void>?
    private var done = false

    init(options: AMQPTLSOptions, connection: AMQPConnection) {
        self.options = options
        self.connection = connection
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let logger = connection.logger
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: options.handshakeTimeout) {
            logger.warning("TLS handshake timed out", metadata: ["peer": "\(self.connection.peer.address)"])
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            done = true
            timer?.cancel()
            timer = nil
            if let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self), let cert = ssl.peerCertificate {
                let login = options.contexts.settings.loginName(for: cert)
                connection.setCertificateLogin(login)
                connection.logger.info("TLS client certificate verified", metadata: ["login": "\(login ?? "-")"])
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            connection.logger.warning("TLS handshake failed", metadata: ["peer": "\(connection.peer.address)", "error": "\(error)"])
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }
}
