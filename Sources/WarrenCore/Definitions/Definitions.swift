public import AMQPProtocol
public import Foundation
import Logging

/// Definitions in RabbitMQ's JSON format (`rabbitmqctl export_definitions`): users, vhosts,
/// permissions, topic permissions, parameters, global parameters, policies, exchanges, queues
/// and bindings. A file exported from RabbitMQ 3.10 imports here unchanged, and an export from
/// here imports into RabbitMQ.
extension Broker {
    // MARK: export

    /// Everything, in RabbitMQ's format. `durableOnly` leaves out what does not survive a restart
    /// (transient and exclusive queues, transient exchanges, bindings with a transient end) and
    /// names each durable queue's storage: that is the store's metadata snapshot.
    public func exportDefinitions(durableOnly: Bool = false) -> JSONValue {
        let export = DefinitionsExport(self, durableOnly: durableOnly)
        _ = export.step(objects: .max)
        return export.result(ordered: true)
    }

    // One entry of each kind, as RabbitMQ's export writes it.

    public static func json(user u: User) -> JSONValue {
        var limits: [String: JSONValue] = [:]
        if let n = u.limits.maxConnections { limits["max-connections"] = .int(Int64(n)) }
        if let n = u.limits.maxChannels { limits["max-channels"] = .int(Int64(n)) }
        return .object([
            "name": .string(u.name),
            "password_hash": .string(u.passwordHash?.base64 ?? ""),
            "hashing_algorithm": .string(u.passwordHash?.algorithm.rawValue ?? PasswordHash.Algorithm.sha256.rawValue),
            "tags": .array(u.tags.map { .string($0) }),
            "limits": .object(limits),
        ])
    }

    /// A user from its definitions entry (a `password_hash`; nil when the entry is unreadable).
    public static func user(fromJSON u: JSONValue) -> User? {
        guard let name = u["name"]?.stringValue else { return nil }
        var hash: PasswordHash?
        if let h = u["password_hash"]?.stringValue, !h.isEmpty {
            let algorithm = u["hashing_algorithm"]?.stringValue ?? PasswordHash.Algorithm.sha256.rawValue
            guard let parsed = PasswordHash(base64: h, algorithm: algorithm) else { return nil }
            hash = parsed
        }
        var tags: [String] = []
        if let a = u["tags"]?.arrayValue {
            tags = a.compactMap(\.stringValue)
        } else if let s = u["tags"]?.stringValue {
            tags = s.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        let l = u["limits"]?.objectValue ?? [:]
        return User(
            name: name, passwordHash: hash, tags: tags,
            limits: UserLimits(maxConnections: l["max-connections"]?.intValue.map(Int.init), maxChannels: l["max-channels"]?.intValue.map(Int.init)))
    }

    /// A policy from its definitions entry.
    public static func policy(fromJSON p: JSONValue) -> Policy? {
        guard let name = p["name"]?.stringValue, let vhost = p["vhost"]?.stringValue, let pattern = p["pattern"]?.stringValue,
            let applyTo = Policy.ApplyTo(rawValue: p["apply-to"]?.stringValue ?? "all")
        else { return nil }
        return Policy(
            name: name, vhost: vhost, pattern: pattern, applyTo: applyTo, priority: Int(p["priority"]?.intValue ?? 0),
            definition: (p["definition"] ?? .object([:])).pairsAsObject.objectValue ?? [:])
    }

    public static func json(vhost v: VirtualHost) -> JSONValue {
        var limitPairs: [JSONValue] = []
        if let n = v.limits.maxConnections { limitPairs.append(.array([.string("max-connections"), .int(Int64(n))])) }
        if let n = v.limits.maxQueues { limitPairs.append(.array([.string("max-queues"), .int(Int64(n))])) }
        return .object([
            "name": .string(v.name), "limits": .array(limitPairs),
            "metadata": .object(["description": .string(v.descriptionText), "tags": .array(v.tags.map { .string($0) })]),
        ])
    }

    public static func json(permission p: Permission, user: String, vhost: String) -> JSONValue {
        .object([
            "user": .string(user), "vhost": .string(vhost), "configure": .string(p.configure),
            "write": .string(p.write), "read": .string(p.read),
        ])
    }

    public static func json(topicPermission tp: TopicPermission, user: String, vhost: String) -> JSONValue {
        .object([
            "user": .string(user), "vhost": .string(vhost), "exchange": .string(tp.exchange),
            "write": .string(tp.write), "read": .string(tp.read),
        ])
    }

    public static func json(parameter value: JSONValue, component: String, name: String, vhost: String) -> JSONValue {
        .object(["vhost": .string(vhost), "component": .string(component), "name": .string(name), "value": value])
    }

    public static func json(globalParameter value: JSONValue, name: String) -> JSONValue {
        .object(["name": .string(name), "value": value])
    }

    public static func json(operatorPolicy p: Policy) -> JSONValue {
        .object([
            "vhost": .string(p.vhost), "component": .string("operator_policy"), "name": .string(p.name),
            "value": .object([
                "pattern": .string(p.pattern), "apply-to": .string(p.applyTo.rawValue),
                "priority": .int(Int64(p.priority)), "definition": .object(p.definition),
            ]),
        ])
    }

    /// Key under which a durable queue's definition names its storage (RabbitMQ ignores it).
    static let storeIDKey = "warren_store_id"

    public static func json(queue q: MessageQueue, withStorage: Bool) -> JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(q.name), "vhost": .string(q.vhost.name), "durable": .bool(q.durable),
            "auto_delete": .bool(q.autoDelete), "arguments": json(q.arguments), "type": .string(q.type.rawValue),
        ]
        if withStorage, let id = q.storeQueue?.id { o[storeIDKey] = .int(Int64(id)) }
        return .object(o)
    }

    /// Key of the cluster section of a state snapshot (name and members).
    static let clusterStateKey = "warren_cluster"

    /// A queue as a state snapshot keeps it: its definition, and where it lives, who owns it
    /// and which incarnation it is.
    static func stateJSON(queue q: MessageQueue) -> JSONValue {
        guard case .object(var o) = json(queue: q, withStorage: false) else { return .null }
        o["node"] = .string(q.homeNode)
        o["exclusive"] = .bool(q.isExclusive)
        o["warren_incarnation"] = .int(Int64(bitPattern: q.incarnation))
        if let r = q.replicated {
            o["warren_members"] = .array(r.members.map { .string($0) })
            o["warren_leader_term"] = .int(Int64(bitPattern: r.leaderTerm))
        }
        if let owner = q.exclusiveOwner {
            o["warren_owner"] = .object(["node": .string(owner.node), "connection": .int(Int64(bitPattern: owner.connection))])
        }
        return .object(o)
    }

    public static func json(exchange x: Exchange, vhost: String) -> JSONValue {
        .object([
            "name": .string(x.name), "vhost": .string(vhost), "type": .string(x.type), "durable": .bool(x.durable),
            "auto_delete": .bool(x.autoDelete), "internal": .bool(x.internal), "arguments": json(x.arguments),
        ])
    }

    public static func bindingOrder(_ a: Binding, _ b: Binding) -> Bool {
        (a.source.name, a.destination.name, a.routingKey) < (b.source.name, b.destination.name, b.routingKey)
    }

    public static func json(_ b: Binding, vhost: String) -> JSONValue {
        .object([
            "source": .string(b.source.name), "vhost": .string(vhost), "destination": .string(b.destination.name),
            "destination_type": .string(b.destination.kind), "routing_key": .string(b.routingKey), "arguments": json(b.arguments),
        ])
    }

    public static func json(_ p: Policy) -> JSONValue {
        .object([
            "vhost": .string(p.vhost), "name": .string(p.name), "pattern": .string(p.pattern),
            "apply-to": .string(p.applyTo.rawValue), "priority": .int(Int64(p.priority)), "definition": .object(p.definition),
        ])
    }

    public static func json(_ t: FieldTable) -> JSONValue {
        var o: [String: JSONValue] = [:]
        for e in t.entries { o[e.key] = json(e.value) }
        return .object(o)
    }

    public static func json(_ v: FieldValue) -> JSONValue {
        switch v {
        case .boolean(let b): return .bool(b)
        case .float(let f): return .double(Double(f))
        case .double(let d): return .double(d)
        case .decimal(let scale, let value): return .double(Double(value) / pow(10, Double(scale)))
        case .timestamp(let t): return .int(Int64(t))
        case .void: return .null
        case .array(let a): return .array(a.map(json))
        case .table(let t): return json(t)
        default:
            if let n = v.integerValue { return .int(n) }
            return .string(v.stringValue ?? "")
        }
    }

    public static func fieldValue(_ j: JSONValue) -> FieldValue {
        switch j {
        case .null: return .void
        case .bool(let b): return .boolean(b)
        case .int(let n): return .int64(n)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(fieldValue))
        case .object(let o): return .table(fieldTable(o))
        }
    }

    public static func fieldTable(_ o: [String: JSONValue]?) -> FieldTable {
        FieldTable((o ?? [:]).sorted(by: { $0.key < $1.key }).map { FieldTable.Entry(key: $0.key, value: fieldValue($0.value)) })
    }

    // MARK: import

    /// Imports definitions, creating or updating what they describe, in dependency order. Stops
    /// at the first invalid entry with an error that names it.
    /// A definitions document made ready to propose: plain passwords hashed (salts are drawn
    /// here, once, not by every node that applies it) and queues without a home placed on this
    /// node.
    public func preparedForImport(_ root: JSONValue) throws(AdminError) -> JSONValue {
        guard var doc = root.objectValue else { throw AdminError("definitions: expected a JSON object") }
        if let users = doc["users"]?.arrayValue {
            doc["users"] = .array(users.map { u in
                guard case .object(var o) = u, let pw = o["password"]?.stringValue else { return u }
                let hash = PasswordHash.make(password: pw)
                o["password"] = nil
                o["password_hash"] = .string(hash.base64)
                o["hashing_algorithm"] = .string(hash.algorithm.rawValue)
                return .object(o)
            })
        }
        if let queues = doc["queues"]?.arrayValue {
            doc["queues"] = .array(queues.map { q in
                guard case .object(var o) = q, o["node"] == nil else { return q }
                o["node"] = .string(nodeName)
                return .object(o)
            })
        }
        return .object(doc)
    }

    /// The sections of a definitions document in the order `importDefinitions` applies them.
    public static let definitionSections = [
        "users", "vhosts", "permissions", "topic_permissions", "parameters", "global_parameters", "policies", "exchanges",
        "queues", "bindings",
    ]

    /// A definitions document cut into documents of at most `size` objects, one section each,
    /// in import order: importing them one after the other (each in its own turn of the broker
    /// loop) gives what importing the whole does, without holding the loop for all of it.
    public static func definitionChunks(_ root: JSONValue, size: Int) throws(AdminError) -> [JSONValue] {
        guard let doc = root.objectValue else { throw AdminError("definitions: expected a JSON object") }
        var chunks: [JSONValue] = []
        for key in definitionSections {
            guard let items = doc[key]?.arrayValue else { continue }
            var start = 0
            while start < items.count {
                let end = min(items.count, start + size)
                chunks.append(.object([key: .array(Array(items[start..<end]))]))
                start = end
            }
        }
        return chunks
    }

    public func importDefinitions(_ root: JSONValue, quietly: Bool = false) throws(AdminError) {
        guard let doc = root.objectValue else { throw AdminError("definitions: expected a JSON object") }
        func list(_ key: String) -> [[String: JSONValue]] { (doc[key]?.arrayValue ?? []).compactMap(\.objectValue) }
        func str(_ o: [String: JSONValue], _ k: String, _ what: String) throws(AdminError) -> String {
            guard let s = o[k]?.stringValue else { throw AdminError("definitions: \(what) without '\(k)'") }
            return s
        }

        for u in list("users") {
            let name = try str(u, "name", "a user")
            let hash: PasswordHash?
            if let pw = u["password"]?.stringValue {
                hash = PasswordHash.make(password: pw)
            } else if let h = u["password_hash"]?.stringValue, !h.isEmpty {
                let algorithm = u["hashing_algorithm"]?.stringValue ?? PasswordHash.Algorithm.sha256.rawValue
                guard let parsed = PasswordHash(base64: h, algorithm: algorithm) else {
                    throw AdminError("definitions: user '\(name)' has an unreadable password hash or unknown algorithm '\(algorithm)'")
                }
                hash = parsed
            } else {
                hash = nil
            }
            var tags: [String] = []
            if let a = u["tags"]?.arrayValue {
                tags = a.compactMap(\.stringValue)
            } else if let s = u["tags"]?.stringValue {
                tags = s.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            }
            let l = u["limits"]?.objectValue ?? [:]
            putUser(
                User(
                    name: name, passwordHash: hash, tags: tags,
                    limits: UserLimits(maxConnections: l["max-connections"]?.intValue.map(Int.init), maxChannels: l["max-channels"]?.intValue.map(Int.init))))
        }
        for v in list("vhosts") {
            let name = try str(v, "name", "a vhost")
            let meta = v["metadata"]?.objectValue ?? [:]
            let host = addVirtualHost(
                name, description: meta["description"]?.stringValue ?? v["description"]?.stringValue ?? "",
                tags: meta["tags"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            var limits = host.limits
            if let pairs = v["limits"]?.arrayValue {
                for p in pairs {
                    guard let kv = p.arrayValue, kv.count == 2, let k = kv[0].stringValue, let n = kv[1].intValue else { continue }
                    if k == "max-connections" { limits.maxConnections = Int(n) }
                    if k == "max-queues" { limits.maxQueues = Int(n) }
                }
            } else if let o = v["limits"]?.objectValue {
                limits.maxConnections = o["max-connections"]?.intValue.map(Int.init)
                limits.maxQueues = o["max-queues"]?.intValue.map(Int.init)
            }
            if limits != host.limits { try setVirtualHostLimits(name, limits) }
        }
        for p in list("permissions") {
            try setPermissionsChecked(
                user: try str(p, "user", "a permission"), vhost: try str(p, "vhost", "a permission"),
                Permission(configure: p["configure"]?.stringValue ?? "", write: p["write"]?.stringValue ?? "", read: p["read"]?.stringValue ?? ""))
        }
        for p in list("topic_permissions") {
            try setTopicPermissions(
                user: try str(p, "user", "a topic permission"), vhost: try str(p, "vhost", "a topic permission"),
                TopicPermission(exchange: try str(p, "exchange", "a topic permission"), write: p["write"]?.stringValue ?? "", read: p["read"]?.stringValue ?? ""))
        }
        var operatorPolicyEntries: [[String: JSONValue]] = list("operator_policies")
        for p in list("parameters") {
            let component = try str(p, "component", "a parameter")
            if component == "operator_policy" {
                // RabbitMQ's export keeps operator policies here, with the definition as a list of
                // pairs; read them as the operator policies they are.
                var entry = p["value"]?.objectValue ?? [:]
                entry["name"] = p["name"]
                entry["vhost"] = p["vhost"]
                operatorPolicyEntries.append(entry)
                continue
            }
            try setParameter(
                vhost: try str(p, "vhost", "a parameter"), component: component, name: try str(p, "name", "a parameter"),
                value: (p["value"] ?? .null).pairsAsObject)
        }
        for p in list("global_parameters") {
            setGlobalParameter(name: try str(p, "name", "a global parameter"), value: (p["value"] ?? .null).pairsAsObject)
        }
        for (entries, isOperator) in [(list("policies"), false), (operatorPolicyEntries, true)] {
            for p in entries {
                let name = try str(p, "name", "a policy")
                let applyName = p["apply-to"]?.stringValue ?? "all"
                guard let applyTo = Policy.ApplyTo(rawValue: applyName) else {
                    throw AdminError("definitions: policy '\(name)' has unknown apply-to '\(applyName)'")
                }
                try setPolicy(
                    Policy(
                        name: name, vhost: try str(p, "vhost", "a policy"), pattern: try str(p, "pattern", "a policy"), applyTo: applyTo,
                        priority: Int(p["priority"]?.intValue ?? 0), definition: (p["definition"] ?? .object([:])).pairsAsObject.objectValue ?? [:]),
                    operator: isOperator)
            }
        }
        for x in list("exchanges") {
            let name = try str(x, "name", "an exchange")
            guard let v = vhosts[try str(x, "vhost", "exchange '\(name)'")] else { throw AdminError("definitions: exchange '\(name)' names an unknown vhost") }
            do throws(AMQPError) {
                try v.declareExchange(
                    name: name, type: x["type"]?.stringValue ?? "direct", durable: x["durable"]?.boolValue ?? true,
                    autoDelete: x["auto_delete"]?.boolValue ?? false, internal: x["internal"]?.boolValue ?? false,
                    arguments: Self.fieldTable(x["arguments"]?.objectValue))
            } catch {
                throw AdminError("definitions: exchange '\(name)': \(error.text)")
            }
        }
        for q in list("queues") {
            let name = try str(q, "name", "a queue")
            guard let v = vhosts[try str(q, "vhost", "queue '\(name)'")] else { throw AdminError("definitions: queue '\(name)' names an unknown vhost") }
            var arguments = Self.fieldTable(q["arguments"]?.objectValue)
            // RabbitMQ 3.11+ exports name the type in its own field too.
            if let type = q["type"]?.stringValue {
                guard QueueType(rawValue: type) != nil else {
                    throw AdminError("definitions: queue '\(name)' is of type '\(type)', which Warren does not implement (classic and quorum only)")
                }
                if arguments["x-queue-type"] == nil && type == "quorum" { arguments["x-queue-type"] = "quorum" }
            }
            // A state snapshot's queues keep their owner and incarnation.
            let owner = q["warren_owner"].flatMap { o -> QueueOwner? in
                guard let node = o["node"]?.stringValue, let c = o["connection"]?.intValue else { return nil }
                return QueueOwner(node: node, connection: ConnectionID(bitPattern: c))
            }
            var declaration = QueueDeclaration(
                vhost: v.name, name: name, durable: q["durable"]?.boolValue ?? true, exclusive: owner != nil,
                autoDelete: q["auto_delete"]?.boolValue ?? false, arguments: arguments, node: q["node"]?.stringValue ?? nodeName,
                requester: owner)
            // A state snapshot lists a replicated queue's members, and no members for the others
            // (which must not become replicated when a node installs it).
            if q["warren_incarnation"] != nil { declaration.members = q["warren_members"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
            declaration.leaderTerm = q["warren_leader_term"]?.intValue.map { UInt64(bitPattern: $0) } ?? 0
            do throws(AMQPError) {
                _ = try v.declareQueue(
                    declaration,
                    storeID: q[Self.storeIDKey]?.intValue.map { StoreQueueID(truncatingIfNeeded: $0) },
                    incarnation: q["warren_incarnation"]?.intValue.map { UInt64(bitPattern: $0) })
            } catch {
                throw AdminError("definitions: queue '\(name)': \(error.text)")
            }
        }
        var skippedBindings = 0
        for b in list("bindings") {
            let source = try str(b, "source", "a binding")
            let destination = try str(b, "destination", "a binding")
            guard let v = vhosts[try str(b, "vhost", "a binding")] else { throw AdminError("definitions: binding from '\(source)' names an unknown vhost") }
            let key = b["routing_key"]?.stringValue ?? ""
            let args = Self.fieldTable(b["arguments"]?.objectValue)
            // RabbitMQ leaves internal exchanges out of its exports but keeps bindings to them;
            // such a binding cannot be made, and is skipped with a warning that names it.
            let toExchange = b["destination_type"]?.stringValue == "exchange"
            guard let x = v.exchanges[source], let dest = toExchange ? v.exchanges[destination].map(BindingDestination.exchange) : v.queues[destination].map(BindingDestination.queue) else {
                logger.warning(
                    "definitions: binding skipped, its source or destination is not defined",
                    metadata: ["source": "\(source)", "destination": "\(destination)", "vhost": "\(v.name)"])
                skippedBindings += 1
                continue
            }
            do throws(AMQPError) {
                try v.bind(source: x, destination: dest, routingKey: key, arguments: args)
            } catch {
                throw AdminError("definitions: binding '\(source)' -> '\(destination)': \(error.text)")
            }
        }
        if skippedBindings > 0 { logger.warning("definitions: \(skippedBindings) binding(s) skipped") }
        if let cluster = doc[Self.clusterStateKey] {
            if let name = cluster["name"]?.stringValue { clusterName = name }
            if let nodes = cluster["nodes"]?.objectValue { clusterNodes = nodes.compactMapValues(\.stringValue) }
            onClusterChange?()
        }
        // Replaying the store's journal imports one change at a time: not worth a line each.
        logger.log(level: isReplaying || quietly ? .debug : .notice, "imported definitions", metadata: ["users": "\(list("users").count)", "vhosts": "\(list("vhosts").count)", "queues": "\(list("queues").count)"])
    }

    // MARK: files

    /// Reads a definitions file (JSON).
    public func importDefinitions(file path: String) throws(AdminError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw AdminError("definitions: cannot read '\(path)'") }
        try importDefinitions(json: data)
    }

    public func importDefinitions(json data: Data) throws(AdminError) {
        guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
            throw AdminError("definitions: not valid JSON")
        }
        try importDefinitions(JSONValue(foundation: object))
    }

    /// The export as pretty, key-sorted JSON.
    public func exportDefinitionsJSON() -> Data {
        (try? JSONSerialization.data(withJSONObject: exportDefinitions().foundationObject, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    }
}

extension JSONValue {
    /// RabbitMQ writes some maps as lists of [key, value] pairs; read those as objects.
    public var pairsAsObject: JSONValue {
        guard case .array(let items) = self, !items.isEmpty else { return self }
        var o: [String: JSONValue] = [:]
        for item in items {
            guard let kv = item.arrayValue, kv.count == 2, let k = kv[0].stringValue else { return self }
            o[k] = kv[1]
        }
        return .object(o)
    }

    /// From what JSONSerialization produced.
    public init(foundation o: Any) {
        switch o {
        case let n as NSNumber:
            // JSON true/false arrive as NSNumbers of type "c" (checked on Linux and Darwin).
            let type = String(cString: n.objCType)
            if type == "c" || type == "B" {
                self = .bool(n.boolValue)
            } else if type == "d" || type == "f" {
                let d = n.doubleValue
                self = d == d.rounded() && abs(d) < 9e15 ? .int(Int64(d)) : .double(d)
            } else {
                self = .int(n.int64Value)
            }
        case let s as String: self = .string(s)
        case let a as [Any]: self = .array(a.map { JSONValue(foundation: $0) })
        case let d as [String: Any]: self = .object(d.mapValues { JSONValue(foundation: $0) })
        default: self = .null
        }
    }

    /// For JSONSerialization.
    public var foundationObject: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let n): return n
        case .double(let d): return d
        case .string(let s): return s
        case .array(let a): return a.map(\.foundationObject)
        case .object(let o): return o.mapValues(\.foundationObject)
        }
    }
}

/// A definitions export built a few objects at a time: the small sections (users, vhosts,
/// permissions, parameters, policies) when it is made, then queues and exchanges with their
/// bindings by `step`, so the management API can build the export of 100,000 queues between
/// AMQP traffic. Objects deleted between steps are left out.
public final class DefinitionsExport {
    private unowned let broker: Broker
    private let durableOnly: Bool
    /// The whole state, for the metadata log's snapshots: exclusive and transient objects too,
    /// with each queue's home node, owner and incarnation, and the cluster's members.
    private let state: Bool
    private var sections: [String: JSONValue]
    private var pendingQueues: [MessageQueue] = []
    private var pendingExchanges: [(VirtualHost, Exchange)] = []
    private var queues: [JSONValue] = []
    private var exchanges: [JSONValue] = []
    private var bindings: [JSONValue] = []

    public init(_ broker: Broker, durableOnly: Bool, state: Bool = false) {
        self.broker = broker
        self.durableOnly = durableOnly && !state
        self.state = state
        var vhosts: [JSONValue] = []
        var permissions: [JSONValue] = []
        var topicPermissions: [JSONValue] = []
        var parameters: [JSONValue] = []
        var policies: [JSONValue] = []
        for v in broker.vhosts.values.sorted(by: { $0.name < $1.name }) {
            vhosts.append(Broker.json(vhost: v))
            for (user, p) in (broker.permissions[v.name] ?? [:]).sorted(by: { $0.key < $1.key }) {
                permissions.append(Broker.json(permission: p, user: user, vhost: v.name))
            }
            for (user, byExchange) in (broker.topicPermissions[v.name] ?? [:]).sorted(by: { $0.key < $1.key }) {
                for tp in byExchange.values.sorted(by: { $0.exchange < $1.exchange }) {
                    topicPermissions.append(Broker.json(topicPermission: tp, user: user, vhost: v.name))
                }
            }
            for (component, byName) in (broker.parameters[v.name] ?? [:]).sorted(by: { $0.key < $1.key }) {
                for (name, value) in byName.sorted(by: { $0.key < $1.key }) {
                    parameters.append(Broker.json(parameter: value, component: component, name: name, vhost: v.name))
                }
            }
            for p in (broker.policies[v.name] ?? [:]).values.sorted(by: { $0.name < $1.name }) { policies.append(Broker.json(p)) }
            // RabbitMQ stores operator policies as parameters of component "operator_policy", and
            // imports them from there (not from an "operator_policies" list).
            for p in (broker.operatorPolicies[v.name] ?? [:]).values.sorted(by: { $0.name < $1.name }) {
                parameters.append(Broker.json(operatorPolicy: p))
            }
            pendingQueues.append(contentsOf: v.queues.values)
            pendingExchanges.append(contentsOf: v.exchanges.values.map { (v, $0) })
        }
        sections = [
            // The definitions format Warren writes is RabbitMQ 3.10's.
            "rabbit_version": .string("3.10.8"),
            "rabbitmq_version": .string("3.10.8"),
            "product_name": .string("Warren"),
            "product_version": .string(broker.configuration.productVersion),
            "users": .array(broker.users.values.sorted(by: { $0.name < $1.name }).map(Broker.json(user:))),
            "vhosts": .array(vhosts), "permissions": .array(permissions), "topic_permissions": .array(topicPermissions),
            "parameters": .array(parameters),
            "global_parameters": .array(
                broker.globalParameters.sorted(by: { $0.key < $1.key }).map { Broker.json(globalParameter: $0.value, name: $0.key) }),
            "policies": .array(policies),
        ]
        if state {
            sections[Broker.clusterStateKey] = .object([
                "name": .string(broker.clusterName),
                "nodes": .object(broker.clusterNodes.mapValues { .string($0) }),
            ])
        }
    }

    /// Exports up to `objects` more queues and exchanges (with their bindings); true when all
    /// are done.
    public func step(objects: Int) -> Bool {
        var budget = objects
        while budget > 0, let q = pendingQueues.popLast() {
            budget -= 1
            guard !q.isDeleted, state || !q.isExclusive, !durableOnly || q.durable else { continue }
            queues.append(state ? Broker.stateJSON(queue: q) : Broker.json(queue: q, withStorage: durableOnly))
            for b in q.bindings where !durableOnly || b.isDurable { bindings.append(Broker.json(b, vhost: q.vhost.name)) }
        }
        while budget > 0, let (v, x) = pendingExchanges.popLast() {
            budget -= 1
            guard v.exchanges[x.name] === x, !x.isBuiltIn, !durableOnly || x.durable else { continue }
            exchanges.append(Broker.json(exchange: x, vhost: v.name))
            for b in x.incoming where !durableOnly || b.isDurable { bindings.append(Broker.json(b, vhost: v.name)) }
        }
        return pendingQueues.isEmpty && pendingExchanges.isEmpty
    }

    /// The document; `ordered` sorts queues and exchanges by vhost and name, bindings by
    /// vhost, destination kind (queues first), destination, source and key. The management
    /// API leaves it unordered here and sorts off the broker loop.
    public func result(ordered: Bool) -> JSONValue {
        var root = sections
        root["queues"] = .array(ordered ? Self.ordered(queues, by: Self.queueOrder) : queues)
        root["exchanges"] = .array(ordered ? Self.ordered(exchanges, by: Self.queueOrder) : exchanges)
        root["bindings"] = .array(ordered ? Self.ordered(bindings, by: Self.bindingOrder) : bindings)
        return .object(root)
    }

    public static let queueOrder = ["vhost", "name"]
    /// Queue bindings before exchange-to-exchange ones ("queue" > "exchange", hence the key
    /// `destination_type` compared in reverse by `ordered`).
    public static let bindingOrder = ["vhost", "-destination_type", "destination", "source", "routing_key"]

    /// Items sorted by string fields; a field starting with "-" sorts descending.
    public static func ordered(_ items: [JSONValue], by fields: [String]) -> [JSONValue] {
        let keys = items.map { item in
            fields.map { f in item[f.hasPrefix("-") ? String(f.dropFirst()) : f]?.stringValue ?? "" }
        }
        let order = keys.indices.sorted { i, j in
            for (n, f) in fields.enumerated() where keys[i][n] != keys[j][n] {
                return f.hasPrefix("-") ? keys[i][n] > keys[j][n] : keys[i][n] < keys[j][n]
            }
            return false
        }
        return order.map { items[$0] }
    }
}
