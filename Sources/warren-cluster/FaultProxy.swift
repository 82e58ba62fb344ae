import Foundation
import NIOCore
import NIOPosix

/// The fault-injecting proxy between the nodes: one listening port per directed link (node i
/// dials node j at 127.0.0.1:links["i-j"], told so by `--cluster-dial`), forwarding to j's
/// cluster port. It reads DIR/faults.json every 50 ms and applies it: a cut link closes its
/// connections (both directions' links are cut together by the verbs) and refuses new ones;
/// a dropping link holds its bytes until it heals; a delayed link holds them for the delay; a
/// lossy link holds some for a retransmission timeout. Partitions need no root.
///
/// Everything runs on one event loop and all state is touched only there.
final class FaultProxy: @unchecked Sendable {
    let dir: String
    let layout: ClusterLayout
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var loop: any EventLoop { group.next() }
    private(set) var faults = Faults()
    /// Live forwarded connections per directed link.
    private var pairs: [String: [ProxyPair]] = [:]

    init(dir: String, layout: ClusterLayout) {
        self.dir = dir
        self.layout = layout
    }

    /// Binds every link's port; then polls the fault file until DIR/proxy.stop appears or the
    /// cluster's directory is gone.
    func run() throws {
        for (link, port) in layout.links {
            let parts = link.split(separator: "-").compactMap { Int($0) }
            guard parts.count == 2 else { continue }
            let target = layout.nodes[parts[1] - 1].cluster
            _ = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(.autoRead, value: false)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture { accepted(channel, link: link, from: parts[0], to: parts[1], target: target) }
                }
                .bind(host: "127.0.0.1", port: port).wait()
        }
        try loop.submit { self.poll() }.wait()
        FileHandle.standardError.write(Data("warren-cluster proxy: \(layout.links.count) links up\n".utf8))
        let stop = (dir as NSString).appendingPathComponent("proxy.stop")
        while !FileManager.default.fileExists(atPath: stop), FileManager.default.fileExists(atPath: ClusterLayout.path(dir)) {
            usleep(200_000)
        }
        try? FileManager.default.removeItem(atPath: stop)
        try? group.syncShutdownGracefully()
    }

    private func poll() {
        let now = Faults.load(dir)
        if now != faults {
            faults = now
            for (link, list) in pairs where faults.cut.contains(link) {
                for p in list { p.close() }
                pairs[link] = nil
            }
            for list in pairs.values { for p in list { p.faultsChanged() } }
            try? "\(faults.generation)\n".write(toFile: Faults.appliedPath(dir), atomically: true, encoding: .utf8)
        } else if !FileManager.default.fileExists(atPath: Faults.appliedPath(dir)) {
            try? "\(faults.generation)\n".write(toFile: Faults.appliedPath(dir), atomically: true, encoding: .utf8)
        }
        loop.scheduleTask(in: .milliseconds(50)) { self.poll() }
    }

    private func accepted(_ inbound: any Channel, link: String, from: Int, to: Int, target: Int) {
        if faults.cut.contains(link) {
            inbound.close(promise: nil)
            return
        }
        let pair = ProxyPair(proxy: self, inbound: inbound, forward: link, backward: Faults.link(to, from))
        pairs[link, default: []].append(pair)
        ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ProxySide(pair: pair, outbound: true)) }
            }
            .connect(host: "127.0.0.1", port: target)
            .whenComplete { result in
                switch result {
                case .success(let out):
                    pair.connected(out)
                case .failure:
                    pair.close()
                }
            }
    }

    func removed(_ pair: ProxyPair) {
        pairs[pair.forward]?.removeAll { $0 === pair }
    }

    func delay(_ link: String) -> Int { faults.delay[link] ?? 0 }
    func drops(_ link: String) -> Bool { faults.drop.contains(link) }
    func loss(_ link: String) -> Double { faults.loss[link] ?? 0 }
}

/// One forwarded connection: the node's inbound side and the proxy's connection to the target.
final class ProxyPair: @unchecked Sendable {
    unowned let proxy: FaultProxy
    let inbound: any Channel
    var outbound: (any Channel)?
    /// Directed link names: bytes from inbound to outbound travel `forward`.
    let forward: String
    let backward: String
    private var closed = false
    /// Bytes held back by a delay, per direction, with the time they may go.
    private var held: [Bool: [(NIODeadline, ByteBuffer)]] = [true: [], false: []]
    /// Consecutive lost packets per direction (each doubles the retransmission timeout).
    private var lostInARow: [Bool: Int] = [true: 0, false: 0]

    init(proxy: FaultProxy, inbound: any Channel, forward: String, backward: String) {
        self.proxy = proxy
        self.inbound = inbound
        self.forward = forward
        self.backward = backward
    }

    func connected(_ out: any Channel) {
        guard !closed else {
            out.close(promise: nil)
            return
        }
        outbound = out
        try? inbound.pipeline.syncOperations.addHandler(ProxySide(pair: self, outbound: false))
        inbound.setOption(.autoRead, value: true).whenComplete { _ in }
        inbound.read()
    }

    /// Bytes read on one side, to be written on the other.
    func carry(_ data: ByteBuffer, fromOutbound: Bool) {
        let link = fromOutbound ? backward : forward
        let forwardDirection = !fromOutbound
        if proxy.drops(link) {
            // Nothing arrives while the link drops, but nothing is lost from the stream either:
            // TCP would retransmit until the network healed (or give up and reset). Swallowing
            // bytes left connections that went on with a hole in them, which no network does
            // (found by `warren-cluster run link-drop`: the queue session missed deliveries).
            held[forwardDirection]!.append((.distantFuture, data))
            return
        }
        var delay = Int64(proxy.delay(link))
        let loss = proxy.loss(link)
        if loss > 0, Double.random(in: 0..<1) < loss {
            // TCP resends a lost packet after its retransmission timeout (200 ms at least on
            // Linux, doubling while the resends are lost too), and the bytes behind it wait:
            // that, and not a gap, is what loss looks like above TCP.
            lostInARow[forwardDirection]! += 1
            delay += 200 << min(4, lostInARow[forwardDirection]! - 1)
        } else {
            lostInARow[forwardDirection] = 0
        }
        if delay <= 0 && held[forwardDirection]!.isEmpty {
            write(data, forwardDirection: forwardDirection)
            return
        }
        held[forwardDirection]!.append((.now() + .milliseconds(delay), data))
        if held[forwardDirection]!.count == 1 { schedule(forwardDirection) }
    }

    private func schedule(_ forwardDirection: Bool) {
        guard let first = held[forwardDirection]!.first else { return }
        proxy.loop.scheduleTask(deadline: first.0) { [self] in
            let now = NIODeadline.now()
            while let next = held[forwardDirection]!.first, next.0 <= now {
                held[forwardDirection]!.removeFirst()
                write(next.1, forwardDirection: forwardDirection)
            }
            schedule(forwardDirection)
        }
    }

    func faultsChanged() {
        // A delay or a drop taken off lets what is held go now, in order.
        for direction in [true, false] where !held[direction]!.isEmpty {
            let link = direction ? forward : backward
            guard proxy.delay(link) == 0, !proxy.drops(link), proxy.loss(link) == 0 else { continue }
            for (_, data) in held[direction]! { write(data, forwardDirection: direction) }
            held[direction] = []
        }
    }

    private func write(_ data: ByteBuffer, forwardDirection: Bool) {
        guard !closed, let target = forwardDirection ? outbound : inbound else { return }
        target.writeAndFlush(data, promise: nil)
    }

    func close() {
        guard !closed else { return }
        closed = true
        inbound.close(promise: nil)
        outbound?.close(promise: nil)
        proxy.removed(self)
    }
}

final class ProxySide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let pair: ProxyPair
    let outbound: Bool

    init(pair: ProxyPair, outbound: Bool) {
        self.pair = pair
        self.outbound = outbound
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pair.carry(unwrapInboundIn(data), fromOutbound: outbound)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pair.close()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        pair.close()
    }
}
