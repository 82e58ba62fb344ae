public import AMQPProtocol

/// A permission with its patterns compiled once.
final class CompiledPermission {
    let configure: CompiledPattern
    let write: CompiledPattern
    let read: CompiledPattern

    init(_ p: Permission) {
        configure = CompiledPattern(p.configure)
        write = CompiledPattern(p.write)
        read = CompiledPattern(p.read)
    }

    func allows(_ kind: AccessKind, _ name: String) -> Bool {
        switch kind {
        case .configure: return configure.matches(name)
        case .write: return write.matches(name)
        case .read: return read.matches(name)
        }
    }
}

/// A queue or exchange, as permission checks and their errors name it.
public enum Resource: Sendable, Hashable {
    case queue(String)
    case exchange(String)

    /// The name patterns match against; the default exchange is `amq.default`, as in RabbitMQ.
    var checkedName: String {
        switch self {
        case .queue(let n): return n
        case .exchange(let n): return n.isEmpty ? "amq.default" : n
        }
    }

    var kindName: String {
        switch self {
        case .queue: return "queue"
        case .exchange: return "exchange"
        }
    }
}

extension Broker {
    /// Whether a user has any permissions in a vhost (what connection.open requires).
    public func canAccess(vhost: String, user: String) -> Bool {
        permissions[vhost]?[user] != nil || isInternal(user: user)
    }

    /// Throws 403 with RabbitMQ's text unless the user's permission of `kind` matches.
    public func checkAccess(_ kind: AccessKind, _ resource: Resource, user: String, vhost: String) throws(AMQPError) {
        if isInternal(user: user) { return }
        guard let p = compiledPermissions[vhost]?[user], p.allows(kind, resource.checkedName) else {
            throw .accessRefused("access to \(resource.kindName) '\(resource.checkedName)' in vhost '\(vhost)' refused for user '\(user)'")
        }
    }

    /// Topic permissions: on a topic exchange with a topic permission for this user, the routing
    /// key (publish) or binding key (bind) must match. `{username}` and `{vhost}` in a pattern
    /// are replaced first, as RabbitMQ does. No topic permission for the exchange: allowed.
    public func checkTopicAccess(_ kind: AccessKind, exchange: String, key: String, user: String, vhost: String) throws(AMQPError) {
        guard let tp = topicPermissions[vhost]?[user]?[exchange] else { return }
        let pattern = (kind == .write ? tp.write : tp.read)
            .replacingOccurrences(of: "{username}", with: user).replacingOccurrences(of: "{vhost}", with: vhost)
        let compiled: CompiledPattern
        if let c = compiledTopicPatterns[pattern] {
            compiled = c
        } else {
            // Compiling a regex costs far more than matching one: once per distinct pattern.
            if compiledTopicPatterns.count >= 4096 { compiledTopicPatterns.removeAll() }
            compiled = CompiledPattern(pattern)
            compiledTopicPatterns[pattern] = compiled
        }
        guard compiled.matches(key) else {
            throw .accessRefused("access to topic '\(key)' in exchange '\(exchange)' in vhost '\(vhost)' refused for user '\(user)'")
        }
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty, self.contains(target) else { return self }
        return self.split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
