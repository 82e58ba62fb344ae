import AMQPProtocol
import Foundation
import Logging
import WarrenCore

/// Virtual hosts, users, permissions, policies, parameters and definitions.
extension ManagementAPI {
    // MARK: vhosts

    func vhosts(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister) throws -> ManagementResponse {
        if p.count == 1 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            return try list(visibleVHosts(caller).map { json(vhost: $0) })
        }
        let name = p[1]
        if p.count == 2 {
            switch r.method {
            case "GET": return .json(json(vhost: try visibleVHost(name, caller)))
            case "PUT":
                try require(.administrator, caller)
                let body = try object(r)
                if broker.vhosts[name] != nil { return Self.noContent }
                return try commit(.putVHost(name: name, description: body["description"]?.stringValue ?? "", tags: Self.tagList(body["tags"]))) { _ in
                    Self.created
                }
            case "DELETE":
                try require(.administrator, caller)
                guard broker.vhosts[name] != nil else { throw APIError.notFound }
                return try commit(.deleteVHost(name)) { _ in Self.noContent }
            default: throw APIError.methodNotAllowed
            }
        }
        guard p.count == 3, r.method == "GET" else { throw p.count == 3 ? APIError.methodNotAllowed : APIError.notFound }
        switch p[2] {
        case "permissions", "topic-permissions":
            try require(.administrator, caller)
            guard broker.vhosts[name] != nil else { throw APIError.notFound }
            return try list(p[2] == "permissions" ? permissionList(vhost: name) : topicPermissionList(vhost: name))
        case "connections", "channels":
            let v = try visibleVHost(name, caller)
            let conns = visibleConnections(caller).filter { $0.vhost === v }
            if p[2] == "connections" { return try list(conns.map { json(connection: $0) }) }
            return try list(conns.flatMap(channels(of:)).map { json(channel: $0) })
        default: throw APIError.notFound
        }
    }

    // MARK: users

    func users(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister) throws -> ManagementResponse {
        try require(.administrator, caller)
        let all = broker.users.values.sorted { $0.name < $1.name }
        if p.count == 1 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            return try list(all.map(Broker.json(user:)))
        }
        if p.count == 2 && p[1] == "bulk-delete" {
            guard r.method == "POST" else { throw APIError.methodNotAllowed }
            // RabbitMQ deletes in order and stops at the first unknown user, naming it.
            guard let names = try object(r)["users"]?.arrayValue else { throw APIError.badRequest("[{key_missing,users}]") }
            let all = names.compactMap(\.stringValue)
            let known = all.prefix { broker.users[$0] != nil }
            let unknown = known.count < all.count ? all[known.count] : nil
            return try commitAll(known.map { .deleteUser($0) }) {
                if let unknown { throw APIError.badRequest(["no_such_user", unknown]) }
                return Self.noContent
            }
        }
        if p.count == 2 && p[1] == "without-permissions" && r.method == "GET" {
            let with = Set(broker.permissions.values.flatMap(\.keys))
            return try list(all.filter { !with.contains($0.name) }.map(Broker.json(user:)))
        }
        let name = p[1]
        if p.count == 3 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            guard broker.users[name] != nil else { throw APIError.notFound }
            if p[2] == "permissions" { return try list(permissionList(user: name)) }
            if p[2] == "topic-permissions" { return try list(topicPermissionList(user: name)) }
            throw APIError.notFound
        }
        guard p.count == 2 else { throw APIError.notFound }
        switch r.method {
        case "GET":
            guard let u = broker.users[name] else { throw APIError.notFound }
            return .json(Broker.json(user: u))
        case "PUT":
            let body = try object(r)
            let existing = broker.users[name]
            var hash = existing?.passwordHash
            if let password = body["password"]?.stringValue {
                hash = PasswordHash.make(password: password)
            } else if let h = body["password_hash"]?.stringValue {
                let algorithm = body["hashing_algorithm"]?.stringValue ?? PasswordHash.Algorithm.sha256.rawValue
                if h.isEmpty {
                    hash = nil
                } else {
                    guard let parsed = PasswordHash(base64: h, algorithm: algorithm) else {
                        throw APIError.badRequest("invalid password_hash or hashing_algorithm")
                    }
                    hash = parsed
                }
            } else if existing == nil {
                throw APIError.badRequest("key_missing: password or password_hash")
            }
            let tags = body["tags"] != nil ? Self.tagList(body["tags"]) : (existing?.tags ?? [])
            let user = User(name: name, passwordHash: hash, tags: tags, limits: existing?.limits ?? UserLimits())
            return try commit(.putUser(user)) { _ in existing == nil ? Self.created : Self.noContent }
        case "DELETE":
            guard broker.users[name] != nil else { throw APIError.notFound }
            return try commit(.deleteUser(name)) { _ in Self.noContent }
        default: throw APIError.methodNotAllowed
        }
    }

    // MARK: permissions

    func permissionList(vhost: String? = nil, user: String? = nil) -> [JSONValue] {
        var out: [JSONValue] = []
        for (v, byUser) in broker.permissions.sorted(by: { $0.key < $1.key }) where vhost == nil || v == vhost {
            for (u, perm) in byUser.sorted(by: { $0.key < $1.key }) where user == nil || u == user {
                out.append(Broker.json(permission: perm, user: u, vhost: v))
            }
        }
        return out
    }

    func topicPermissionList(vhost: String? = nil, user: String? = nil) -> [JSONValue] {
        var out: [JSONValue] = []
        for (v, byUser) in broker.topicPermissions.sorted(by: { $0.key < $1.key }) where vhost == nil || v == vhost {
            for (u, byExchange) in byUser.sorted(by: { $0.key < $1.key }) where user == nil || u == user {
                for tp in byExchange.values.sorted(by: { $0.exchange < $1.exchange }) {
                    out.append(Broker.json(topicPermission: tp, user: u, vhost: v))
                }
            }
        }
        return out
    }

    func permissions(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister, topic: Bool) throws -> ManagementResponse {
        try require(.administrator, caller)
        if p.count == 1 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            return try list(topic ? topicPermissionList() : permissionList())
        }
        guard p.count == 3 else { throw APIError.notFound }
        let (vhost, user) = (p[1], p[2])
        guard broker.vhosts[vhost] != nil, broker.users[user] != nil else { throw APIError.notFound }
        switch r.method {
        case "GET":
            if topic {
                let items = topicPermissionList(vhost: vhost, user: user)
                guard !items.isEmpty else { throw APIError.notFound }
                return .json(.array(items))
            }
            guard let perm = broker.permissions[vhost]?[user] else { throw APIError.notFound }
            return .json(Broker.json(permission: perm, user: user, vhost: vhost))
        case "PUT":
            let body = try object(r)
            func field(_ k: String) throws(APIError) -> String {
                guard let s = body[k]?.stringValue else { throw .badRequest("key_missing: \(k)") }
                return s
            }
            if topic {
                let existed = broker.topicPermissions[vhost]?[user]?[try field("exchange")] != nil
                let tp = TopicPermission(exchange: try field("exchange"), write: try field("write"), read: try field("read"))
                return try commit(.setTopicPermission(user: user, vhost: vhost, tp)) { _ in existed ? Self.noContent : Self.created }
            }
            let existed = broker.permissions[vhost]?[user] != nil
            let perm = Permission(configure: try field("configure"), write: try field("write"), read: try field("read"))
            return try commit(.setPermissions(user: user, vhost: vhost, perm)) { _ in existed ? Self.noContent : Self.created }
        case "DELETE":
            if topic {
                guard broker.topicPermissions[vhost]?[user] != nil else { throw APIError.notFound }
                return try commit(.clearTopicPermissions(user: user, vhost: vhost, exchange: r.query["exchange"])) { _ in Self.noContent }
            }
            guard broker.permissions[vhost]?[user] != nil else { throw APIError.notFound }
            return try commit(.clearPermissions(user: user, vhost: vhost)) { _ in Self.noContent }
        default: throw APIError.methodNotAllowed
        }
    }

    // MARK: policies

    func policies(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister, operator isOperator: Bool) throws -> ManagementResponse {
        if isOperator { try require(.administrator, caller) }
        let set = isOperator ? broker.operatorPolicies : broker.policies
        if p.count <= 2 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            let vhosts = p.count == 2 ? [try visibleVHost(p[1], caller)] : visibleVHosts(caller)
            return try list(vhosts.flatMap { v in (set[v.name] ?? [:]).values.sorted { $0.name < $1.name }.map { Broker.json($0) } })
        }
        guard p.count == 3 else { throw APIError.notFound }
        let (vhost, name) = (p[1], p[2])
        switch r.method {
        case "GET":
            _ = try visibleVHost(vhost, caller)
            guard let policy = set[vhost]?[name] else { throw APIError.notFound }
            return .json(Broker.json(policy))
        case "PUT":
            try require(.policymaker, caller)
            _ = try actingVHost(vhost, caller)
            let body = try object(r)
            guard let pattern = body["pattern"]?.stringValue else { throw APIError.badRequest("key_missing: pattern") }
            guard let definition = body["definition"]?.objectValue else { throw APIError.badRequest("key_missing: definition") }
            let applyName = body["apply-to"]?.stringValue ?? "all"
            guard let applyTo = Policy.ApplyTo(rawValue: applyName) else { throw APIError.badRequest("unknown apply-to '\(applyName)'") }
            let priority = body["priority"]?.intValue ?? body["priority"]?.stringValue.flatMap { Int64($0) } ?? 0
            let existed = set[vhost]?[name] != nil
            let policy = Policy(name: name, vhost: vhost, pattern: pattern, applyTo: applyTo, priority: Int(priority), definition: definition)
            try policy.validate(operator: isOperator)
            return try commit(.setPolicy(policy, operator: isOperator)) { _ in existed ? Self.noContent : Self.created }
        case "DELETE":
            try require(.policymaker, caller)
            _ = try actingVHost(vhost, caller)
            guard set[vhost]?[name] != nil else { throw APIError.notFound }
            return try commit(.clearPolicy(vhost: vhost, name: name, operator: isOperator)) { _ in Self.noContent }
        default: throw APIError.methodNotAllowed
        }
    }

    // MARK: parameters

    func parameters(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister) throws -> ManagementResponse {
        try require(.policymaker, caller)
        if p.count <= 3 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            let component = p.count > 1 ? p[1] : nil
            let vhostFilter = p.count > 2 ? p[2] : nil
            if let v = vhostFilter { _ = try visibleVHost(v, caller) }
            var out: [JSONValue] = []
            for v in visibleVHosts(caller) where vhostFilter == nil || v.name == vhostFilter {
                for (c, byName) in (broker.parameters[v.name] ?? [:]).sorted(by: { $0.key < $1.key }) where component == nil || c == component {
                    for (n, value) in byName.sorted(by: { $0.key < $1.key }) {
                        out.append(Broker.json(parameter: value, component: c, name: n, vhost: v.name))
                    }
                }
                if component == nil || component == "operator_policy" {
                    for pol in (broker.operatorPolicies[v.name] ?? [:]).values.sorted(by: { $0.name < $1.name }) {
                        out.append(Broker.json(operatorPolicy: pol))
                    }
                }
            }
            return try list(out)
        }
        guard p.count == 4 else { throw APIError.notFound }
        let (component, vhost, name) = (p[1], p[2], p[3])
        switch r.method {
        case "GET":
            _ = try visibleVHost(vhost, caller)
            guard let value = broker.parameters[vhost]?[component]?[name] else { throw APIError.notFound }
            return .json(Broker.json(parameter: value, component: component, name: name, vhost: vhost))
        case "PUT":
            _ = try actingVHost(vhost, caller)
            let body = try object(r)
            guard let value = body["value"] else { throw APIError.badRequest("key_missing: value") }
            let existed = broker.parameters[vhost]?[component]?[name] != nil
            return try commit(.setParameter(vhost: vhost, component: component, name: name, value: value)) { _ in
                existed ? Self.noContent : Self.created
            }
        case "DELETE":
            _ = try actingVHost(vhost, caller)
            guard broker.parameters[vhost]?[component]?[name] != nil else { throw APIError.notFound }
            return try commit(.clearParameter(vhost: vhost, component: component, name: name)) { _ in Self.noContent }
        default: throw APIError.methodNotAllowed
        }
    }

    func globalParameters(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: Lister) throws -> ManagementResponse {
        try require(.administrator, caller)
        if p.count == 1 {
            guard r.method == "GET" else { throw APIError.methodNotAllowed }
            return try list(broker.globalParameters.sorted(by: { $0.key < $1.key }).map { Broker.json(globalParameter: $0.value, name: $0.key) })
        }
        guard p.count == 2 else { throw APIError.notFound }
        let name = p[1]
        switch r.method {
        case "GET":
            guard let value = broker.globalParameters[name] else { throw APIError.notFound }
            return .json(Broker.json(globalParameter: value, name: name))
        case "PUT":
            let body = try object(r)
            guard let value = body["value"] else { throw APIError.badRequest("key_missing: value") }
            let existed = broker.globalParameters[name] != nil
            return try commit(.setGlobalParameter(name: name, value: value)) { _ in existed ? Self.noContent : Self.created }
        case "DELETE":
            guard broker.globalParameters[name] != nil else { throw APIError.notFound }
            return try commit(.clearGlobalParameter(name)) { _ in Self.noContent }
        default: throw APIError.methodNotAllowed
        }
    }

    // MARK: definitions

    /// GET exports (everything, or one vhost's objects without their vhost fields, as RabbitMQ);
    /// POST imports a definitions document.
    func definitions(_ p: [String], _ r: ManagementRequest, _ caller: Caller) throws -> ManagementResponse {
        try require(.administrator, caller)
        guard p.count <= 2 else { throw APIError.notFound }
        let vhost = p.count == 2 ? p[1] : nil
        if let vhost, broker.vhosts[vhost] == nil { throw APIError.notFound }
        switch r.method {
        case "GET":
            // Built a slice at a time, ordered and (for one vhost) filtered off the loop.
            let export = DefinitionsExport(broker, durableOnly: false)
            return try sliced(
                SlicedWork { budget in
                    while !export.step(objects: Self.sliceUnit) { if budget.exhausted { return nil } }
                    var r = ManagementResponse(status: 200)
                    r.pending = .definitions(export.result(ordered: false), vhost: vhost)
                    return r
                })
        case "POST":
            guard case .object(var doc) = try r.json() else { throw APIError.badRequest("not_json") }
            if let vhost {
                // A vhost's definitions name no vhost: every object goes into this one.
                for key in ["parameters", "policies", "queues", "exchanges", "bindings"] {
                    doc[key] = .array((doc[key]?.arrayValue ?? []).map { item in
                        guard case .object(var o) = item else { return item }
                        o["vhost"] = .string(vhost)
                        return .object(o)
                    })
                }
            }
            // Chunks of a few hundred objects, each a change of its own applied in its own turn of
            // the loop: a file with 100,000 queues does not hold AMQP traffic while it loads (it
            // was parsed off the loop by the shell). Passwords are hashed and queues placed on
            // this node before proposing (applying must not draw salts or look at who applies).
            let prepared = try broker.preparedForImport(.object(doc))
            let chunks = try Broker.definitionChunks(prepared, size: Self.importChunk)
            let by = caller.user.name
            return try commitAll(chunks.map { .importDefinitions($0) }) { [broker] in
                let count = { (k: String) in doc[k]?.arrayValue?.count ?? 0 }
                broker.logger.notice(
                    "definitions imported through the management API",
                    metadata: ["by": "\(by)", "users": "\(count("users"))", "vhosts": "\(count("vhosts"))", "queues": "\(count("queues"))",
                               "exchanges": "\(count("exchanges"))", "bindings": "\(count("bindings"))"])
                return Self.noContent
            }
        default: throw APIError.methodNotAllowed
        }
    }
}
