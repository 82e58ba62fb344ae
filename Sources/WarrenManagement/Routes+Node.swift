import AMQPProtocol
import NIOCore
import Logging
import WarrenCore

/// Overview, nodes, connections and channels, health checks.
extension ManagementAPI {
    func overview(_ caller: Caller, _ node: NodeStatus) -> JSONValue {
        var ready = 0
        var unacked = 0
        var queues = 0
        var exchanges = 0
        var consumers = 0
        for v in visibleVHosts(caller) {
            exchanges += v.exchanges.count
            for q in v.queues.values {
                queues += 1
                consumers += q.consumerCount
                ready += q.messageCount
                unacked += q.unackedCount
            }
        }
        let conns = visibleConnections(caller)
        let counters = Self.globalCounters(broker.stats, ready: ready, unacked: unacked)
        var totals: [String: JSONValue] = [:]
        // The counts are what the caller sees; their rates are sampled node-wide.
        messageTotals(into: &totals, counters, offset: Self.globalStatNames.count, key: RateSampler.global)
        let version = broker.configuration.productVersion
        return .object([
            "management_version": .string(version), "rates_mode": .string("basic"),
            "product_name": .string("Warren"), "product_version": .string(version),
            "rabbitmq_version": .string("3.10.8"), "cluster_name": .string(broker.clusterName),
            "node": .string(nodeName),
            "object_totals": .object([
                "connections": Self.int(conns.count), "channels": Self.int(conns.reduce(0) { $0 + $1.channelCount }),
                "exchanges": Self.int(exchanges), "queues": Self.int(queues), "consumers": Self.int(consumers),
            ]),
            "queue_totals": .object(totals),
            "message_stats": messageStats(Self.globalStatNames, counters, key: RateSampler.global),
            "listeners": .array(node.listeners.map { l in
                .object(["node": .string(nodeName), "protocol": .string(l.protocolName), "ip_address": .string(l.ip), "port": Self.int(l.port)])
            }),
            "contexts": .array([
                .object([
                    "node": .string(nodeName), "description": .string("Warren Management"), "path": .string("/"),
                    "port": .string(String(node.managementPort)),
                ])
            ]),
            "exchange_types": Self.exchangeTypes,
            "statistics_db_event_queue": .int(0),
        ])
    }

    static let exchangeTypes = JSONValue.array(
        [
            ("direct", "AMQP direct exchange, as per the AMQP specification"),
            ("fanout", "AMQP fanout exchange, as per the AMQP specification"),
            ("headers", "AMQP headers exchange, as per the AMQP specification"),
            ("topic", "AMQP topic exchange, as per the AMQP specification"),
            ("x-federation-upstream", "Federation upstream helper exchange"),
        ].map { .object(["name": .string($0.0), "description": .string($0.1), "enabled": .bool(true)]) })

    /// Every member of the cluster: this node as it measures itself, the others as they last
    /// said (or not running), RabbitMQ's fields.
    func nodesJSON(_ n: NodeStatus) -> [JSONValue] {
        guard let cluster = n.cluster else { return [nodeJSON(n)] }
        var out: [JSONValue] = []
        for m in cluster.members.sorted(by: { $0.name < $1.name }) {
            if m.name == nodeName {
                out.append(nodeJSON(n))
                continue
            }
            var o = m.status?.objectValue ?? [:]
            o["listeners"] = nil
            o["alarms"] = nil
            o["name"] = .string(m.name)
            o["type"] = .string("disc")
            o["running"] = .bool(m.running && m.status != nil)
            o["partitions"] = .array([])
            out.append(.object(o))
        }
        return out
    }

    func nodeJSON(_ n: NodeStatus) -> JSONValue {
        .object([
            "name": .string(nodeName), "type": .string("disc"), "running": .bool(!(n.cluster?.appStopped ?? false)), "os_pid": .string(String(n.pid)),
            "mem_used": Self.int(n.memoryUsed), "mem_limit": Self.int(n.memoryLimit),
            "mem_alarm": .bool(broker.localAlarms.contains("memory")),
            "disk_free": Self.int(n.diskFree), "disk_free_limit": Self.int(n.diskFreeLimit),
            "disk_free_alarm": .bool(broker.localAlarms.contains("disk")),
            "fd_used": Self.int(n.fdUsed), "fd_total": Self.int(n.fdTotal),
            "sockets_used": Self.int(broker.connections.count), "sockets_total": Self.int(n.fdTotal),
            "uptime": .int(n.uptimeMilliseconds), "processors": Self.int(n.processors), "rates_mode": .string("basic"),
            "partitions": .array((n.cluster?.partitions ?? []).map(JSONValue.string)), "exchange_types": Self.exchangeTypes,
            "auth_mechanisms": .array(["PLAIN", "AMQPLAIN", "EXTERNAL"].map { .object(["name": .string($0), "enabled": .bool(true)]) }),
        ])
    }

    /// Monitors see every connection, other management users their own, as RabbitMQ.
    func visibleConnections(_ caller: Caller) -> [AMQPConnection] {
        broker.connections.values
            .filter { $0.user != nil && (caller.isMonitor || $0.user?.name == caller.user.name) }
            .sorted { $0.id < $1.id }
    }

    func channels(of c: AMQPConnection) -> [ChannelSession] { c.channelNumbers.compactMap { c.channel($0) } }

    func connections(
        _ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: ([JSONValue]) throws -> ManagementResponse
    ) throws -> ManagementResponse {
        if p.count == 1 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            return try list(visibleConnections(caller).map { json(connection: $0) })
        }
        guard let c = visibleConnections(caller).first(where: { Self.connectionName($0) == p[1] }) else { throw APIError.notFound }
        if p.count == 3 && p[2] == "channels" && r.method == "GET" { return try list(channels(of: c).map { json(channel: $0) }) }
        guard p.count == 2 else { throw APIError.notFound }
        switch r.method {
        case "GET": return .json(json(connection: c))
        case "DELETE":
            let reason = r.reason ?? "Closed via management plugin"
            broker.logger.notice("closing connection at an operator's request", metadata: [
                "connection": "\(Self.connectionName(c))", "by": "\(caller.user.name)", "reason": "\(reason)",
            ])
            c.close(reason: reason)
            return Self.noContent
        default: throw APIError.methodNotAllowed
        }
    }

    /// Replicated queues with more than one member, one of them this node, whose members
    /// online other than this node are fewer than a majority (as RabbitMQ's check: a queue of
    /// one member is not counted, it has no quorum to lose).
    func quorumCriticalQueues() -> [QuorumCriticalQueue] {
        let cq = broker.clusterQueues
        var critical: [QuorumCriticalQueue] = []
        for v in broker.vhosts.values.sorted(by: { $0.name < $1.name }) {
            for q in v.queues.values.sorted(by: { $0.name < $1.name }) {
                guard let r = q.replicated, r.members.count > 1, r.members.contains(nodeName) else { continue }
                let online = r.members.filter { $0 == nodeName || cq?.isUp($0) == true }
                if online.count - 1 < r.members.count / 2 + 1 {
                    critical.append(QuorumCriticalQueue(name: q.name, vhost: v.name, type: q.type == .quorum ? "quorum" : "classic", members: r.members, online: online))
                }
            }
        }
        return critical
    }

    /// 200 {"status":"ok"}, or 503 naming the alarms in force (one node: the same for both).
    func alarmsCheck(local: Bool) -> ManagementResponse {
        var alarms = broker.localAlarms.sorted().map { JSONValue.object(["node": .string(nodeName), "resource": .string($0)]) }
        if !local {
            for (node, names) in broker.remoteAlarms.sorted(by: { $0.key < $1.key }) {
                alarms += names.sorted().map { JSONValue.object(["node": .string(node), "resource": .string($0)]) }
            }
        }
        guard !alarms.isEmpty else { return .json(.object(["status": .string("ok")])) }
        let reason = local ? "resource alarm(s) in effect on this node" : "resource alarm(s) in effect in the cluster"
        return .json(.object(["status": .string("failed"), "reason": .string(reason), "alarms": .array(alarms)]), status: 503)
    }

    /// Declares `aliveness-test` in the vhost, publishes a message to it and reads it back.
    func aliveness(_ vhostName: String, _ caller: Caller) throws -> ManagementResponse {
        let v = try actingVHost(vhostName, caller)
        guard let q = v.queues["aliveness-test"] else {
            return try commit(.declareQueue(QueueDeclaration(vhost: v.name, name: "aliveness-test", durable: false, node: broker.nodeName))) {
                [self] _ in try aliveness(vhostName, caller)
            }
        }
        var body = ByteBuffer()
        body.writeString("test_message")
        q.enqueue(Message(exchange: "", routingKey: "aliveness-test", properties: BasicProperties(), body: body))
        guard let e = q.get(noAck: true), e.message.body.getString(at: e.message.body.readerIndex, length: e.message.bodySize) == "test_message"
        else {
            return .json(.object(["status": .string("failed"), "reason": .string("test message not received")]), status: 503)
        }
        return .json(.object(["status": .string("ok")]))
    }
}

/// The node's own operations (`warrenctl cluster_status`, `join_cluster`, `forget_cluster_node`,
/// `reset`, `stop_app`, `start_app`) under `/api/warren/...`: administrators only; the node
/// shell carries them out.
extension ManagementAPI {
    func nodeAction(_ p: [String], _ r: ManagementRequest, _ caller: Caller) throws -> ManagementResponse {
        try require(p[1] == "cluster" && p.count == 2 && r.method == "GET" ? .monitoring : .administrator, caller)
        let action: NodeAction
        switch (r.method, p.count, p[1]) {
        case ("GET", 2, "cluster"): action = .clusterStatus
        case ("POST", 3, "cluster") where p[2] == "forget":
            guard let node = try object(r)["node"]?.stringValue, !node.isEmpty else {
                throw APIError(status: 400, error: "bad_request", reason: "expected {\"node\": \"warren@host\"}")
            }
            action = .forgetNode(node)
        case ("POST", 3, "cluster") where p[2] == "join":
            guard let seed = try object(r)["node"]?.stringValue, !seed.isEmpty else {
                throw APIError(status: 400, error: "bad_request", reason: "expected {\"node\": \"warren@host or HOST:PORT\"}")
            }
            action = .joinCluster(seed)
        case ("POST", 3, "cluster") where p[2] == "reset": action = .reset
        case ("POST", 3, "app") where p[2] == "stop": action = .stopApp
        case ("POST", 3, "app") where p[2] == "start": action = .startApp
        default: throw APIError.notFound
        }
        var response = ManagementResponse(status: 202)
        response.nodeAction = action
        return response
    }
}

/// rabbitmq-queues grow and shrink: a node added to, or removed from, the members of every
/// replicated queue that matches (one metadata change per queue; each group's leader then
/// changes its Raft membership).
extension ManagementAPI {
    func changeMembership(grow: Bool, _ r: ManagementRequest) throws -> ManagementResponse {
        let body = try object(r)
        guard let node = body["node"]?.stringValue, !node.isEmpty else {
            throw APIError(status: 400, error: "bad_request", reason: "expected {\"node\": \"warren@host\"}")
        }
        // (A node that left the cluster may still be shrunk away.)
        if grow && broker.clusterNodes[node] == nil {
            throw APIError(status: 404, error: "not_found", reason: "\(node) is not a member of this cluster")
        }
        let strategy = body["strategy"]?.stringValue ?? "all"
        guard strategy == "all" || strategy == "even" else {
            throw APIError(status: 400, error: "bad_request", reason: "strategy must be 'all' or 'even'")
        }
        let vhosts = CompiledPattern(body["vhost_pattern"]?.stringValue ?? ".*")
        let queues = CompiledPattern(body["queue_pattern"]?.stringValue ?? ".*")
        var commands: [MetadataCommand] = []
        var rows: [JSONValue] = []
        for v in broker.vhosts.values.sorted(by: { $0.name < $1.name }) where vhosts.matches(v.name) {
            for q in v.queues.values.sorted(by: { $0.name < $1.name }) where queues.matches(q.name) {
                guard let rq = q.replicated else { continue }
                var members = rq.members
                if grow {
                    guard !members.contains(node), strategy == "all" || members.count % 2 == 0 else { continue }
                    members.append(node)
                } else {
                    guard members.contains(node), members.count > 1 else { continue }
                    members.removeAll { $0 == node }
                }
                commands.append(.queueMembers(vhost: v.name, name: q.name, incarnation: q.incarnation, members: members))
                rows.append(.object(["vhost": .string(v.name), "name": .string(q.name), "size": .int(Int64(members.count)), "result": .string("ok")]))
            }
        }
        return try commitAll(commands) { .json(.array(rows)) }
    }
}

/// rabbitmq-queues rebalance: leaders of the matching replicated queues spread over the nodes,
/// as evenly as their members allow (`ReplicatedQueues.spreadingMoves`).
extension ManagementAPI {
    func rebalance(_ r: ManagementRequest) throws -> ManagementResponse {
        let body = r.body.isEmpty ? [:] : try object(r)
        let vhosts = CompiledPattern(body["vhost_pattern"]?.stringValue ?? ".*")
        let queues = CompiledPattern(body["queue_pattern"]?.stringValue ?? ".*")
        var chosen: [(VirtualHost, MessageQueue, ReplicatedQueue)] = []
        for v in broker.vhosts.values.sorted(by: { $0.name < $1.name }) where vhosts.matches(v.name) {
            for q in v.queues.values.sorted(by: { $0.name < $1.name }) where queues.matches(q.name) {
                if let rq = q.replicated { chosen.append((v, q, rq)) }
            }
        }
        let moves = broker.replicatedQueues?.spreadingMoves(chosen.map(\.1)) ?? []
        let commands = moves.map(\.command)
        let rows: [JSONValue] = moves.map {
            .object(["vhost": .string($0.vhost), "name": .string($0.name), "from": .string($0.from), "to": .string($0.to)])
        }
        return try commitAll(commands) { .json(.array(rows)) }
    }
}
