import AMQPProtocol
import Foundation
import WarrenCore

/// The JSON RabbitMQ's API shows for each kind of object, with its field names and types. Only
/// fields Warren can fill truthfully are present (no Erlang process details).
extension ManagementAPI {
    static func int(_ n: some BinaryInteger) -> JSONValue { .int(Int64(n)) }
    static func rate(_ r: Double) -> JSONValue { .object(["rate": .double((r * 10).rounded() / 10)]) }

    // MARK: message stats

    static let queueStatNames = ["publish", "deliver_get", "deliver", "get", "get_empty", "redeliver", "ack"]
    static let globalStatNames = [
        "publish", "deliver_get", "deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty", "redeliver", "ack",
        "confirm", "return_unroutable", "drop_unroutable",
    ]

    static func queueCounters(_ q: MessageQueue) -> [Double] {
        let deliverGet = Double(q.deliveredCount)
        return [
            Double(q.publishedCount), deliverGet, deliverGet - Double(q.getCount), Double(q.getCount), Double(q.getEmptyCount),
            Double(q.redeliveredCount), Double(q.ackedCount),
            Double(q.messageCount + q.unackedCount), Double(q.messageCount), Double(q.unackedCount),
        ]
    }

    static func globalCounters(_ s: BrokerStats, ready: Int, unacked: Int) -> [Double] {
        [
            s.received, s.deliverGet, s.deliveredManualAck + s.deliveredAutoAck, s.deliveredAutoAck,
            s.getManualAck + s.getAutoAck, s.getAutoAck, s.getEmpty, s.redelivered, s.acknowledged, s.confirmed,
            s.unroutableReturned, s.unroutableDropped,
        ].map { Double($0) } + [Double(ready + unacked), Double(ready), Double(unacked)]
    }

    func messageStats(_ names: [String], _ values: [Double], key: UInt64) -> JSONValue {
        var o: [String: JSONValue] = [:]
        for (i, name) in names.enumerated() {
            o[name] = .int(Int64(values[i]))
            o[name + "_details"] = Self.rate(rates.rate(key, i))
        }
        return .object(o)
    }

    /// messages / messages_ready / messages_unacknowledged with their rates, from the three
    /// values after the named counters.
    func messageTotals(into o: inout [String: JSONValue], _ values: [Double], offset: Int, key: UInt64) {
        for (i, name) in ["messages", "messages_ready", "messages_unacknowledged"].enumerated() {
            o[name] = .int(Int64(values[offset + i]))
            o[name + "_details"] = Self.rate(rates.rate(key, offset + i))
        }
    }

    // MARK: queues

    func json(queue q: MessageQueue, detailed: Bool) -> JSONValue {
        let key = q.serial
        let counters = Self.queueCounters(q)
        let s = q.settings
        var o: [String: JSONValue] = [
            "name": .string(q.name), "vhost": .string(q.vhost.name), "durable": .bool(q.durable),
            "auto_delete": .bool(q.autoDelete), "exclusive": .bool(q.isExclusive), "arguments": Broker.json(q.arguments),
            "node": .string(q.homeNode), "state": .string("running"), "type": .string(q.type.rawValue),
            "consumers": Self.int(q.consumerCount),
            "message_bytes": Self.int(q.messageBytes), "message_bytes_ready": Self.int(q.messageBytes),
            // An estimate: bodies held plus a fixed cost per message and per queue.
            "memory": Self.int(1024 + q.messageBytes + 96 * (q.messageCount + q.unackedCount)),
            "policy": s.policyName.map(JSONValue.string) ?? .null,
            "operator_policy": s.operatorPolicyName.map(JSONValue.string) ?? .null,
            "effective_policy_definition": .object(effectivePolicy(q)),
            "exclusive_consumer_tag": q.hasExclusiveConsumer ? .string(q.consumers.first!.tag) : .null,
            "single_active_consumer_tag": q.activeConsumer.map { .string($0.tag) } ?? .null,
            "head_message_timestamp": .null,
            "message_stats": messageStats(Self.queueStatNames, counters, key: key),
        ]
        messageTotals(into: &o, counters, offset: Self.queueStatNames.count, key: key)
        if let r = q.replicated {
            // Its group: the leader the metadata records, the members, those reachable now.
            o["leader"] = .string(q.homeNode)
            o["members"] = .array(r.members.map(JSONValue.string))
            let cq = broker.clusterQueues
            let online = r.members.filter { $0 == nodeName || cq?.isUp($0) == true }
            o["online"] = .array(online.map(JSONValue.string))
            if q.type == .classic {
                // Mirrored by a policy: RabbitMQ's names. In sync: voters of the group (a
                // member still catching up is a learner).
                let mirrors = r.members.filter { $0 != q.homeNode }
                o["slave_nodes"] = .array(mirrors.map(JSONValue.string))
                o["synchronised_slave_nodes"] = .array(mirrors.filter { online.contains($0) && r.status.voters.contains($0) }.map(JSONValue.string))
            }
            if let limit = s.deliveryLimit { o["delivery_limit"] = .int(limit) }
        } else if q.type == .quorum {
            // A group of one on a single node.
            o["leader"] = .string(nodeName)
            o["members"] = .array([.string(nodeName)])
            o["online"] = .array([.string(nodeName)])
            if let limit = s.deliveryLimit { o["delivery_limit"] = .int(limit) }
        }
        if detailed {
            o["consumer_details"] = .array(q.consumers.map { json(consumer: $0) })
            o["incoming"] = .array([])
            o["deliveries"] = .array([])
        }
        return .object(o)
    }

    /// The policy keys in force for a queue (RabbitMQ's effective_policy_definition).
    func effectivePolicy(_ q: MessageQueue) -> [String: JSONValue] {
        var o: [String: JSONValue] = [:]
        for name in [q.settings.policyName, q.settings.operatorPolicyName].compactMap({ $0 }) {
            let p = broker.policies[q.vhost.name]?[name] ?? broker.operatorPolicies[q.vhost.name]?[name]
            for (k, v) in p?.definition ?? [:] where o[k] == nil { o[k] = v }
        }
        return o
    }

    // MARK: exchanges and bindings

    func json(exchange x: Exchange, vhost: String) -> JSONValue {
        guard case .object(var o) = Broker.json(exchange: x, vhost: vhost) else { return .null }
        if let p = x.policyName { o["policy"] = .string(p) }
        return .object(o)
    }

    /// A binding to list: the default exchange's implicit one to a queue, or a declared one.
    enum BindingRow {
        case implicit(MessageQueue)
        case declared(Binding, VirtualHost)

        /// Its view; nil once it is gone.
        var json: JSONValue? {
            switch self {
            case .implicit(let q): return q.isDeleted ? nil : ManagementAPI.json(implicitBindingTo: q)
            case .declared(let b, let v): return b.source.bindings.contains(b) ? ManagementAPI.json(binding: b, vhost: v.name) : nil
            }
        }
    }

    /// Every binding in a vhost, unordered (listings order them off the loop).
    func bindingRows(in v: VirtualHost) -> [BindingRow] {
        var out = v.queues.values.map(BindingRow.implicit)
        for x in v.exchanges.values { out.append(contentsOf: x.bindings.map { .declared($0, v) }) }
        return out
    }

    static func json(implicitBindingTo q: MessageQueue) -> JSONValue {
        .object([
            "source": .string(""), "vhost": .string(q.vhost.name), "destination": .string(q.name),
            "destination_type": .string("queue"), "routing_key": .string(q.name), "arguments": .object([:]),
            "properties_key": .string(propertiesKey(q.name, [:])),
        ])
    }

    static func json(binding b: Binding, vhost: String) -> JSONValue {
        guard case .object(var o) = Broker.json(b, vhost: vhost) else { return .null }
        o["properties_key"] = .string(propertiesKey(b.routingKey, b.arguments))
        return .object(o)
    }

    /// Names one binding in a URL: the routing key percent-encoded ("~" when empty), with a
    /// digest of the arguments after a "~" when there are any.
    static func propertiesKey(_ key: String, _ arguments: FieldTable) -> String {
        let k = key.isEmpty ? "~" : percentEncode(key)
        if arguments.entries.isEmpty { return k }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in JSONWriter.bytes(Broker.json(arguments)) {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return k + "~" + String(h, radix: 36)
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if b < 0x80 && (c.isLetter || c.isNumber || "-_.~".contains(c)) {
                out.append(c)
            } else {
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    // MARK: connections, channels, consumers

    static func connectionName(_ c: AMQPConnection) -> String {
        "\(c.peer.address) -> \(c.peer.localAddress.isEmpty ? "warren" : c.peer.localAddress)"
    }

    static func hostPort(_ address: String) -> (String, Int) {
        guard let colon = address.lastIndex(of: ":") else { return (address, 0) }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, Int(address[address.index(after: colon)...]) ?? 0)
    }

    func json(connection c: AMQPConnection) -> JSONValue {
        let (peerHost, peerPort) = Self.hostPort(c.peer.address)
        let (host, port) = Self.hostPort(c.peer.localAddress)
        let state: String
        switch c.state {
        case .open: state = c.isBlocked ? "blocked" : (c.isFlowPaused ? "flow" : "running")
        case .closing, .closed: state = "closing"
        default: state = "starting"
        }
        var o: [String: JSONValue] = [
            "name": .string(Self.connectionName(c)), "node": .string(nodeName), "type": .string("network"),
            "protocol": .string("AMQP 0-9-1"), "state": .string(state),
            "peer_host": .string(peerHost), "peer_port": Self.int(peerPort), "host": .string(host), "port": Self.int(port),
            "ssl": .bool(c.peer.isTLS), "channels": Self.int(c.channelCount),
            "channel_max": Self.int(c.limits.channelMax), "frame_max": Self.int(c.limits.frameMax),
            "timeout": Self.int(c.limits.heartbeat), "connected_at": .int(c.connectedAt),
            "client_properties": Broker.json(c.clientProperties),
        ]
        if let u = c.user { o["user"] = .string(u.name) }
        if let v = c.vhost { o["vhost"] = .string(v.name) }
        if let m = c.authMechanism { o["auth_mechanism"] = .string(m) }
        if let n = c.clientProperties["connection_name"]?.stringValue { o["user_provided_name"] = .string(n) }
        return .object(o)
    }

    static func channelName(_ ch: ChannelSession) -> String { "\(connectionName(ch.connection)) (\(ch.number))" }

    func json(channel ch: ChannelSession) -> JSONValue {
        let c = ch.connection
        let (peerHost, peerPort) = Self.hostPort(c.peer.address)
        var o: [String: JSONValue] = [
            "name": .string(Self.channelName(ch)), "node": .string(nodeName), "number": Self.int(ch.number),
            "connection_details": .object([
                "name": .string(Self.connectionName(c)), "peer_host": .string(peerHost), "peer_port": Self.int(peerPort),
            ]),
            "consumer_count": Self.int(ch.consumers.count), "messages_unacknowledged": Self.int(ch.unackedCount),
            "prefetch_count": Self.int(ch.prefetchCount), "global_prefetch_count": Self.int(ch.globalPrefetchCount),
            "confirm": .bool(ch.isInConfirmMode), "transactional": .bool(ch.isTransactional), "state": .string("running"),
        ]
        if let u = c.user { o["user"] = .string(u.name) }
        if let v = c.vhost { o["vhost"] = .string(v.name) }
        return .object(o)
    }

    func json(consumer k: Consumer) -> JSONValue {
        let waiting = k.queue.settings.singleActiveConsumer && k.queue.activeConsumer !== k
        var details: JSONValue = .object(["node": .string(k.remoteNode ?? nodeName)])
        if let ch = k.channel {
            // (A consumer of another node shows its node only; that node lists its channel.)
            let c = ch.connection
            let (peerHost, peerPort) = Self.hostPort(c.peer.address)
            details = .object([
                "name": .string(Self.channelName(ch)), "connection_name": .string(Self.connectionName(c)),
                "number": Self.int(ch.number), "node": .string(nodeName), "peer_host": .string(peerHost),
                "peer_port": Self.int(peerPort), "user": .string(c.user?.name ?? ""),
            ])
        }
        return .object([
            "consumer_tag": .string(k.tag), "queue": .object(["name": .string(k.queue.name), "vhost": .string(k.queue.vhost.name)]),
            "channel_details": details,
            "ack_required": .bool(!k.noAck), "exclusive": .bool(k.exclusive), "prefetch_count": Self.int(k.prefetchCount),
            "arguments": Broker.json(k.arguments), "active": .bool(!waiting),
            "activity_status": .string(waiting ? "waiting" : (k.queue.settings.singleActiveConsumer ? "single_active" : "up")),
        ])
    }

    // MARK: vhosts and users

    func json(vhost v: VirtualHost) -> JSONValue {
        var ready = 0
        var unacked = 0
        for q in v.queues.values {
            ready += q.messageCount
            unacked += q.unackedCount
        }
        let tags = JSONValue.array(v.tags.map(JSONValue.string))
        return .object([
            "name": .string(v.name), "description": .string(v.descriptionText), "tags": tags,
            "metadata": .object(["description": .string(v.descriptionText), "tags": tags]),
            "tracing": .bool(false), "cluster_state": .object([nodeName: .string("running")]),
            "default_queue_type": .string("classic"),
            "messages": Self.int(ready + unacked), "messages_ready": Self.int(ready), "messages_unacknowledged": Self.int(unacked),
        ])
    }

}
