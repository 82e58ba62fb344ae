import Foundation
public import Logging
public import NIOCore
import NIOPosix
public import NIOSSL
public import Raft

/// The links between nodes, on the cluster loop: a listener on the cluster port, and one
/// outgoing link per peer address, dialled when there is something to send and redialled with
/// backoff. Raft messages for a peer produced in one round go out as one `raft` frame; frames
/// written in one turn of the loop go out in one flush.
///
/// Messages for a peer that is not connected wait (a few hundred frames at most: Raft resends
/// what is lost, and the cluster layer's own requests are retried by their senders).
public final class ClusterTransport: RaftMessageSender, @unchecked Sendable {
    public let loop: any EventLoop
    public let myName: String
    /// Where the others reach this node (its advertised cluster address; known once listening).
    public internal(set) var myAddress: String
    let secret: ClusterSecret
    let serverTLS: NIOSSLContext?
    let clientTLS: NIOSSLContext?
    public let logger: Logger

    /// Known nodes: id to name and advertised address.
    public private(set) var names: [NodeID: String] = [:]
    public private(set) var addresses: [NodeID: String] = [:]
    /// Addresses to dial instead of the advertised ones, by node name (the cluster driver's
    /// fault-injecting proxy sits there).
    public var dialOverrides: [String: String] = [:]

    public var onRaft: (([(GroupID, Message)]) -> Void)?
    /// A link this node dialled is up (what waited for it may go now).
    public var onLinkUp: (() -> Void)?
    public var onApp: ((ClusterMessage, _ from: String, _ address: String?) -> Void)?
    /// Queue traffic from a node (`ClusterQueues` batches), called on this loop.
    public var onData: ((String, [ByteBuffer]) -> Void)?
    /// The data link to a node came up or went down.
    public var onDataLink: ((String, Bool) -> Void)?
    /// The Raft link to a node dropped (its name).
    public var onLinkDown: ((String) -> Void)?
    /// A node refused this one (wrong secret, version): the reason, for status.
    public var onRefused: ((String, String) -> Void)?

    final class Peer {
        /// Where it is dialled (HOST:PORT).
        let dialTo: String
        /// Its key in `peers`: the address, or `data|` and the address for the data link.
        let address: String
        var isData: Bool { address.hasPrefix(ClusterTransport.dataPrefix) }
        var expected: String?
        var link: ClusterLinkHandler?
        var connecting = false
        var queue: [ClusterFrame] = []
        var nextAttempt = NIODeadline.uptimeNanoseconds(0)
        var backoff = TimeAmount.milliseconds(100)
        var lastWarning = NIODeadline.uptimeNanoseconds(0)
        var lastError: String?
        init(address: String, expected: String?) {
            self.address = address
            self.dialTo = address.hasPrefix(ClusterTransport.dataPrefix) ? String(address.dropFirst(ClusterTransport.dataPrefix.count)) : address
            self.expected = expected
        }
    }

    private var peers: [String: Peer] = [:]
    /// Queue traffic has a link of its own to each node, so a burst of messages never holds
    /// Raft's heartbeats back behind it.
    static let dataPrefix = "data|"
    private var inbound: [ObjectIdentifier: ClusterLinkHandler] = [:]
    private var serverChannel: (any Channel)?
    private var closed = false
    static let maxQueuedFrames = 512
    /// Reads grow up to 1 MiB: a batch of queue traffic then arrives in one read, sliced into
    /// messages in place, instead of being gathered from many small reads (a copy each).
    static let readSizes = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 65536, maximum: 1 << 20)

    public init(
        loop: any EventLoop, myName: String, myAddress: String, secret: ClusterSecret, serverTLS: NIOSSLContext?, clientTLS: NIOSSLContext?,
        logger: Logger
    ) {
        self.loop = loop
        self.myName = myName
        self.myAddress = myAddress
        self.secret = secret
        self.serverTLS = serverTLS
        self.clientTLS = clientTLS
        self.logger = logger
    }

    /// Listens on the cluster port; returns the bound address.
    public func listen(host: String, port: Int) -> EventLoopFuture<SocketAddress> {
        let tls = serverTLS
        let bootstrap = ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: Self.readSizes)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    let handler = ClusterLinkHandler(side: .server, transport: self)
                    inbound[ObjectIdentifier(handler)] = handler
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        return bootstrap.bind(host: host, port: port).map { [self] channel in
            serverChannel = channel
            return channel.localAddress!
        }
    }

    public func close() {
        closed = true
        serverChannel?.close(promise: nil)
        for p in peers.values { p.link?.close() }
        for l in inbound.values { l.close() }
    }

    // MARK: the address book

    /// A node and where it is reached.
    public func learn(name: String, address: String) {
        let id = ClusterNodeID.of(name)
        guard id != ClusterNodeID.of(myName) else { return }
        if addresses[id] != address, let old = addresses[id], let peer = peers[dialAddress(name: name, advertised: old)], peer.link == nil {
            peers[peer.address] = nil
        }
        names[id] = name
        addresses[id] = address
    }

    public func forget(name: String) {
        let id = ClusterNodeID.of(name)
        if let address = addresses[id], let peer = peers.removeValue(forKey: dialAddress(name: name, advertised: address)) { peer.link?.close() }
        if let address = addresses[id], let peer = peers.removeValue(forKey: Self.dataPrefix + dialAddress(name: name, advertised: address)) {
            peer.link?.close()
        }
        names[id] = nil
        addresses[id] = nil
    }

    func dialAddress(name: String, advertised: String) -> String { dialOverrides[name] ?? advertised }

    /// Whether a link to this node is up now (for status and partitions).
    public func isConnected(_ name: String) -> Bool {
        guard let a = addresses[ClusterNodeID.of(name)] else { return false }
        return peers[dialAddress(name: name, advertised: a)]?.link?.ready == true
    }

    public func lastError(_ name: String) -> String? {
        guard let a = addresses[ClusterNodeID.of(name)] else { return nil }
        return peers[dialAddress(name: name, advertised: a)]?.lastError
    }

    // MARK: sending

    public func send(_ messages: [(GroupID, Message)]) {
        var byPeer: [NodeID: [ByteBuffer]] = [:]
        for (g, m) in messages {
            var b = ByteBuffer()
            RaftCodec.write(m, group: g, into: &b)
            byPeer[m.to, default: []].append(b)
        }
        for (id, frames) in byPeer {
            guard let name = names[id], let address = addresses[id] else {
                logger.debug("cluster: no address for a Raft peer; message dropped", metadata: ["peer": "\(id)"])
                continue
            }
            send(.raft(frames), to: dialAddress(name: name, advertised: address), expected: name)
        }
    }

    /// A cluster message to a known node.
    public func send(_ message: ClusterMessage, toNode name: String) {
        guard let address = addresses[ClusterNodeID.of(name)] else { return }
        send(.app(message.encode()), to: dialAddress(name: name, advertised: address), expected: name)
    }

    /// A batch of queue traffic to a known node, on the data link.
    public func sendData(_ batch: ByteBuffer, toNode name: String) {
        guard let address = addresses[ClusterNodeID.of(name)] else { return }
        send(.data(batch), to: Self.dataPrefix + dialAddress(name: name, advertised: address), expected: name)
    }

    /// A cluster message to an address (a seed, whoever runs there).
    public func send(_ message: ClusterMessage, toAddress address: String) {
        // Overrides may name an address too (a seed reached through warren-cluster's proxy).
        send(.app(message.encode()), to: dialOverrides[address] ?? address, expected: nil)
    }

    private func send(_ frame: ClusterFrame, to address: String, expected: String?) {
        guard !closed else { return }
        let peer = peers[address] ?? {
            let p = Peer(address: address, expected: expected)
            peers[address] = p
            return p
        }()
        if peer.expected == nil { peer.expected = expected }
        if let link = peer.link, link.ready {
            link.write(frame)
            return
        }
        peer.queue.append(frame)
        if peer.queue.count > Self.maxQueuedFrames { peer.queue.removeFirst(peer.queue.count - Self.maxQueuedFrames) }
        dial(peer)
    }

    private func dial(_ peer: Peer) {
        guard !peer.connecting, peer.link == nil, !closed else { return }
        let now = NIODeadline.now()
        guard now >= peer.nextAttempt else {
            // Try again when the backoff is over, even if nothing else is sent meanwhile.
            loop.assumeIsolated().scheduleTask(deadline: peer.nextAttempt) { [self] in dial(peer) }
            return
        }
        guard let (host, port) = Self.split(peer.dialTo) else {
            logger.error("cluster: '\(peer.address)' is not HOST:PORT; nothing is sent there")
            peer.queue.removeAll()
            return
        }
        peer.connecting = true
        let tls = clientTLS
        let handler = ClusterLinkHandler(side: .client(address: peer.address, expected: peer.expected), transport: self)
        ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: Self.readSizes)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: nil)) }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
            .hop(to: loop)
            .assumeIsolated()
            .whenComplete { [self] result in
                peer.connecting = false
                switch result {
                case .success:
                    peer.link = handler
                case .failure(let error):
                    failed(peer, "\(error)")
                }
            }
    }

    private func failed(_ peer: Peer, _ error: String) {
        peer.lastError = error
        peer.nextAttempt = .now() + peer.backoff
        peer.backoff = min(peer.backoff * 2, .seconds(1))
        let now = NIODeadline.now()
        if !peer.isData && now >= peer.lastWarning + .seconds(30) {
            peer.lastWarning = now
            logger.warning("cluster: cannot reach \(peer.expected ?? "a seed") at \(peer.address): \(error) (retrying)")
        }
        if !peer.queue.isEmpty { dial(peer) }
    }

    static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    // MARK: from the links

    func linkReady(_ link: ClusterLinkHandler) {
        switch link.side {
        case .client(let address, _):
            guard let peer = peers[address] else { return }
            peer.backoff = .milliseconds(100)
            peer.lastError = nil
            if let name = link.peerName, peer.expected == nil { peer.expected = name }
            let queued = peer.queue
            peer.queue.removeAll()
            for f in queued { link.write(f) }
            if peer.isData {
                if let name = peer.expected { onDataLink?(name, true) }
                return
            }
            logger.info("cluster: connected to \(link.peerName ?? "?") at \(address)")
            onLinkUp?()
        case .server:
            // A node that dialled us is one we can dial back (replies, Raft answers).
            if let name = link.peerName, let address = link.peerAddress, names[ClusterNodeID.of(name)] == nil {
                learn(name: name, address: address)
            }
        }
    }

    func linkClosed(_ link: ClusterLinkHandler) {
        inbound[ObjectIdentifier(link)] = nil
        guard case .client(let address, _) = link.side, let peer = peers[address], peer.link === link else { return }
        peer.link = nil
        if peer.isData {
            if link.ready, let name = peer.expected { onDataLink?(name, false) }
        } else if link.ready {
            logger.warning("cluster: link to \(link.peerName ?? address) lost")
            if let name = link.peerName ?? peer.expected { onLinkDown?(name) }
        }
        failed(peer, "link closed")
    }

    /// When each peer's TLS failure was last logged (a peer that keeps dialling would fill the log).
    private var tlsRefusalLogged: [String: NIODeadline] = [:]

    func tlsRefusal(who: String, why: String) {
        let now = NIODeadline.now()
        if let last = tlsRefusalLogged[who], now - last < .seconds(10) { return }
        tlsRefusalLogged[who] = now
        logger.error("cluster: refused \(who): \(why)")
        onRefused?(who, why)
    }

    func refusedBy(_ link: ClusterLinkHandler, _ why: String) {
        if case .client(let address, _) = link.side { peers[address]?.lastError = "refused: \(why)" }
        onRefused?(link.peerName ?? link.remoteDescription, why)
    }

    func deliverRaft(_ messages: [(GroupID, Message)]) { onRaft?(messages) }

    func deliverApp(_ message: ClusterMessage, from: String, address: String?) { onApp?(message, from, address) }
}
