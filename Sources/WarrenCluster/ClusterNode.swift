import Foundation
public import Logging
public import NIOCore
public import NIOSSL
public import Raft
public import WarrenCore
import WarrenLog

/// How a node takes part in a cluster.
public struct ClusterSettings: Sendable {
    public var nodeName: String
    /// Where the cluster port listens.
    public var bindHost = "0.0.0.0"
    public var port = 25672
    /// HOST:PORT the other nodes reach this one at (nil: this machine's host name and the bound
    /// port).
    public var advertisedAddress: String?
    /// The name of a cluster this node founds (nil: its own node name, as RabbitMQ names a
    /// cluster after its first node).
    public var clusterName: String?
    /// HOST:PORT of the cluster's seed nodes. The first one founds the cluster; the others join
    /// it (or keep asking until it is there). Empty: this node is a cluster of its own.
    public var seeds: [String] = []
    /// Found a new cluster even if this node is not the first seed (nil: by the seed rule).
    public var bootstrap: Bool?
    /// Peers found by DNS instead of seeds (a StatefulSet's pods: `PeerDiscovery`), and how a
    /// pod name resolves to an address to dial (nil: not at all). The node resolves off its
    /// loop, every 2 s, while it is not in a cluster.
    public var discovery: PeerDiscovery?
    public var resolve: (@Sendable (String) -> String?)?
    public var secret: String
    /// Dial these addresses instead of the advertised ones, by node name.
    public var dialOverrides: [String: String] = [:]
    public var serverTLS: NIOSSLContext?
    public var clientTLS: NIOSSLContext?
    /// How long a definition change may wait to be committed before it fails.
    public var metadataTimeout = TimeAmount.seconds(5)
    /// The metadata group snapshots after this many entries (or the state's object count, if
    /// larger).
    public var metadataSnapshotEvery = 8192
    /// Raft's election timeout in ticks of 50 ms (randomized between this and twice this).
    public var electionTicks = 10

    public init(nodeName: String, secret: String) {
        self.nodeName = nodeName
        self.secret = secret
    }
}

/// One node's part of the cluster, on its own event loop (never the broker's: heartbeats must
/// not wait behind client traffic): the Raft WAL and host, the links to the other nodes, the
/// metadata group, and the membership: founding, joining, following the registry of members
/// that the metadata holds.
public final class ClusterNode: @unchecked Sendable {
    public let settings: ClusterSettings
    public let loop: any EventLoop
    let brokerLoop: any EventLoop
    public let logger: Logger
    public let me: NodeID
    public private(set) var address: String
    public private(set) var wal: RaftWAL!
    public private(set) var host: RaftHost!
    public private(set) var transport: ClusterTransport!
    public let metadata: MetadataGroup
    let walDirectory: String
    private var timer: RepeatedTask?
    private var joinAttempt = 0
    private var nextJoinRequest: UInt64 = 1
    private var lastJoinLog = NIODeadline.uptimeNanoseconds(0)
    /// The metadata's registry of members, as last applied (name: address).
    public private(set) var registry: [String: String] = [:]
    public private(set) var clusterName = ""
    /// What the other nodes last said of themselves (JSON), and when.
    public private(set) var peerStatus: [String: (json: String, at: NIODeadline)] = [:]
    /// Why a node refused this one, by node (shown by cluster_status).
    public private(set) var refusals: [String: String] = [:]
    /// This node's status for the others, asked every few seconds (any thread).
    public var statusProvider: (@Sendable () -> String)?
    /// Every second: the other members' recent statuses (JSON by name) and the member names.
    public var onPeerStatuses: (([String: String], [String]) -> Void)?
    public private(set) var role: RaftNode.Role = .follower
    public private(set) var leader: NodeID = 0
    public private(set) var term: Term = 0
    /// A node whose cluster forgot it: it stops taking part.
    public private(set) var wasRemoved = false

    public init(settings: ClusterSettings, broker: Broker, brokerLoop: any EventLoop, clusterLoop: any EventLoop, dataDirectory: String, logger: Logger) {
        self.settings = settings
        self.loop = clusterLoop
        self.brokerLoop = brokerLoop
        self.logger = logger
        self.me = ClusterNodeID.of(settings.nodeName)
        self.address = settings.advertisedAddress ?? ""
        self.walDirectory = (dataDirectory as NSString).appendingPathComponent("raft")
        self.metadata = MetadataGroup(
            broker: broker, brokerLoop: brokerLoop, clusterLoop: clusterLoop, me: me, timeout: settings.metadataTimeout, logger: logger)
        self.metadata.snapshotEvery = settings.metadataSnapshotEvery
    }

    public enum Start: Sendable, Equatable {
        /// The WAL had the group: replaying it.
        case restarted
        /// A new cluster, founded here.
        case founded
        /// Joining the seeds' cluster.
        case joining
    }

    /// Removes from the WAL the groups no queue opened after the metadata was replayed (cluster
    /// loop; after every `open` the replay asked for).
    public func removeOrphanGroups() {
        for g in wal.groups where g != MetadataGroup.groupID && host.node(g) == nil {
            logger.info("cluster: the log of a deleted queue's group is removed", metadata: ["group": "\(g)"])
            wal.remove(g)
        }
    }

    /// Opens the WAL (cluster loop); true when it holds no metadata group yet (a new node).
    public func openLog() throws -> Bool {
        loop.preconditionInEventLoop()
        let loop = self.loop
        let wal: RaftWAL
        do {
            // Called from the WAL's sync thread: only the loop itself may be touched there.
            wal = try RaftWAL(directory: walDirectory, logger: logger) { task in loop.execute(task) }
        } catch {
            throw ClusterError("\(error.description)")
        }
        wal.onFatal = { [logger] error in
            logger.critical(
                "raft log failed, stopping the node: \(error.description). Free space or mend the disk, then start the node again: what it acknowledged is recovered from its log, and the other members send it what it missed"
            )
            exit(70)
        }
        self.wal = wal
        let transport = ClusterTransport(
            loop: loop, myName: settings.nodeName, myAddress: address, secret: ClusterSecret(settings.secret), serverTLS: settings.serverTLS,
            clientTLS: settings.clientTLS, logger: logger)
        transport.dialOverrides = settings.dialOverrides
        self.transport = transport
        return !wal.groups.contains(MetadataGroup.groupID)
    }

    /// Listens on the cluster port (after `openLog`); the advertised address follows the bound
    /// port unless configured.
    public func listen() -> EventLoopFuture<String> {
        transport.listen(host: settings.bindHost, port: settings.port).map { [self] bound in
            if address.isEmpty {
                address = "\(ProcessInfo.processInfo.hostName):\(bound.port ?? settings.port)"
            }
            transport.myAddress = address
            logger.notice(
                "cluster listener started on \(settings.bindHost):\(bound.port ?? 0)",
                metadata: ["advertised": "\(address)", "tls": "\(settings.serverTLS == nil ? "off" : "on")"])
            return address
        }
    }

    /// Starts the metadata group (cluster loop, after `listen`): from the WAL, or founding a
    /// cluster whose first state is `initialState` (a state snapshot document), or asking the
    /// seeds to let this node join.
    public func start(initialState: [UInt8]?) -> Start {
        loop.preconditionInEventLoop()
        let bound = NIOLoopBound(self, eventLoop: loop)
        let host = RaftHost(loop: loop, wal: wal, logger: logger)
        host.sender = transport
        host.me = me
        host.peers = peerIDs(registry)
        self.host = host
        metadata.host = host
        metadata.forward = { [weak transport] leader, envelopes, term in
            guard let transport, let name = transport.names[leader], transport.isConnected(name) else { return false }
            transport.send(.forward(term: term, envelopes), toNode: name)
            return true
        }
        metadata.onLeaderChange = { [weak self] leader, role, term in
            self?.leader = leader
            self?.role = role
            self?.term = term
        }
        transport.onRaft = { [weak host] messages in host?.receive(messages) }
        transport.onLinkUp = { [weak self] in
            self?.metadata.submitUnsent()
            // The others learn this node's status at once, not at the next round (2 s).
            self?.sendStatus()
        }
        // A crashed member's sockets close at once: its groups elect without waiting a timeout.
        transport.onLinkDown = { [weak self] name in self?.host.peerUnreachable(ClusterNodeID.of(name)) }
        transport.onApp = { [weak self] message, from, address in self?.received(message, from: from, address: address) }
        transport.onRefused = { [weak self] node, why in self?.refusals[node] = why }

        var config = RaftConfiguration(id: me)
        config.electionTicks = settings.electionTicks
        config.seed = UInt64(truncatingIfNeeded: Int64(Date().timeIntervalSince1970 * 1_000_000))
        let start: Start
        let recovered = wal.state(of: MetadataGroup.groupID)
        if !wal.groups.contains(MetadataGroup.groupID) {
            if let initialState, settings.discovery != nil {
                // Pod 0 founds only once no peer is in a cluster: it asks them first.
                host.addGroup(MetadataGroup.groupID, configuration: config, delegate: metadata)
                pendingFoundation = (initialState, config)
                start = .joining
                logger.notice("cluster: discovering peers by DNS before founding", metadata: ["service": "\(settings.discovery!.service)"])
            } else if let initialState {
                metadata.startLastIndex = 1
                host.bootstrap(MetadataGroup.groupID, voters: [me], data: initialState, configuration: config, delegate: metadata)
                start = .founded
                logger.notice("cluster: founded a new cluster", metadata: ["node": "\(settings.nodeName)", "address": "\(address)"])
            } else {
                host.addGroup(MetadataGroup.groupID, configuration: config, delegate: metadata)
                start = .joining
                logger.notice("cluster: joining through the seeds", metadata: ["seeds": "\(settings.seeds.joined(separator: ","))"])
            }
        } else {
            metadata.startLastIndex = recovered.entries.last?.index ?? recovered.snapshot?.index ?? 0
            host.addGroup(MetadataGroup.groupID, configuration: config, delegate: metadata)
            start = .restarted
            logger.notice(
                "cluster: metadata log recovered",
                metadata: ["entries": "\(recovered.entries.count)", "snapshot": "\(recovered.snapshot?.index ?? 0)", "commit": "\(recovered.hardState.commit)"])
        }
        recoveredCommit = recovered.hardState.commit
        host.start()
        timer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(200), delay: .milliseconds(250)) { _ in bound.value.every250ms() }
        return start
    }

    /// The commit index the WAL had at start: a restarted node serves once it applied that far.
    public private(set) var recoveredCommit: LogIndex = 0

    /// For a joining node: the commit index it must apply before it serves, once it is a member
    /// (nil while not yet).
    public func joinedCommitIndex() -> LogIndex? {
        guard let node = host.node(MetadataGroup.groupID), node.membership.members.contains(me), node.commitIndex > 0 else { return nil }
        return node.commitIndex
    }

    /// The first seed founds the cluster, unless told otherwise; with discovery, pod 0 may
    /// found (once its peers said they are in no cluster: `PeerDiscovery.decide`).
    public var isFounder: Bool {
        if let b = settings.bootstrap { return b }
        if let d = settings.discovery { return d.ordinal == 0 }
        guard let first = settings.seeds.first else { return true }
        if first == address { return true }
        guard let (host, port) = ClusterTransport.split(first), let (_, myPort) = ClusterTransport.split(address), port == myPort else { return false }
        let local: Set<String> = ["localhost", "127.0.0.1", "::1", "[::1]", ProcessInfo.processInfo.hostName]
        return local.contains(host) || address.hasPrefix(host + ":")
    }

    public func stop() {
        timer?.cancel()
        host?.stop()
        transport?.close()
        wal?.close()
    }

    // MARK: the registry (from the broker loop)

    /// The members and the cluster name as applied; call on the cluster loop.
    public func registryChanged(_ nodes: [String: String], name: String) {
        clusterName = name
        let removed = Set(registry.keys).subtracting(nodes.keys)
        registry = nodes
        host?.peers = peerIDs(nodes)
        for (n, a) in nodes where n != settings.nodeName { transport.learn(name: n, address: a) }
        for n in removed where n != settings.nodeName { transport.forget(name: n) }
        if !nodes.isEmpty && nodes[settings.nodeName] == nil && removed.contains(settings.nodeName) {
            wasRemoved = true
            logger.error("cluster: this node was removed from the cluster (forget_cluster_node); reset it (warrenctl reset) to use it again")
        }
    }

    private func peerIDs(_ nodes: [String: String]) -> [NodeID: String] {
        var out: [NodeID: String] = [:]
        for name in nodes.keys where name != settings.nodeName { out[ClusterNodeID.of(name)] = name }
        return out
    }

    // MARK: periodic

    private func every250ms() {
        guard let node = host.node(MetadataGroup.groupID) else { return }
        if !node.membership.members.contains(me) && !wasRemoved {
            askToJoin()
        }
        // A cluster reached this node first (its leader knew it as a member): nothing to found.
        if pendingFoundation != nil && !node.membership.members.isEmpty { pendingFoundation = nil }
        if node.role == .leader {
            reconcileMembership(node)
            noticeDownMembers()
        } else {
            unreachableSince.removeAll()
            downProposed.removeAll()
        }
        metadata.submitUnsent()  // proposals that wait for the link to the leader
        statusTick += 1
        if statusTick % 8 == 0 { sendStatus() }
        if statusTick % 4 == 0, let report = onPeerStatuses {
            let fresh = peerStatus.filter { $0.value.at + .seconds(10) > .now() }.mapValues(\.json)
            report(fresh, Array(registry.keys))
        }
    }

    private var statusTick = 0
    /// Leader only: since when each member has been unreachable, and the members whose
    /// `nodeDown` has been proposed in this episode.
    private var unreachableSince: [String: NIODeadline] = [:]
    private var downProposed: Set<String> = []
    /// How long a member is unreachable from the leader before its exclusive and transient
    /// queues are deleted (RabbitMQ acts on `nodedown`, 45-75 s after the last tick).
    public var nodeDownAfter = TimeAmount.seconds(10)

    /// The leader moves the Raft membership towards the registry, one change at a time: members
    /// of the registry join as learners and become voters once they have the log; nodes gone
    /// from it are removed.
    private func reconcileMembership(_ node: RaftNode) {
        guard !registry.isEmpty else { return }
        guard let change = node.nextMembershipChange(toward: Set(registry.keys.map { ClusterNodeID.of($0) })) else { return }
        let result = host.withGroup(MetadataGroup.groupID) { node -> Result<LogIndex, RaftError> in
            do throws(RaftError) { return .success(try node.proposeConfChange(change)) } catch { return .failure(error) }
        }
        switch result {
        case .success(let index)?:
            logger.notice("cluster: membership change proposed", metadata: ["change": "\(describe(change))", "index": "\(index)"])
        case .failure(let e)?:
            logger.debug("cluster: membership change waits", metadata: ["change": "\(describe(change))", "why": "\(e)"])
        case nil:
            break
        }
    }

    /// A member the leader has not reached for `nodeDownAfter` is down for its clients: its
    /// exclusive and transient queues go (once per episode; applying it twice does no harm).
    private func noticeDownMembers() {
        let now = NIODeadline.now()
        for name in registry.keys where name != settings.nodeName {
            if transport.isConnected(name) {
                unreachableSince[name] = nil
                downProposed.remove(name)
                continue
            }
            let since = unreachableSince[name] ?? now
            unreachableSince[name] = since
            guard now - since >= nodeDownAfter, !downProposed.contains(name) else { continue }
            downProposed.insert(name)
            logger.notice("cluster: \(name) unreachable for \(nodeDownAfter.nanoseconds / 1_000_000_000) s: its exclusive and transient queues are deleted")
            brokerLoop.execute { [metadata, logger] in
                metadata.propose(.nodeDown(name)) { outcome in
                    if case .notCommitted(let why) = outcome { logger.warning("cluster: node.down for \(name) not committed: \(why)") }
                }
            }
        }
    }

    func describe(_ change: ConfChange) -> String {
        func name(_ id: NodeID) -> String { id == me ? settings.nodeName : transport.names[id] ?? "\(id)" }
        switch change {
        case .addLearner(let id): return "add learner \(name(id))"
        case .addVoter(let id): return "promote \(name(id)) to voter"
        case .remove(let id): return "remove \(name(id))"
        case .bootstrap(let v): return "bootstrap \(v.map(name))"
        }
    }

    // MARK: joining

    private func askToJoin() {
        if settings.discovery != nil { return askDiscoveredPeers() }
        let seeds = settings.seeds.filter { $0 != address }
        guard !seeds.isEmpty else { return }
        // Once a second.
        joinAttempt += 1
        guard joinAttempt % 4 == 1 else { return }
        let seed = seeds[(joinAttempt / 4) % seeds.count]
        let id = nextJoinRequest
        nextJoinRequest += 1
        transport.send(.joinRequest(id: id, name: settings.nodeName, address: address), toAddress: seed)
        let now = NIODeadline.now()
        if now >= lastJoinLog + .seconds(10) {
            lastJoinLog = now
            logger.info("cluster: asking to join", metadata: ["seed": "\(seed)"])
        }
    }

    // MARK: discovery

    /// Pod 0's foundation, held until its peers said they are in no cluster.
    private var pendingFoundation: (data: [UInt8], configuration: RaftConfiguration)?
    /// The peers DNS lists now (pod 0 first), and what each answered this node.
    private var discoveredPeers: [String] = []
    private var discoveryAnswers: [String: PeerDiscovery.Answer] = [:]
    private var joinTargets: [UInt64: String] = [:]
    private var resolving = false
    private var lastDiscoveryLog = NIODeadline.uptimeNanoseconds(0)

    /// Once a second: every peer DNS lists is asked (every 2 s DNS is asked again, off the
    /// loop); then pod 0 founds if `decide` says so.
    private func askDiscoveredPeers() {
        guard let discovery = settings.discovery else { return }
        joinAttempt += 1
        if joinAttempt % 8 == 1, !resolving, let resolve = settings.resolve {
            resolving = true
            let bound = NIOLoopBound(self, eventLoop: loop)
            Thread.detachNewThread { [loop] in
                let peers = discovery.peers(resolve: resolve)
                loop.execute {
                    bound.value.resolving = false
                    bound.value.discoveredPeers = peers
                }
            }
        }
        guard joinAttempt % 4 == 1 else { return }
        for peer in discoveredPeers {
            let id = nextJoinRequest
            nextJoinRequest += 1
            joinTargets[id] = peer
            transport.send(.joinRequest(id: id, name: settings.nodeName, address: address), toAddress: peer)
        }
        if joinTargets.count > 4096 { joinTargets.removeAll() }  // peers that never answered
        guard let foundation = pendingFoundation, joinAttempt > 8 else { return }  // DNS asked at least once
        switch discovery.decide(peers: discoveredPeers, answers: discoveryAnswers) {
        case .found:
            pendingFoundation = nil
            found(foundation.data, configuration: foundation.configuration)
        case .join:
            break
        case .wait(let why):
            let now = NIODeadline.now()
            if now >= lastDiscoveryLog + .seconds(10) {
                lastDiscoveryLog = now
                logger.notice("cluster: pod 0 waits before founding: \(why)")
            }
        }
    }

    /// Founds the cluster now: the joining group (it never had a member) is replaced by a
    /// group of one holding the initial state.
    private func found(_ data: [UInt8], configuration: RaftConfiguration) {
        host.removeGroup(MetadataGroup.groupID)
        metadata.startLastIndex = 1
        host.bootstrap(MetadataGroup.groupID, voters: [me], data: data, configuration: configuration, delegate: metadata)
        logger.notice(
            "cluster: founded a new cluster (pod 0; every peer DNS lists is in no cluster)",
            metadata: ["node": "\(settings.nodeName)", "address": "\(address)", "peers": "\(discoveredPeers.joined(separator: ","))"])
    }

    private func received(_ message: ClusterMessage, from: String, address: String?) {
        if case .joinReply(let id, let answer) = message, let peer = joinTargets.removeValue(forKey: id) {
            discoveryAnswers[peer] = answer == .notMember ? .notMember : .member
            if answer != .notMember, pendingFoundation != nil {
                pendingFoundation = nil
                logger.notice("cluster: a peer is in a cluster already: joining it instead of founding", metadata: ["peer": "\(peer)"])
            }
        }
        switch message {
        case .forward(let term, let envelopes):
            metadata.receiveForwarded(envelopes, term: term)
        case .joinRequest(let id, let name, let peerAddress):
            transport.learn(name: name, address: peerAddress)
            transport.send(.joinReply(id: id, joinAnswer(name: name, address: peerAddress)), toNode: name)
        case .joinReply(_, let answer):
            switch answer {
            case .accepted(let leaderName, let leaderAddress):
                transport.learn(name: leaderName, address: leaderAddress)
            case .redirect(let leaderName, let leaderAddress):
                transport.learn(name: leaderName, address: leaderAddress)
                transport.send(.joinRequest(id: nextJoinRequest, name: settings.nodeName, address: self.address), toNode: leaderName)
                nextJoinRequest += 1
            case .retry(let why):
                logger.debug("cluster: join not yet", metadata: ["why": "\(why)"])
            case .refused(let why):
                logger.error("cluster: the cluster refused this node: \(why)")
            case .notMember:
                break  // a peer looking for a cluster too (discovery counts it)
            }
        case .status(let json):
            peerStatus[from] = (json, .now())
        case .adminRequest(let id, let json):
            guard let handler = onAdminRequest else {
                transport.send(.adminReply(id: id, ok: false, "not serving"), toNode: from)
                return
            }
            handler(json) { [weak self] ok, answer in
                guard let self else { return }
                loop.execute { self.transport.send(.adminReply(id: id, ok: ok, answer), toNode: from) }
            }
        case .adminReply(let id, let ok, let json):
            adminWaits.removeValue(forKey: id)?(ok ? json : nil)
        }
    }

    // MARK: asking other nodes (the management API's cluster-wide views)

    /// Answers another node's management request (JSON in, JSON out); set by the node.
    public var onAdminRequest: ((String, @escaping @Sendable (Bool, String) -> Void) -> Void)?
    private var adminWaits: [UInt64: (String?) -> Void] = [:]
    private var nextAdminRequest: UInt64 = 1

    /// Asks `node` (cluster loop); `answer` gets its reply, or nil when it refused or did not
    /// answer within `timeout`.
    public func ask(_ node: String, _ json: String, timeout: TimeAmount, answer: @escaping (String?) -> Void) {
        loop.preconditionInEventLoop()
        let id = nextAdminRequest
        nextAdminRequest += 1
        adminWaits[id] = answer
        transport.send(.adminRequest(id: id, json), toNode: node)
        loop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in self?.adminWaits.removeValue(forKey: id)?(nil) }
    }

    /// What a node asking to join is told.
    private func joinAnswer(name: String, address peerAddress: String) -> ClusterMessage.JoinAnswer {
        guard let node = host.node(MetadataGroup.groupID) else { return .retry("starting") }
        // A node that was never let into a cluster (it is asking too) has none to offer.
        if node.membership.members.isEmpty && !wasRemoved { return .notMember }
        let id = ClusterNodeID.of(name)
        if node.role != .leader {
            if node.leader != 0, let leaderName = transport.names[node.leader], let leaderAddress = transport.addresses[node.leader] {
                return .redirect(leaderName: leaderName, leaderAddress: leaderAddress)
            }
            return .retry("no metadata leader known to \(settings.nodeName)")
        }
        if node.membership.members.contains(id) { return .accepted(leaderName: settings.nodeName, leaderAddress: address) }
        if registry[name] != peerAddress {
            // Registered through the log like any definition; the leader then adds it.
            brokerLoop.execute { [metadata, logger] in
                metadata.propose(.registerNode(name: name, address: peerAddress)) { outcome in
                    if case .notCommitted(let why) = outcome { logger.warning("cluster: registering \(name) failed: \(why)") }
                }
            }
            logger.notice("cluster: node asks to join", metadata: ["node": "\(name)", "address": "\(peerAddress)"])
        }
        return .retry("being added")
    }

    // MARK: status

    private func sendStatus() {
        guard let status = statusProvider?() else { return }
        for name in registry.keys where name != settings.nodeName { transport.send(.status(status), toNode: name) }
    }

    /// The state of the cluster as this node sees it (for cluster_status and /api/nodes).
    public struct View: Sendable {
        public var name: String
        public var members: [String: String]
        public var voters: [String]
        public var learners: [String]
        public var connected: [String]
        public var leader: String?
        public var term: Term
        public var commitIndex: LogIndex
        public var peerStatus: [String: String]
        public var refusals: [String: String]
        public var removed: Bool
    }

    public func view() -> View {
        let node = host?.node(MetadataGroup.groupID)
        func name(_ id: NodeID) -> String { id == me ? settings.nodeName : transport.names[id] ?? "node-\(id)" }
        let fresh = peerStatus.filter { $0.value.at + .seconds(10) > .now() }.mapValues(\.json)
        return View(
            name: clusterName, members: registry, voters: (node?.membership.voters ?? []).map(name).sorted(),
            learners: (node?.membership.learners ?? []).map(name).sorted(),
            connected: registry.keys.filter { $0 == settings.nodeName || transport.isConnected($0) }.sorted(),
            leader: node.flatMap { $0.leader == 0 ? nil : name($0.leader) }, term: node?.term ?? 0, commitIndex: node?.commitIndex ?? 0,
            peerStatus: fresh, refusals: refusals, removed: wasRemoved)
    }
}

public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
