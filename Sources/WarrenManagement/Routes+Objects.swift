import AMQPProtocol
import Foundation
import WarrenCore

/// Exchanges, queues and bindings: listing, declaring, deleting, publishing and getting.
extension ManagementAPI {
    typealias Lister = ([JSONValue]) throws -> ManagementResponse

    // MARK: exchanges

    func exchanges(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister) throws -> ManagementResponse {
        if p.count <= 2 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            let vhosts = p.count == 2 ? [try visibleVHost(p[1], caller)] : visibleVHosts(caller)
            let all = vhosts.flatMap { v in v.exchanges.values.map { (v, $0) } }
            return try slicedList(all, try ListQuery(r.query), order: ["vhost", "name"]) { v, x in
                v.exchanges[x.name] === x ? self.json(exchange: x, vhost: v.name) : nil
            }
        }
        // The default exchange has no name; URLs call it amq.default.
        let name = p[2] == "amq.default" ? "" : p[2]
        if p.count == 3 && r.method == "PUT" { return try putExchange(p[1], name, r, caller) }
        let v = try visibleVHost(p[1], caller)
        if p.count == 3 && r.method == "DELETE" {
            let v = try actingVHost(v.name, caller)
            guard v.exchanges[name] != nil else { throw APIError.notFound }
            try checkAccess(.configure, .exchange(name), caller, v)
            return try commit(.deleteExchange(vhost: v.name, name: name, ifUnused: r.query["if-unused"] == "true")) { _ in Self.noContent }
        }
        guard let x = v.exchanges[name] else { throw APIError.notFound }
        switch (r.method, p.count, p.count > 3 ? p[3] : "") {
        case ("GET", 3, _):
            guard case .object(var o) = json(exchange: x, vhost: v.name) else { throw APIError.notFound }
            o["incoming"] = .array([])
            o["outgoing"] = .array([])
            return .json(.object(o))
        case ("GET", 5, "bindings") where p[4] == "source":
            if x.isDefault { return try list(v.queues.values.sorted { $0.name < $1.name }.map(Self.json(implicitBindingTo:))) }
            return try list(x.bindings.sorted(by: Broker.bindingOrder).map { Self.json(binding: $0, vhost: v.name) })
        case ("GET", 5, "bindings") where p[4] == "destination":
            return try list(x.incoming.sorted(by: Broker.bindingOrder).map { Self.json(binding: $0, vhost: v.name) })
        case ("POST", 4, "publish"): return try publish(to: x, in: v, r, caller)
        case (_, 3, _), (_, 4, "publish"): throw APIError.methodNotAllowed
        default: throw APIError.notFound
        }
    }

    private func putExchange(_ vhostName: String, _ name: String, _ r: ManagementRequest, _ caller: Caller) throws -> ManagementResponse {
        let body = try object(r)
        let v = try actingVHost(vhostName, caller)
        if name.isEmpty { throw APIError.forbidden("operation not permitted on the default exchange") }
        guard let type = body["type"]?.stringValue else { throw APIError.badRequest("key_missing: type") }
        try checkAccess(.configure, .exchange(name), caller, v)
        let existed = v.exchanges[name] != nil
        if !existed && name.hasPrefix("amq.") {
            throw APIError.forbidden("exchange name '\(name)' contains reserved prefix 'amq.*'")
        }
        return try commit(
            .declareExchange(
                vhost: v.name, name: name, type: type, durable: Self.bool(body["durable"], default: true),
                autoDelete: Self.bool(body["auto_delete"], default: false), internal: Self.bool(body["internal"], default: false),
                arguments: Broker.fieldTable(body["arguments"]?.objectValue))
        ) { _ in existed ? Self.noContent : Self.created }
    }

    private func publish(to x: Exchange, in v: VirtualHost, _ r: ManagementRequest, _ caller: Caller) throws -> ManagementResponse {
        let body = try object(r)
        _ = try actingVHost(v.name, caller)
        try checkAccess(.write, .exchange(x.name), caller, v)
        guard let key = body["routing_key"]?.stringValue else { throw APIError.badRequest("key_missing: routing_key") }
        let message = Message(
            exchange: x.name, routingKey: key, properties: try MessageJSON.properties(body["properties"]), body: try MessageJSON.payload(body))
        if UInt64(message.bodySize) > broker.configuration.maxMessageSize {
            throw APIError.badRequest("message size \(message.bodySize) is larger than configured max size \(broker.configuration.maxMessageSize)")
        }
        return .json(.object(["routed": .bool(broker.publish(message, via: x, in: v))]))
    }

    // MARK: queues

    func queues(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister) throws -> ManagementResponse {
        if p.count <= 2 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            let vhosts = p.count == 2 ? [try visibleVHost(p[1], caller)] : visibleVHosts(caller)
            return try slicedList(vhosts.flatMap { Array($0.queues.values) }, try ListQuery(r.query), order: ["vhost", "name"]) { q in
                q.isDeleted ? nil : self.json(queue: q, detailed: false)
            }
        }
        let name = p[2]
        if p.count == 3 && r.method == "PUT" { return try putQueue(p[1], name, r, caller) }
        let v = try visibleVHost(p[1], caller)
        guard let q = v.queues[name] else { throw APIError.notFound }
        switch (r.method, p.count, p.count > 3 ? p[3] : "") {
        case ("GET", 3, _): return .json(json(queue: q, detailed: true))
        case ("DELETE", 3, _):
            _ = try actingVHost(v.name, caller)
            try checkAccess(.configure, .queue(name), caller, v)
            try v.checkDeletable(q, ifUnused: r.query["if-unused"] == "true", ifEmpty: r.query["if-empty"] == "true")
            return try commit(.deleteQueue(vhost: v.name, name: name)) { reply in
                for c in reply.cancelled { c.cancelledByBroker() }
                return Self.noContent
            }
        case ("GET", 4, "bindings"):
            let declared = q.bindings.sorted(by: Broker.bindingOrder).map { Self.json(binding: $0, vhost: v.name) }
            return try list([Self.json(implicitBindingTo: q)] + declared)
        case ("DELETE", 4, "contents"):
            _ = try actingVHost(v.name, caller)
            try checkAccess(.read, .queue(name), caller, v)
            try Self.requireLocal(q)
            q.purge()
            return Self.noContent
        case ("POST", 4, "get"):
            try Self.requireLocal(q)
            return try get(from: q, r, caller)
        case ("GET", 4, "quorum-status"):
            // This node's member of the group (every node's answer is merged: ClusterScope).
            let rq = try Self.replicated(q)
            return try list(rq.isMember ? [json(replicaStatus: rq.status)] : [])
        case ("POST", 4, "members"):
            try require(.administrator, caller)
            let rq = try Self.replicated(q)
            let node = try Self.nodeName(in: object(r), of: broker)
            guard !rq.members.contains(node) else {
                throw APIError(status: 400, error: "bad_request", reason: "\(node) is already a member of \(q.resourceDescription)")
            }
            return try commit(.queueMembers(vhost: v.name, name: name, incarnation: q.incarnation, members: rq.members + [node])) { _ in Self.noContent }
        case ("DELETE", 5, "members"):
            try require(.administrator, caller)
            let rq = try Self.replicated(q)
            let node = p[4]
            guard rq.members.contains(node) else {
                throw APIError(status: 404, error: "not_found", reason: "\(node) is not a member of \(q.resourceDescription)")
            }
            guard rq.members.count > 1 else {
                throw APIError(status: 400, error: "bad_request", reason: "\(node) is the last member of \(q.resourceDescription): delete the queue instead")
            }
            return try commit(.queueMembers(vhost: v.name, name: name, incarnation: q.incarnation, members: rq.members.filter { $0 != node })) { _ in
                Self.noContent
            }
        case ("POST", 4, "transfer-leadership"):
            // Through the metadata: the member that leads hands it over when it applies it.
            try require(.administrator, caller)
            let rq = try Self.replicated(q)
            let node = try Self.nodeName(in: object(r), of: broker)
            guard rq.members.contains(node) else {
                throw APIError(status: 400, error: "bad_request", reason: "\(node) is not a member of \(q.resourceDescription)")
            }
            return try commit(.queueTransfer(vhost: v.name, name: name, incarnation: q.incarnation, node: node)) { _ in Self.noContent }
        case (_, 3, _), (_, 4, "bindings"), (_, 4, "contents"), (_, 4, "get"), (_, 4, "quorum-status"), (_, 4, "members"), (_, 5, "members"),
            (_, 4, "transfer-leadership"):
            throw APIError.methodNotAllowed
        default: throw APIError.notFound
        }
    }

    private func putQueue(_ vhostName: String, _ name: String, _ r: ManagementRequest, _ caller: Caller) throws -> ManagementResponse {
        let body = try object(r)
        let v = try actingVHost(vhostName, caller)
        try checkAccess(.configure, .queue(name), caller, v)
        let arguments = Broker.fieldTable(body["arguments"]?.objectValue)
        // RabbitMQ's API takes the node to put the queue on; else the locator decides.
        var node = broker.chooseHome(vhost: v, name: name, arguments: arguments, exclusive: false)
        if let asked = body["node"]?.stringValue {
            guard asked == broker.nodeName || broker.clusterNodes[asked] != nil else { throw APIError.badRequest("no node '\(asked)' in the cluster") }
            node = asked
        }
        let declaration = QueueDeclaration(
            vhost: v.name, name: name, durable: Self.bool(body["durable"], default: true),
            autoDelete: Self.bool(body["auto_delete"], default: false), arguments: arguments, node: node)
        if let q = v.queues[name] {
            try v.checkRedeclaration(q, declaration)
            return Self.noContent
        }
        try v.validateNewQueue(declaration)
        return try commit(.declareQueue(declaration)) { reply in reply.created ? Self.created : Self.noContent }
    }

    /// RabbitMQ's "get messages": takes up to `count`, then requeues, acks or rejects them all.
    private func get(from q: MessageQueue, _ r: ManagementRequest, _ caller: Caller) throws -> ManagementResponse {
        let body = try object(r)
        _ = try actingVHost(q.vhost.name, caller)
        try checkAccess(.read, .queue(q.name), caller, q.vhost)
        guard let count = body["count"]?.intValue ?? body["count"]?.stringValue.flatMap({ Int64($0) }), count >= 0 else {
            throw APIError.badRequest("key_missing: count")
        }
        let mode = body["ackmode"]?.stringValue ?? ""
        guard ["ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false"].contains(mode) else {
            throw APIError.badRequest("Unknown ackmode: \(mode)")
        }
        let encoding = body["encoding"]?.stringValue ?? "auto"
        guard encoding == "auto" || encoding == "base64" else { throw APIError.badRequest("Unknown encoding: \(encoding)") }
        if q.isExclusive { throw APIError.badRequest("cannot get from exclusive \(q.resourceDescription)") }
        let truncate = body["truncate"]?.intValue.map { Int($0) }
        var taken: [QueueEntry] = []
        var out: [JSONValue] = []
        for _ in 0..<count {
            guard let e = q.get(noAck: false) else { break }
            taken.append(e)
            out.append(MessageJSON.json(e, remaining: q.messageCount, encoding: encoding, truncate: truncate))
        }
        switch mode {
        case "ack_requeue_true", "reject_requeue_true": q.requeue(taken)
        case "ack_requeue_false": for e in taken { q.acknowledged(e) }
        default: for e in taken { q.rejected(e) }
        }
        return .json(.array(out))
    }

    // MARK: bindings

    func bindings(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister) throws -> ManagementResponse {
        if p.count <= 2 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            let vhosts = p.count == 2 ? [try visibleVHost(p[1], caller)] : visibleVHosts(caller)
            // The default exchange's implicit binding to each queue, then the declared ones: one
            // order (vhost, source, destination, key) puts the implicit ones (source "") first.
            let rows = vhosts.flatMap { bindingRows(in: $0) }
            return try slicedList(rows, try ListQuery(r.query), order: ["vhost", "source", "destination", "routing_key"]) {
                $0.json
            }
        }
        // bindings/vhost/e/source/(q|e)/destination[/props]
        guard p.count == 6 || p.count == 7, p[2] == "e", p[4] == "q" || p[4] == "e" else { throw APIError.notFound }
        let v = try visibleVHost(p[1], caller)
        guard let source = v.exchanges[p[3]] else { throw APIError.notFound }
        let destination: BindingDestination
        if p[4] == "q" {
            guard let q = v.queues[p[5]] else { throw APIError.notFound }
            destination = .queue(q)
        } else {
            guard let x = v.exchanges[p[5]] else { throw APIError.notFound }
            destination = .exchange(x)
        }
        if source.isDefault, case .queue(let q) = destination, p.count == 6, r.method == "GET" {
            return try list([Self.json(implicitBindingTo: q)])
        }
        let between = source.bindings.filter { $0.destination == destination }.sorted(by: Broker.bindingOrder)
            .map { (b: $0, json: Self.json(binding: $0, vhost: v.name)) }
        if p.count == 6 {
            switch r.method {
            case "GET": return try list(between.map(\.json))
            case "POST":
                let body = try object(r)
                _ = try actingVHost(v.name, caller)
                try checkBindAccess(source, destination, caller, v)
                let key = body["routing_key"]?.stringValue ?? ""
                let arguments = Broker.fieldTable(body["arguments"]?.objectValue)
                if source.isDefault || (destination.isExchange && destination.name.isEmpty) {
                    throw AMQPError.accessRefused("operation not permitted on the default exchange")
                }
                return try commit(
                    .bind(vhost: v.name, source: source.name, destination: destination.name, toExchange: destination.isExchange, routingKey: key, arguments: arguments)
                ) { _ in ManagementResponse(status: 201, headers: [("Location", Self.propertiesKey(key, arguments))]) }
            default: throw APIError.methodNotAllowed
            }
        }
        // The key arrives decoded once: it may be the properties key itself or its decoded form.
        let match = between.first { m in
            let key = m.json["properties_key"]?.stringValue ?? ""
            return key == p[6] || key.removingPercentEncoding == p[6]
        }
        guard let match else { throw APIError.notFound }
        switch r.method {
        case "GET": return .json(match.json)
        case "DELETE":
            _ = try actingVHost(v.name, caller)
            try checkBindAccess(source, destination, caller, v)
            if source.isDefault { throw AMQPError.accessRefused("operation not permitted on the default exchange") }
            return try commit(
                .unbind(
                    vhost: v.name, source: source.name, destination: destination.name, toExchange: destination.isExchange,
                    routingKey: match.b.routingKey, arguments: match.b.arguments)
            ) { _ in Self.noContent }
        default: throw APIError.methodNotAllowed
        }
    }

    /// queue.bind's checks: write on the destination, read on the source.
    private func checkBindAccess(_ source: Exchange, _ destination: BindingDestination, _ caller: Caller, _ v: VirtualHost) throws {
        switch destination {
        case .queue(let q): try checkAccess(.write, .queue(q.name), caller, v)
        case .exchange(let x): try checkAccess(.write, .exchange(x.name), caller, v)
        }
        try checkAccess(.read, .exchange(source.name), caller, v)
    }
}

extension ManagementAPI {
    /// The messages of a queue homed on another node are not here: the node shell forwards
    /// get and purge to that node (`ClusterScope.queue`); this answers when it could not.
    static func requireLocal(_ q: MessageQueue) throws {
        guard q.isLocal, q.replicated?.serving != false else {
            throw APIError(status: 400, error: "bad_request", reason: "home node '\(q.homeNode)' of \(q.resourceDescription) is down or inaccessible")
        }
    }

    static func replicated(_ q: MessageQueue) throws -> ReplicatedQueue {
        guard let r = q.replicated else {
            throw APIError(status: 400, error: "bad_request", reason: "\(q.resourceDescription) is not a replicated queue (a quorum queue in a cluster)")
        }
        return r
    }

    /// `{"node": "..."}` naming a member of the cluster.
    static func nodeName(in body: [String: JSONValue], of broker: Broker) throws -> String {
        guard let node = body["node"]?.stringValue, !node.isEmpty else {
            throw APIError(status: 400, error: "bad_request", reason: "expected {\"node\": \"...\"}")
        }
        guard broker.clusterNodes[node] != nil else {
            throw APIError(status: 404, error: "not_found", reason: "\(node) is not a member of this cluster")
        }
        return node
    }

    /// A member's line of quorum_status (RabbitMQ's columns, Warren's member lists).
    func json(replicaStatus s: ReplicaStatus) -> JSONValue {
        .object([
            "node": .string(nodeName), "raft_state": .string(s.role), "log_index": .int(Int64(s.logIndex)),
            "commit_index": .int(Int64(s.commitIndex)), "snapshot_index": .int(Int64(s.snapshotIndex)), "term": .int(Int64(s.term)),
            "machine_version": .int(1), "voters": .array(s.voters.map(JSONValue.string)), "learners": .array(s.learners.map(JSONValue.string)),
            "quiet": .bool(s.quiet),
        ])
    }
}
