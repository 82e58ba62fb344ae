import Logging
import NIOCore
import NIOSSL
import Raft

/// One TCP (or TLS) link between two nodes, either side. Nothing but the handshake is accepted
/// until both sides proved they know the cluster secret (`ClusterSecret`): the client says who
/// it is, the server answers with a challenge and its proof, the client checks it and sends its
/// own. Either side that finds the other's proof wrong says so in its log, tells the other
/// (`refused`), and closes. Then `raft` and `app` frames flow, in both directions.
final class ClusterLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side {
        /// We dialled `address`, expecting node `expected` there (nil: a seed, whoever it is).
        case client(address: String, expected: String?)
        case server
    }

    let side: Side
    unowned let transport: ClusterTransport
    private var buffer: ByteBuffer?
    private var context: ChannelHandlerContext?
    private(set) var ready = false
    private var closed = false
    private var ourNonce: [UInt8] = []
    private var theirNonce: [UInt8] = []
    private(set) var peerName: String?
    private(set) var peerAddress: String?
    private var flushScheduled = false

    init(side: Side, transport: ClusterTransport) {
        self.side = side
        self.transport = transport
    }

    var remoteDescription: String {
        if case .client(let address, _) = side { return address }
        return context?.channel.remoteAddress?.description ?? "?"
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        if case .client = side {
            ourNonce = ClusterSecret.nonce()
            write(.hello(version: ClusterFrame.protocolVersion, node: transport.myName, address: transport.myAddress, nonce: ourNonce))
            flushNow()
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        transport.linkClosed(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOSSLError || error is BoringSSLError {
            // A certificate the other side does not trust (or no certificate, or no TLS at
            // all): said once per peer and 10 s, on both sides, with who and why.
            let who: String
            switch side {
            case .client(let address, let expected): who = "\(expected ?? "the node") at \(address)"
            case .server: who = "a node connecting from \(context.channel.remoteAddress?.ipAddress ?? "?")"
            }
            let why = "TLS handshake failed: \(error). Both nodes need certificates signed by a CA the other trusts (--cluster-tls-ca-cert), and TLS on both or neither"
            transport.tlsRefusal(who: who, why: why)
        } else {
            transport.logger.debug("cluster link error", metadata: ["peer": "\(peerName ?? remoteDescription)", "error": "\(error)"])
        }
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        var raft: [(GroupID, Message)] = []
        while !closed, var b = buffer {
            let parsed = ClusterFrame.read(&b)
            buffer = b
            switch parsed {
            case .incomplete:
                if b.readableBytes == 0 { buffer = nil } else if b.readerIndex > 1 << 20 { buffer!.discardReadBytes() }
                deliver(&raft)
                deliverData()
                return
            case .invalid(let why):
                refuse("malformed frame: \(why)", log: "cluster link: malformed frame, link closed")
                return
            case .frame(let frame):
                handle(frame, raft: &raft)
            }
        }
        deliver(&raft)
        deliverData()
    }

    private func deliver(_ raft: inout [(GroupID, Message)]) {
        guard !raft.isEmpty else { return }
        transport.deliverRaft(raft)
        raft.removeAll()
    }

    /// Queue traffic read in one go goes to the broker loop in one hop.
    private var data: [ByteBuffer] = []

    private func deliverData() {
        guard !data.isEmpty, let name = peerName else { return }
        transport.onData?(name, data)
        data.removeAll()
    }

    private func handle(_ frame: ClusterFrame, raft: inout [(GroupID, Message)]) {
        if ready {
            switch frame {
            case .raft(let messages):
                for var m in messages {
                    guard let decoded = RaftCodec.read(&m) else {
                        refuse("malformed Raft message", log: "cluster link: malformed Raft message, link closed")
                        return
                    }
                    raft.append(decoded)
                }
            case .app(let payload):
                guard let message = ClusterMessage.decode(payload) else {
                    transport.logger.warning("cluster link: unknown cluster message ignored (a newer Warren?)", metadata: ["peer": "\(peerName ?? "?")"])
                    return
                }
                deliver(&raft)
                transport.deliverApp(message, from: peerName ?? "", address: peerAddress)
            case .data(let batch):
                data.append(batch)
            case .refused(let why):
                transport.logger.error("cluster: node \(peerName ?? remoteDescription) closed the link: \(why)")
                close()
            default:
                refuse("unexpected handshake frame", log: "cluster link: handshake frame after the handshake, link closed")
            }
            return
        }
        switch (side, frame) {
        case (.server, .hello(let version, let node, let address, let nonce)):
            guard version == ClusterFrame.protocolVersion else {
                refuse(
                    "cluster protocol version \(version) is not this node's \(ClusterFrame.protocolVersion)",
                    log: "cluster: refused node \(node) (\(remoteDescription)): it speaks cluster protocol version \(version), this node \(ClusterFrame.protocolVersion); run the same Warren version on every node")
                return
            }
            peerName = node
            peerAddress = address
            theirNonce = nonce
            ourNonce = ClusterSecret.nonce()
            let mac = transport.secret.serverMAC(clientNonce: nonce, serverNonce: ourNonce, client: node, server: transport.myName)
            write(.challenge(node: transport.myName, nonce: ourNonce, mac: mac))
            flushNow()
        case (.server, .proof(let mac)):
            guard let peer = peerName else {
                refuse("proof before hello", log: "cluster link: proof before hello, link closed")
                return
            }
            let expected = transport.secret.clientMAC(clientNonce: theirNonce, serverNonce: ourNonce, client: peer, server: transport.myName)
            guard ClusterSecret.same(mac, expected) else {
                refuse(
                    "the cluster secret does not match this node's",
                    log: "cluster: refused node \(peer) (\(remoteDescription)): it does not know the cluster secret (check --cluster-secret or --cluster-secret-file on both nodes)")
                return
            }
            write(.welcome)
            flushNow()
            ready = true
            transport.linkReady(self)
        case (.client(let address, let expected), .challenge(let node, let nonce, let mac)):
            if let expected, expected != node {
                refuse(
                    "this node expected \(expected) at \(address)",
                    log: "cluster: node \(node) answers at \(address), where \(expected) was expected; link closed (a stale address?)")
                return
            }
            let want = transport.secret.serverMAC(clientNonce: ourNonce, serverNonce: nonce, client: transport.myName, server: node)
            guard ClusterSecret.same(mac, want) else {
                refuse(
                    "the cluster secret does not match this node's",
                    log: "cluster: refused node \(node) at \(address): it does not know the cluster secret (check --cluster-secret or --cluster-secret-file on both nodes)")
                return
            }
            peerName = node
            peerAddress = address
            theirNonce = nonce
            write(.proof(mac: transport.secret.clientMAC(clientNonce: ourNonce, serverNonce: nonce, client: transport.myName, server: node)))
            flushNow()
        case (.client, .welcome):
            ready = true
            transport.linkReady(self)
        case (_, .refused(let why)):
            transport.logger.error("cluster: node \(peerName ?? remoteDescription) refused this node: \(why)")
            transport.refusedBy(self, why)
            close()
        default:
            refuse("unexpected frame during the handshake", log: "cluster link: unexpected frame during the handshake, link closed")
        }
    }

    /// Says no, logs why, and closes.
    private func refuse(_ why: String, log: String) {
        transport.logger.error("\(log)")
        write(.refused(why))
        flushNow()
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        context?.close(promise: nil)
    }

    // MARK: writing

    func write(_ frame: ClusterFrame) {
        guard let context, !closed else { return }
        if case .data(let payload) = frame {
            // The batch goes out as it is, behind a five-byte header: its bodies are not copied.
            var header = context.channel.allocator.buffer(capacity: 5)
            header.writeInteger(UInt32(payload.readableBytes + 1))
            header.writeInteger(UInt8(8))
            context.write(wrapOutboundOut(header), promise: nil)
            context.write(wrapOutboundOut(payload), promise: nil)
            scheduleFlush()
            return
        }
        var b = context.channel.allocator.buffer(capacity: 256)
        frame.write(into: &b)
        context.write(wrapOutboundOut(b), promise: nil)
        scheduleFlush()
    }

    /// Frames written during one turn of the loop leave in one flush.
    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            self.context?.flush()
        }
    }

    private func flushNow() { context?.flush() }

    var isWritable: Bool { context?.channel.isWritable ?? false }
}
