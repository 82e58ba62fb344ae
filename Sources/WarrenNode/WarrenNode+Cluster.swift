import Foundation
import Logging
import NIOCore
import NIOConcurrencyHelpers
import WarrenCluster
import WarrenCore
import WarrenManagement
import WarrenStore
import WarrenTLS

extension NodeConfiguration {
    /// The cluster settings, with the secret read (or, the first time, made) and the TLS
    /// contexts built; errors name the setting or file that is wrong.
    func clusterSettings(dataDirectory: DataDirectory) throws -> ClusterSettings {
        let secret: String
        if let s = clusterSecret {
            secret = s
        } else {
            let path = clusterSecretFile ?? (dataDirectory.path as NSString).appendingPathComponent("cluster-secret")
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !secret.isEmpty else { throw Error("cluster-secret-file: '\(path)' is empty") }
            } else if clusterSecretFile != nil {
                throw Error("cluster-secret-file: cannot read '\(path)'")
            } else {
                // As RabbitMQ makes an Erlang cookie at first start: other nodes of the cluster
                // need a copy (or --cluster-secret).
                var g = SystemRandomNumberGenerator()
                secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
                guard FileManager.default.createFile(atPath: path, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                    throw Error("cluster-secret-file: cannot write '\(path)'")
                }
            }
        }
        var s = ClusterSettings(nodeName: nodeName, secret: secret)
        s.bindHost = bindAddress
        s.port = clusterPort
        s.advertisedAddress = clusterAddress
        s.clusterName = clusterName
        s.seeds = clusterSeeds
        if let setting = clusterDiscovery {
            // The pod's host name is the node name's host part (warren@warren-2.warren-headless).
            let host = nodeName.split(separator: "@").last.map { String($0.split(separator: ".")[0]) } ?? ""
            guard let d = PeerDiscovery(setting: setting, hostname: host, port: clusterPort), d.ordinal != nil else {
                throw Error("cluster-discovery: the node name '\(nodeName)' must be NAME@POD.SERVICE with POD a StatefulSet's pod (warren-0, warren-1, ...)")
            }
            s.discovery = d
            s.resolve = discoveryResolver ?? { d.dnsResolve($0) }
            if clusterAddress == nil { s.advertisedAddress = d.myAddress }
        }
        s.dialOverrides = clusterDial
        s.metadataTimeout = .seconds(Int64(metadataTimeoutSeconds))
        s.metadataSnapshotEvery = metadataSnapshotEvery
        if let tls = try clusterTLSSettings() {
            s.serverTLS = try tls.makeServerContext()
            s.clientTLS = try tls.makeClientContext()
        }
        // `warrenctl join_cluster` and `reset` leave a note for the next start.
        let note = (dataDirectory.path as NSString).appendingPathComponent(Self.joinNoteFile)
        if let target = try? String(contentsOfFile: note, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) {
            if target.isEmpty {
                s.bootstrap = true
            } else {
                s.seeds = [target]
                s.bootstrap = false
            }
        }
        return s
    }

    /// In the data directory: where `join_cluster` says whom to join ("" after `reset`: found
    /// a cluster of one).
    static let joinNoteFile = "cluster-join"
}

extension WarrenNode {
    /// Blocks until the node may serve clients: a restarted node once it replayed its own log,
    /// a founder at once, a joining node once the cluster took it in and it has the log up to
    /// the commit index it learned then.
    static func waitUntilServing(_ cluster: ClusterNode, started: ClusterNode.Start, brokerLoop: any EventLoop, logger: Logger) throws {
        var target: UInt64? = started == .joining ? nil : (started == .founded ? 1 : try cluster.loop.submit { cluster.recoveredCommit }.wait())
        var lastLog = Date.distantPast
        while true {
            if target == nil {
                target = try cluster.loop.submit { cluster.joinedCommitIndex() }.wait()
            }
            if let t = target {
                let applied = try brokerLoop.submit { cluster.metadata.appliedIndex }.wait()
                if applied >= t { return }
            }
            if Date().timeIntervalSince(lastLog) > 10 {
                lastLog = Date()
                logger.notice(
                    started == .joining ? "waiting to join the cluster (the seeds must be reachable, with the same cluster secret)" : "replaying the metadata log",
                    metadata: ["target": "\(target.map(String.init) ?? "-")"])
            }
            usleep(20_000)
        }
    }

    /// Lets this node's channels use every member's queues and the members' channels use this
    /// node's: queue traffic crosses on the transport's data links, in one batch per peer and
    /// turn of the broker loop, and arrives in one hop per read.
    static func connectQueues(_ broker: Broker, cluster: ClusterNode, brokerLoop: any EventLoop, silenceLimit: Int) {
        let cq = broker.enableClusterQueues()
        cq.silenceLimit = Int64(silenceLimit) * 1000
        let transport = cluster.transport!
        let clusterLoop = cluster.loop
        let bound = NIOLoopBound(cq, eventLoop: brokerLoop)
        cq.transmit = { name, batch in clusterLoop.execute { transport.sendData(batch, toNode: name) } }
        cq.scheduleFlush = { brokerLoop.execute { bound.value.flush() } }
        let metadata = cluster.metadata
        cq.appliedIndex = { metadata.appliedIndex }
        metadata.onApplied = { index in bound.value.metadataApplied(index) }
        clusterLoop.execute {
            transport.onData = { name, batches in
                brokerLoop.execute {
                    let cq = bound.value
                    for b in batches { cq.received(b, from: name) }
                }
            }
            transport.onDataLink = { name, up in brokerLoop.execute { bound.value.linkChanged(name, up: up) } }
        }
        brokerLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .seconds(1)) { _ in bound.value.tick() }
    }

    /// Quorum queues become replicated: each a Raft group over its members, on the node's Raft
    /// host (docs/replicated-queues.md).
    static func enableReplicatedQueues(_ broker: Broker, cluster: ClusterNode, brokerLoop: any EventLoop, timeoutSeconds: Int) {
        let rq = broker.enableReplicatedQueues()
        rq.log = QueueGroups(cluster: cluster, queues: rq, brokerLoop: brokerLoop)
        rq.timeout = Int64(timeoutSeconds) * 1000
        let bound = NIOLoopBound(rq, eventLoop: brokerLoop)
        rq.scheduleFlush = { brokerLoop.execute { bound.value.flush() } }
        brokerLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in bound.value.tick() }
    }

    /// The cluster as this node sees it, for the management API.
    func clusterStatus() async -> ClusterStatus? {
        let cluster = self.cluster
        let stopped = appSwitch.state == .stopped
        guard let view = try? await cluster.loop.submit({ cluster.view() }).get() else { return nil }
        let voters = Set(view.voters)
        var members: [ClusterStatus.Member] = []
        for (name, _) in view.members {
            let status = view.peerStatus[name].flatMap { JSONValue(jsonText: $0) }
            members.append(ClusterStatus.Member(name: name, running: view.connected.contains(name), voter: voters.contains(name), status: status))
        }
        let partitions = view.members.keys.filter { !view.connected.contains($0) }.sorted()
        return ClusterStatus(
            name: view.name, members: members, leader: view.leader, term: view.term, partitions: partitions, refusals: view.refusals,
            appStopped: stopped)
    }

    /// What this node tells the others of itself every 2 s (and its alarms with it).
    func startGossip() {
        let alarms = localAlarms
        let connections = connectionCount
        cluster.statusProvider = { [self] in
            nodeStatus().gossip(alarms: alarms.withLockedValue { $0 }, connections: connections.withLockedValue { $0 }).jsonText
        }
    }

    /// Other members' management APIs ask this node for its connections and channels.
    func answerOtherNodes() {
        let cluster = self.cluster
        cluster.loop.execute {
            // (Weak: the cluster node must not keep the node it belongs to alive.)
            cluster.onAdminRequest = { [weak self] json, reply in
                guard let self else { return reply(false, "stopping") }
                Task {
                    let (ok, text) = await self.answerForwarded(json)
                    reply(ok, text)
                }
            }
        }
    }

    /// Other members' alarms block publishers here; a member not heard from for 10 s has none.
    func followRemoteAlarms() {
        let broker = self.broker
        let me = configuration.nodeName
        cluster.onPeerStatuses = { statuses, members in
            var alarms: [String: Set<String>] = [:]
            for name in members where name != me {
                alarms[name] = Set(statuses[name].flatMap { JSONValue(jsonText: $0)?["alarms"]?.arrayValue }?.compactMap(\.stringValue) ?? [])
            }
            broker.eventLoop.execute {
                let b = broker.value
                for (name, set) in alarms { b.setRemoteAlarms(node: name, set) }
                for name in b.remoteAlarms.keys where alarms[name] == nil { b.setRemoteAlarms(node: name, []) }
            }
        }
    }

    /// Carries out an operator's node operation (the API checked the caller) and answers.
    func perform(_ action: NodeAction, status: NodeStatus) async -> ManagementResponse {
        func error(_ code: Int, _ reason: String) -> ManagementResponse {
            .json(.object(["error": .string(code == 400 ? "bad_request" : "unavailable"), "reason": .string(reason)]), status: code).finish()
        }
        let me = configuration.nodeName
        switch action {
        case .clusterStatus:
            let broker = self.broker
            let links = (try? await broker.eventLoop.submit { broker.value.clusterQueues?.peersUp ?? [] }.get()) ?? []
            return .json(clusterStatusJSON(status, queueLinks: links)).finish()
        case .quorumCritical(let queues):
            return quorumCriticalAnswer(queues, status: status).finish()
        case .forgetNode(let node):
            guard node != me else { return error(400, "a node cannot forget itself: run forget_cluster_node on another member, or reset this one") }
            guard let cluster = status.cluster, cluster.members.contains(where: { $0.name == node }) else {
                return error(404, "\(node) is not a member of this cluster")
            }
            if cluster.members.first(where: { $0.name == node })?.running == true {
                return error(400, "\(node) is running and reachable: stop it first (warrenctl -n \(node) stop_app, or stop its process), then forget it")
            }
            return await propose(.forgetNode(node))
        case .joinCluster(let target):
            guard appSwitch.state == .stopped else { return error(400, "stop the node's application first (warrenctl stop_app), as RabbitMQ asks before join_cluster") }
            let address = Self.clusterAddress(of: target, port: configuration.clusterPort)
            return restartAfter(note: address, "joining the cluster at \(address)")
        case .reset:
            guard appSwitch.state == .stopped else { return error(400, "stop the node's application first (warrenctl stop_app), as RabbitMQ asks before reset") }
            if let cluster = status.cluster, cluster.members.count > 1 {
                // The others remove it from the cluster; that needs their majority.
                let answer = await propose(.forgetNode(me))
                guard answer.status < 300 else { return answer }
            }
            return restartAfter(note: "", "reset: a cluster of one from now on, with nothing in it")
        case .stopApp:
            appSwitch.set(.stopped)
            return ManagementResponse(status: 204).finish()
        case .startApp:
            appSwitch.set(.running)
            return ManagementResponse(status: 204).finish()
        }
    }

    /// `warren@host` names a node on its host at the default cluster port (RabbitMQ's node names
    /// carry no port); HOST:PORT is taken as it is.
    static func clusterAddress(of target: String, port: Int) -> String {
        guard let at = target.firstIndex(of: "@") else { return target.contains(":") ? target : "\(target):\(port)" }
        let host = target[target.index(after: at)...]
        return host.contains(":") ? String(host) : "\(host):\(port)"
    }

    private func propose(_ command: MetadataCommand) async -> ManagementResponse {
        let broker = self.broker
        let promise = broker.eventLoop.makePromise(of: MetadataOutcome.self)
        broker.eventLoop.execute { broker.value.metadataLog.propose(command) { promise.succeed($0) } }
        switch try? await promise.futureResult.get() {
        case .done?: return ManagementResponse(status: 204).finish()
        case .refused(let e)?: return .json(.object(["error": .string("bad_request"), "reason": .string(e.text)]), status: 400).finish()
        case .notCommitted(let why)?: return .json(.object(["error": .string("unavailable"), "reason": .string(why)]), status: 503).finish()
        case nil: return ManagementResponse(status: 500).finish()
        }
    }

    /// Wipes this node's data, leaves a note for the next start, and starts the process again
    /// (the same arguments): the simplest way to a node that is new in every respect.
    private func restartAfter(note: String, _ what: String) -> ManagementResponse {
        let dir = dataDirectory.path
        logger.notice("\(what): the node wipes its data and restarts")
        let args = CommandLine.arguments
        let cluster = self.cluster
        let store = self.store
        let broker = self.broker
        Thread.detachNewThread {
            usleep(300_000)  // the answer leaves first
            // Nothing may write into the directory while it is wiped: the metadata group, the
            // Raft log and the store stop first (their threads would otherwise leave files a
            // fresh node would take for a damaged store).
            try? broker.eventLoop.submit { cluster.metadata.stop() }.wait()
            try? cluster.loop.submit { cluster.stop() }.wait()
            try? store.eventLoop.submit { store.value.close() }.wait()
            let fm = FileManager.default
            for item in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where item != "cluster-secret" {
                try? fm.removeItem(atPath: (dir as NSString).appendingPathComponent(item))
            }
            fm.createFile(atPath: (dir as NSString).appendingPathComponent(NodeConfiguration.joinNoteFile), contents: Data(note.utf8))
            let path = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            // The new image must be able to bind the same ports, and no client may be left
            // with a connection nobody reads: listening sockets stop accepting (shut down, not
            // closed), then every descriptor is marked close-on-exec (NIO's accepted sockets
            // and some listeners are not), so the exec closes them all at once. Not closed
            // here: the event loops run until the exec, and one woken through a closed eventfd
            // stops the process (NIO's EBADF precondition; a management request during a reset
            // did, test_cluster.py's reset test asks all the time now).
            func descriptors() -> [Int32] {
                ((try? fm.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }.filter { $0 > 2 }
            }
            for fd in descriptors() {
                var listening: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening != 0 { _ = shutdown(fd, Int32(SHUT_RD)) }
            }
            for fd in descriptors() { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            var cargs = args.map { strdup($0) }
            cargs.append(nil)
            execv(path, cargs)
            exit(75)
        }
        return ManagementResponse(status: 204).finish()
    }

    /// RabbitMQ's answer to `node-is-quorum-critical` (200 ok, or 503 with the queues), with
    /// the cluster's metadata as one more group: stopping a voter that leaves the others
    /// online short of a majority of voters stops every definition change and every join.
    func quorumCriticalAnswer(_ queues: [QuorumCriticalQueue], status: NodeStatus) -> ManagementResponse {
        let me = configuration.nodeName
        var metadataCritical = false
        if let c = status.cluster {
            let voters = c.members.filter(\.voter)
            if voters.count > 1, voters.contains(where: { $0.name == me }) {
                let othersOnline = voters.filter { $0.running && $0.name != me }.count
                metadataCritical = othersOnline < voters.count / 2 + 1
            }
        }
        guard !queues.isEmpty || metadataCritical else { return .json(.object(["status": .string("ok")])) }
        var reason = queues.isEmpty ? "" : "There are quorum queues that would lose their quorum if the target node is shut down"
        if metadataCritical {
            reason += (reason.isEmpty ? "" : "; ") + "the cluster's metadata would lose its majority if the target node is shut down"
        }
        let list = queues.map { q in
            JSONValue.object([
                "name": .string(q.name), "readable_name": .string("queue '\(q.name)' in vhost '\(q.vhost)'"), "node": .string(me),
                "virtual_host": .string(q.vhost), "type": .string(q.type), "members": .array(q.members.map(JSONValue.string)),
                "online": .array(q.online.map(JSONValue.string)),
            ])
        }
        return .json(
            .object(["status": .string("failed"), "reason": .string(reason), "queues": .array(list), "metadata": .bool(metadataCritical)]), status: 503)
    }

    /// `cluster_status` in RabbitMQ's JSON layout (`rabbitmqctl cluster_status --formatter json`).
    func clusterStatusJSON(_ status: NodeStatus, queueLinks: [String]) -> JSONValue {
        guard let c = status.cluster else { return .object([:]) }
        let names = c.members.map(\.name).sorted()
        let running = c.members.filter(\.running).map(\.name).sorted()
        var listeners: [String: JSONValue] = [:]
        var alarms: [JSONValue] = []
        for m in c.members {
            let own = m.name == configuration.nodeName
            let list: [JSONValue] =
                own
                ? status.listeners.map { .object(["interface": .string($0.ip), "node": .string(m.name), "port": .int(Int64($0.port)), "protocol": .string($0.protocolName)]) }
                : (m.status?["listeners"]?.arrayValue ?? []).map { l in
                    .object(["interface": l["ip_address"] ?? .string(""), "node": .string(m.name), "port": l["port"] ?? .int(0), "protocol": l["protocol"] ?? .string("")])
                }
            listeners[m.name] = .array(list)
            for a in m.status?["alarms"]?.arrayValue ?? [] { alarms.append(.object(["node": .string(m.name), "resource": a])) }
        }
        return .object([
            "cluster_name": .string(c.name), "disk_nodes": .array(names.map(JSONValue.string)), "ram_nodes": .array([]),
            "running_nodes": .array(running.map(JSONValue.string)), "alarms": .array(alarms),
            "network_partitions": .object(c.partitions.isEmpty ? [:] : [configuration.nodeName: .array(c.partitions.map(JSONValue.string))]),
            "listeners": .object(listeners),
            "versions": .object(Dictionary(uniqueKeysWithValues: running.map { ($0, JSONValue.object(["warren_version": .string(configuration.broker.productVersion)])) })),
            "maintenance_status": .object(Dictionary(uniqueKeysWithValues: names.map { ($0, JSONValue.string("not under maintenance")) })),
            "feature_flags": .array([]),
            "metadata_leader": c.leader.map(JSONValue.string) ?? .null, "metadata_term": .int(Int64(c.term)),
            "voters": .array(c.members.filter(\.voter).map { .string($0.name) }),
            // Warren's: the nodes this one's queue sessions are up with (publishes to their
            // queues, deliveries from them); a node that just (re)started has its links up and
            // is in running_nodes a moment before these.
            "queue_links": .array(queueLinks.map(JSONValue.string)),
            "refusals": .object(c.refusals.mapValues(JSONValue.string)),
        ])
    }
}
