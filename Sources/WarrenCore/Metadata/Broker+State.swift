import AMQPProtocol

/// The metadata log's snapshots: the whole shared state as one document, and installing one
/// over what a node has (a member that fell too far behind, a node restarting from its own
/// snapshot).
extension Broker {
    /// The members a new cluster starts with (its founder).
    public func setClusterNodes(_ nodes: [String: String]) {
        clusterNodes = nodes
    }

    /// Everything the metadata log's commands built: definitions in RabbitMQ's format plus
    /// exclusive and transient objects, each queue's home node, owner and incarnation, and the
    /// cluster's name and members.
    public func stateSnapshot() -> JSONValue {
        let export = DefinitionsExport(self, durableOnly: false, state: true)
        _ = export.step(objects: .max)
        return export.result(ordered: false)
    }

    /// Makes this node's state the snapshot's: what the snapshot lacks goes, what it has is made
    /// or updated. A queue the snapshot has in the same incarnation is kept as it is, with its
    /// messages; one of another incarnation was deleted and made again meanwhile, and is
    /// replaced.
    public func installState(_ doc: JSONValue) throws(AdminError) {
        guard let root = doc.objectValue else { throw AdminError("state snapshot: expected a JSON object") }
        func list(_ key: String) -> [JSONValue] { root[key]?.arrayValue ?? [] }
        func key(_ parts: String?...) -> String { parts.map { $0 ?? "" }.joined(separator: "\u{0}") }

        let vhostNames = Set(list("vhosts").compactMap { $0["name"]?.stringValue })
        for name in Array(vhosts.keys) where !vhostNames.contains(name) { try? deleteVirtualHost(name) }
        let userNames = Set(list("users").compactMap { $0["name"]?.stringValue })
        for name in Array(users.keys) where !userNames.contains(name) { try? deleteUser(name) }

        let perms = Set(list("permissions").map { key($0["user"]?.stringValue, $0["vhost"]?.stringValue) })
        for (vhost, byUser) in permissions {
            for user in byUser.keys where !perms.contains(key(user, vhost)) { clearPermissions(user: user, vhost: vhost) }
        }
        let topics = Set(list("topic_permissions").map { key($0["user"]?.stringValue, $0["vhost"]?.stringValue, $0["exchange"]?.stringValue) })
        for (vhost, byUser) in topicPermissions {
            for (user, byExchange) in byUser {
                for x in byExchange.keys where !topics.contains(key(user, vhost, x)) {
                    clearTopicPermissions(user: user, vhost: vhost, exchange: x)
                }
            }
        }
        let params = Set(list("parameters").map { key($0["vhost"]?.stringValue, $0["component"]?.stringValue, $0["name"]?.stringValue) })
        for (vhost, byComponent) in parameters {
            for (component, byName) in byComponent {
                for name in byName.keys where !params.contains(key(vhost, component, name)) {
                    clearParameter(vhost: vhost, component: component, name: name)
                }
            }
        }
        let globals = Set(list("global_parameters").compactMap { $0["name"]?.stringValue })
        for name in Array(globalParameters.keys) where !globals.contains(name) { clearGlobalParameter(name: name) }
        let policyKeys = Set(list("policies").map { key($0["vhost"]?.stringValue, $0["name"]?.stringValue) })
        for (vhost, byName) in policies {
            for name in byName.keys where !policyKeys.contains(key(vhost, name)) { try? clearPolicy(vhost: vhost, name: name) }
        }
        // Operator policies travel as parameters of component "operator_policy".
        for (vhost, byName) in operatorPolicies {
            for name in byName.keys where !params.contains(key(vhost, "operator_policy", name)) {
                try? clearPolicy(vhost: vhost, name: name, operator: true)
            }
        }

        var queueIncarnations: [String: Int64] = [:]
        for q in list("queues") { queueIncarnations[key(q["vhost"]?.stringValue, q["name"]?.stringValue)] = q["warren_incarnation"]?.intValue ?? 0 }
        let exchangeKeys = Set(list("exchanges").map { key($0["vhost"]?.stringValue, $0["name"]?.stringValue) })
        let bindingKeys = Set(list("bindings").map(\.jsonText))
        for v in vhosts.values {
            for q in Array(v.queues.values) {
                let wanted = queueIncarnations[key(v.name, q.name)]
                if wanted == nil || wanted != Int64(bitPattern: q.incarnation) { v.removeQueue(q) }
            }
            for x in Array(v.exchanges.values) where !x.isBuiltIn && !exchangeKeys.contains(key(v.name, x.name)) {
                try? v.deleteExchange(named: x.name, ifUnused: false)
            }
            for x in Array(v.exchanges.values) {
                for b in Array(x.bindings) where !bindingKeys.contains(Self.json(b, vhost: v.name).jsonText) {
                    try? v.unbind(source: b.source, destination: b.destination, routingKey: b.routingKey, arguments: b.arguments)
                }
            }
        }
        try importDefinitions(doc, quietly: true)
    }
}
