import Logging
import AMQPProtocol

/// Administration of the broker: the operations behind definitions files, and later the
/// management API. Errors are `AdminError`s with a message for the operator.
public struct AdminError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

extension Broker {
    // MARK: vhosts

    @discardableResult
    public func addVirtualHost(_ name: String, description: String = "", tags: [String] = []) -> VirtualHost {
        if let v = vhosts[name] { return v }
        let v = VirtualHost(name: name, broker: self)
        v.descriptionText = description
        v.tags = tags
        vhosts[name] = v
        journal(Self.putChange("vhosts", Self.json(vhost: v)))
        logger.info("added vhost", metadata: ["vhost": "\(name)"])
        return v
    }

    /// Deletes a vhost: its connections are closed (320), its objects and permissions go.
    public func deleteVirtualHost(_ name: String) throws(AdminError) {
        guard let v = vhosts[name] else { throw AdminError("no vhost '\(name)'") }
        for c in connections.values where c.vhost === v { c.close(reason: "vhost '\(name)' is deleted") }
        for q in Array(v.queues.values) { v.removeQueue(q) }
        vhosts[name] = nil
        permissions[name] = nil
        compiledPermissions[name] = nil
        topicPermissions[name] = nil
        parameters[name] = nil
        policies[name] = nil
        operatorPolicies[name] = nil
        permissionsVersion &+= 1
        journal(Self.deleteChange("vhost", ["name": .string(name)]))
        logger.info("deleted vhost", metadata: ["vhost": "\(name)"])
    }

    public func setVirtualHostLimits(_ name: String, _ limits: VirtualHostLimits) throws(AdminError) {
        guard vhosts[name] != nil else { throw AdminError("no vhost '\(name)'") }
        // RabbitMQ keeps vhost limits as the runtime parameter vhost-limits/limits, and that is
        // what its definitions import reads: keep the two in step so exports carry them.
        var value: [String: JSONValue] = [:]
        if let n = limits.maxConnections { value["max-connections"] = .int(Int64(n)) }
        if let n = limits.maxQueues { value["max-queues"] = .int(Int64(n)) }
        if value.isEmpty {
            clearParameter(vhost: name, component: "vhost-limits", name: "limits")
        } else {
            try setParameter(vhost: name, component: "vhost-limits", name: "limits", value: .object(value))
        }
    }

    // MARK: users

    /// Adds or replaces a user.
    public func putUser(_ user: User) {
        users[user.name] = user
        permissionsVersion &+= 1
        journal(Self.putChange("users", Self.json(user: user)))
    }

    /// Deletes a user, its permissions, and closes its connections.
    public func deleteUser(_ name: String) throws(AdminError) {
        guard users.removeValue(forKey: name) != nil else { throw AdminError("no user '\(name)'") }
        for v in permissions.keys {
            permissions[v]?[name] = nil
            compiledPermissions[v]?[name] = nil
            topicPermissions[v]?[name] = nil
        }
        permissionsVersion &+= 1
        journal(Self.deleteChange("user", ["name": .string(name)]))
        for c in connections.values where c.user?.name == name { c.close(reason: "user '\(name)' is deleted") }
    }

    public func changePassword(user name: String, to password: String) throws(AdminError) {
        guard users[name] != nil else { throw AdminError("no user '\(name)'") }
        users[name]!.passwordHash = PasswordHash.make(password: password)
        journal(Self.putChange("users", Self.json(user: users[name]!)))
    }

    public func setUserTags(_ name: String, _ tags: [String]) throws(AdminError) {
        guard users[name] != nil else { throw AdminError("no user '\(name)'") }
        users[name]!.tags = tags
        journal(Self.putChange("users", Self.json(user: users[name]!)))
    }

    public func setUserLimits(_ name: String, _ limits: UserLimits) throws(AdminError) {
        guard users[name] != nil else { throw AdminError("no user '\(name)'") }
        users[name]!.limits = limits
        journal(Self.putChange("users", Self.json(user: users[name]!)))
    }

    // MARK: permissions

    public func setPermissions(user: String, vhost: String, _ p: Permission) {
        permissions[vhost, default: [:]][user] = p
        compiledPermissions[vhost, default: [:]][user] = CompiledPermission(p)
        permissionsVersion &+= 1
        journal(Self.putChange("permissions", Self.json(permission: p, user: user, vhost: vhost)))
    }

    /// Validates the patterns first; used by the admin paths that take them from people.
    public func setPermissionsChecked(user: String, vhost: String, _ p: Permission) throws(AdminError) {
        guard users[user] != nil else { throw AdminError("no user '\(user)'") }
        guard vhosts[vhost] != nil else { throw AdminError("no vhost '\(vhost)'") }
        for pattern in [p.configure, p.write, p.read] where !CompiledPattern.isValid(pattern) {
            throw AdminError("invalid regular expression '\(pattern)'")
        }
        setPermissions(user: user, vhost: vhost, p)
    }

    public func clearPermissions(user: String, vhost: String) {
        permissions[vhost]?[user] = nil
        compiledPermissions[vhost]?[user] = nil
        permissionsVersion &+= 1
        journal(Self.deleteChange("permission", ["user": .string(user), "vhost": .string(vhost)]))
    }

    public func setTopicPermissions(user: String, vhost: String, _ p: TopicPermission) throws(AdminError) {
        for pattern in [p.write, p.read] where !CompiledPattern.isValid(pattern) {
            throw AdminError("invalid regular expression '\(pattern)'")
        }
        topicPermissions[vhost, default: [:]][user, default: [:]][p.exchange] = p
        permissionsVersion &+= 1
        journal(Self.putChange("topic_permissions", Self.json(topicPermission: p, user: user, vhost: vhost)))
    }

    public func clearTopicPermissions(user: String, vhost: String, exchange: String? = nil) {
        if let exchange {
            topicPermissions[vhost]?[user]?[exchange] = nil
        } else {
            topicPermissions[vhost]?[user] = nil
        }
        permissionsVersion &+= 1
        var fields: [String: JSONValue] = ["user": .string(user), "vhost": .string(vhost)]
        if let exchange { fields["exchange"] = .string(exchange) }
        journal(Self.deleteChange("topic_permission", fields))
    }

    // MARK: parameters

    public func setParameter(vhost: String, component: String, name: String, value: JSONValue) throws(AdminError) {
        guard let v = vhosts[vhost] else { throw AdminError("no vhost '\(vhost)'") }
        try FederationParameters.validate(component: component, name: name, value: value)
        if component == "vhost-limits" {
            v.limits = VirtualHostLimits(
                maxConnections: value["max-connections"]?.intValue.map(Int.init), maxQueues: value["max-queues"]?.intValue.map(Int.init))
        }
        parameters[vhost, default: [:]][component, default: [:]][name] = value
        journal(Self.putChange("parameters", Self.json(parameter: value, component: component, name: name, vhost: vhost)))
    }

    public func clearParameter(vhost: String, component: String, name: String) {
        parameters[vhost]?[component]?[name] = nil
        if component == "vhost-limits" { vhosts[vhost]?.limits = VirtualHostLimits() }
        journal(Self.deleteChange("parameter", ["vhost": .string(vhost), "component": .string(component), "name": .string(name)]))
    }

    public func setGlobalParameter(name: String, value: JSONValue) {
        globalParameters[name] = value
        journal(Self.putChange("global_parameters", Self.json(globalParameter: value, name: name)))
    }

    public func clearGlobalParameter(name: String) {
        globalParameters[name] = nil
        journal(Self.deleteChange("global_parameter", ["name": .string(name)]))
    }

    // MARK: alarms

    /// Raises or clears a resource alarm (memory, disk) of this node: publishing connections are
    /// sent `connection.blocked` (if their client understands it) and are no longer read until
    /// every alarm has cleared; then `connection.unblocked`.
    public func setAlarm(_ name: String, active: Bool) {
        if active { localAlarms.insert(name) } else { localAlarms.remove(name) }
        recomputeAlarms(cause: name)
    }

    /// The alarms another member of the cluster reports (empty: none, or the node is gone). An
    /// alarm anywhere blocks publishers everywhere, as in RabbitMQ: a message published here
    /// may be routed to a queue there.
    public func setRemoteAlarms(node: String, _ alarms: Set<String>) {
        guard remoteAlarms[node, default: []] != alarms else { return }
        remoteAlarms[node] = alarms.isEmpty ? nil : alarms
        recomputeAlarms(cause: alarms.isEmpty ? "cleared on \(node)" : alarms.sorted().map { "\($0) on \(node)" }.joined(separator: ", "))
    }

    private func recomputeAlarms(cause: String) {
        let before = !activeAlarms.isEmpty
        var all = localAlarms
        for a in remoteAlarms.values { all.formUnion(a) }
        activeAlarms = all
        let after = !activeAlarms.isEmpty
        guard before != after else { return }
        logger.warning(after ? "resource alarm set" : "resource alarms cleared", metadata: ["alarm": "\(cause)"])
        for c in connections.values { c.alarmsChanged(blocked: after, reason: alarmDescription) }
    }

    /// The alarms in force, as `connection.blocked` names them (with the node for others').
    public var alarmDescription: String {
        var names = localAlarms.sorted()
        for (node, alarms) in remoteAlarms.sorted(by: { $0.key < $1.key }) { names += alarms.sorted().map { "\($0) on \(node)" } }
        return names.joined(separator: ", ")
    }
}

extension Broker {
    /// Publishes a message without a channel (the management API's publish and aliveness
    /// test): routed as basic.publish routes it, alternate exchanges included, and counted.
    /// Returns whether a queue took it.
    @discardableResult
    public func publish(_ message: Message, via exchange: Exchange, in vhost: VirtualHost) -> Bool {
        stats.received &+= 1
        var queues: [MessageQueue] = []
        vhost.routeWithAlternates(exchange, routingKey: message.routingKey, headers: message.properties.headers, into: &queues)
        guard !queues.isEmpty else {
            stats.unroutableDropped &+= 1
            return false
        }
        stats.routed &+= 1
        var taken = false
        var remote: [String: [String]] = [:]
        for q in queues {
            if !q.isLocal {
                remote[q.homeNode, default: []].append(q.name)
                taken = true
            } else if q.enqueue(message) {
                taken = true
            }
        }
        vhost.sendToHomes(message, remote)
        return taken
    }
}
