import Logging
import NIOCore
import WarrenCore

/// The NIO side of one AMQP connection: moves bytes between the socket and an `AMQPConnection`
/// and runs its timers. All protocol logic lives in WarrenCore.
///
/// Writes are batched: everything produced while handling one read batch goes out in one flush
/// at `channelReadComplete`; output caused by other connections (deliveries) is flushed once
/// per event-loop iteration.
final class AMQPConnectionHandler: ChannelInboundHandler, ConnectionTransport {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let connection: AMQPConnection
    let configuration: AMQPServerConfiguration
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private var disconnecting = false
    private var handshakeTimer: Scheduled<Void>?
    private var heartbeatTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?

    init(connection: AMQPConnection, configuration: AMQPServerConfiguration) {
        self.connection = connection
        self.configuration = configuration
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.start(transport: self)
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: configuration.handshakeTimeout) {
            self.connection.handshakeTimedOut()
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.receive(unwrapInboundIn(data))
        if handshakeTimer != nil && connection.state == .open {
            handshakeTimer?.cancel()
            handshakeTimer = nil
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.receiveComplete()
        flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        connection.transportClosed()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.setWritable(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Resets and broken pipes end here; the connection cleans up in channelInactive.
        connection.logger.debug("socket error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func cancelTimers() {
        handshakeTimer?.cancel()
        heartbeatTimer?.cancel()
        closeTimer?.cancel()
        handshakeTimer = nil
        heartbeatTimer = nil
        closeTimer = nil
    }

    private func flush() {
        guard let context, let out = connection.takeOutbound() else { return }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    // MARK: ConnectionTransport

    func outputPending() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.flush()
        }
    }

    func disconnect() {
        guard !disconnecting, let context else { return }
        disconnecting = true
        if let out = connection.takeOutbound() {
            context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
    }

    func startHeartbeatTimer(intervalMilliseconds: Int) {
        scheduleHeartbeat(.milliseconds(Int64(intervalMilliseconds)))
    }

    private func scheduleHeartbeat(_ interval: TimeAmount) {
        guard let context else { return }
        heartbeatTimer = context.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.connection.heartbeatTick()
            self.scheduleHeartbeat(interval)
        }
    }

    func setReading(_ enabled: Bool) {
        guard let context else { return }
        // With autoRead off NIO stops reading after the batch in hand; back on, it reads again.
        try? context.channel.syncOptions?.setOption(.autoRead, value: enabled)
    }

    func startCloseTimer() {
        guard let context else { return }
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: configuration.closeTimeout) {
            self.connection.closeTimedOut()
        }
    }
}
