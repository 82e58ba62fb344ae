import Logging
import AMQPProtocol

/// The one place definitions change: a committed `MetadataCommand` applied to this node's
/// broker. Deterministic: every node applies the same commands in the same order and reaches
/// the same definitions; what differs per node is only what lives there (a queue's messages and
/// storage on its home node, the connections each node closes).
extension Broker {
    /// `index`: the command's position in the metadata log (unique and the same on every node;
    /// queues it creates take it as their incarnation).
    public func apply(_ command: MetadataCommand, index: UInt64) -> MetadataOutcome {
        applyingIndex = index
        defer { applyingIndex = 0 }
        do throws(AMQPErrorOrAdmin) {
            return .done(try applyChecked(command))
        } catch {
            return .refused(error)
        }
    }

    private func vhost(_ name: String) throws(AMQPErrorOrAdmin) -> VirtualHost {
        guard let v = vhosts[name] else { throw .amqp(.notFound("no vhost '\(name)'")) }
        return v
    }

    private func applyChecked(_ command: MetadataCommand) throws(AMQPErrorOrAdmin) -> MetadataReply {
        var reply = MetadataReply()
        func amqp(_ body: () throws(AMQPError) -> Void) throws(AMQPErrorOrAdmin) {
            do throws(AMQPError) { try body() } catch { throw .amqp(error) }
        }
        func admin(_ body: () throws(AdminError) -> Void) throws(AMQPErrorOrAdmin) {
            do throws(AdminError) { try body() } catch { throw .admin(error) }
        }
        switch command {
        case .declareExchange(let vhostName, let name, let type, let durable, let autoDelete, let isInternal, let arguments):
            let v = try vhost(vhostName)
            try amqp { () throws(AMQPError) in
                try v.declareExchange(name: name, type: type, durable: durable, autoDelete: autoDelete, internal: isInternal, arguments: arguments)
            }
        case .deleteExchange(let vhostName, let name, let ifUnused):
            let v = try vhost(vhostName)
            try amqp { () throws(AMQPError) in try v.deleteExchange(named: name, ifUnused: ifUnused) }
        case .declareQueue(let d):
            let v = try vhost(d.vhost)
            try amqp { () throws(AMQPError) in
                let (q, created) = try v.declareQueue(d)
                reply.queue = q
                reply.created = created
            }
        case .deleteQueue(let vhostName, let name):
            let v = try vhost(vhostName)
            if let q = v.queues[name] {
                (reply.messages, reply.cancelled) = v.detachQueue(q)
            }
        case .bind(let vhostName, let source, let destination, let toExchange, let key, let arguments):
            let v = try vhost(vhostName)
            try amqp { () throws(AMQPError) in
                let dest = try v.destination(destination, toExchange: toExchange)
                try v.bind(source: try v.exchange(named: source), destination: dest, routingKey: key, arguments: arguments)
            }
        case .unbind(let vhostName, let source, let destination, let toExchange, let key, let arguments):
            let v = try vhost(vhostName)
            // Unbinding what does not exist succeeds, as in RabbitMQ.
            guard let x = v.exchanges[source], let dest = try? v.destination(destination, toExchange: toExchange) else { break }
            try amqp { () throws(AMQPError) in try v.unbind(source: x, destination: dest, routingKey: key, arguments: arguments) }
        case .putVHost(let name, let description, let tags):
            let v = addVirtualHost(name, description: description, tags: tags)
            v.descriptionText = description
            v.tags = tags
        case .deleteVHost(let name):
            try admin { () throws(AdminError) in try deleteVirtualHost(name) }
        case .putUser(let user):
            putUser(user)
        case .deleteUser(let name):
            try admin { () throws(AdminError) in try deleteUser(name) }
        case .setPermissions(let user, let vhostName, let p):
            try admin { () throws(AdminError) in try setPermissionsChecked(user: user, vhost: vhostName, p) }
        case .clearPermissions(let user, let vhostName):
            clearPermissions(user: user, vhost: vhostName)
        case .setTopicPermission(let user, let vhostName, let p):
            try admin { () throws(AdminError) in try setTopicPermissions(user: user, vhost: vhostName, p) }
        case .clearTopicPermissions(let user, let vhostName, let exchange):
            clearTopicPermissions(user: user, vhost: vhostName, exchange: exchange)
        case .setParameter(let vhostName, let component, let name, let value):
            try admin { () throws(AdminError) in try setParameter(vhost: vhostName, component: component, name: name, value: value) }
        case .clearParameter(let vhostName, let component, let name):
            clearParameter(vhost: vhostName, component: component, name: name)
        case .setGlobalParameter(let name, let value):
            setGlobalParameter(name: name, value: value)
        case .clearGlobalParameter(let name):
            clearGlobalParameter(name: name)
        case .setPolicy(let p, let isOperator):
            try admin { () throws(AdminError) in try setPolicy(p, operator: isOperator) }
        case .clearPolicy(let vhostName, let name, let isOperator):
            try admin { () throws(AdminError) in try clearPolicy(vhost: vhostName, name: name, operator: isOperator) }
        case .importDefinitions(let doc):
            try admin { () throws(AdminError) in try importDefinitions(doc, quietly: true) }
        case .setClusterName(let name):
            clusterName = name
            onClusterChange?()
        case .connectionClosed(let owner):
            for v in vhosts.values {
                for q in v.queues.values where q.exclusiveOwner == owner { v.removeQueue(q) }
            }
        case .registerNode(let name, let address):
            clusterNodes[name] = address
            onClusterChange?()
            replicatedQueues?.clusterChanged(left: nil)
        case .forgetNode(let node):
            clusterNodes[node] = nil
            onClusterChange?()
            replicatedQueues?.clusterChanged(left: node)
            for v in vhosts.values {
                // (A replicated queue lives on in its other members.)
                for q in v.queues.values where q.exclusiveOwner?.node == node || (q.homeNode == node && q.replicated == nil) { v.removeQueue(q) }
            }
        case .nodeRestarted(let node), .nodeDown(let node):
            // The messages of its transient queues were in its memory, and its connections are
            // gone with their exclusive queues (RabbitMQ deletes both when a node restarts or
            // goes down).
            for v in vhosts.values {
                for q in v.queues.values where q.exclusiveOwner?.node == node || (q.homeNode == node && !q.durable && q.replicated == nil) {
                    v.removeQueue(q)
                }
            }
            guard case .nodeRestarted = command else { break }
            // Transient exchanges live as long as some member stays up (RabbitMQ keeps them in
            // memory on every node); a cluster of one that restarts has lost them all.
            if clusterNodes.keys.allSatisfy({ $0 == node }) {
                for v in vhosts.values {
                    for x in v.exchanges.values where !x.durable && !x.isBuiltIn { v.removeExchange(x) }
                }
            }
        case .queueLeader(let vhostName, let name, let incarnation, let node, let term):
            guard let q = vhosts[vhostName]?.queues[name], q.incarnation == incarnation, let r = q.replicated else { break }
            r.leaderRecorded(node, term: term)
        case .queueMembers(let vhostName, let name, let incarnation, let members):
            guard let q = vhosts[vhostName]?.queues[name], q.incarnation == incarnation, let r = q.replicated else { break }
            r.membersChanged(members)
        case .queueTransfer(let vhostName, let name, let incarnation, let node):
            guard let q = vhosts[vhostName]?.queues[name], q.incarnation == incarnation, let r = q.replicated else { break }
            r.leaderWanted(node)
        }
        return reply
    }
}

extension Broker {
    /// A queue whose own rules delete it (auto-delete, x-expires) is deleted through the log
    /// like any other, once: its home node proposes it and nobody waits for the outcome.
    func proposeDeletion(of q: MessageQueue, why: String) {
        guard !q.isDeleted, !q.deletionProposed, q.isLocal else { return }
        q.deletionProposed = true
        logger.debug("queue deletion proposed", metadata: ["queue": "\(q.name)", "vhost": "\(q.vhost.name)", "reason": "\(why)"])
        metadataLog.propose(.deleteQueue(vhost: q.vhost.name, name: q.name)) { [logger] outcome in
            if case .notCommitted(let reason) = outcome {
                q.deletionProposed = false  // asked again next time it qualifies
                logger.warning("queue deletion not committed", metadata: ["queue": "\(q.name)", "reason": "\(reason)"])
            }
        }
    }
}

extension VirtualHost {
    /// The destination of a binding, by name.
    func destination(_ name: String, toExchange: Bool) throws(AMQPError) -> BindingDestination {
        toExchange ? .exchange(try exchange(named: name)) : .queue(try queue(named: name))
    }
}
