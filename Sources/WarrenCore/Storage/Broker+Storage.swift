import AMQPProtocol
import Logging

/// The broker's side of durability: it journals metadata changes to the store, replays them
/// after a restart, hands recovered messages to their queues, and releases publisher confirms
/// when the store reports its fsyncs.
extension Broker {
    /// Connects the store. Call before clients connect and before `recover`.
    public func attach(store: any MessageStore) {
        messageStore = store
        store.onDurable = { [unowned self] position in self.durable(upTo: position) }
    }

    // MARK: metadata journal

    /// Records a durable metadata change, unless it is being replayed from the store.
    func journal(_ change: @autoclosure () -> JSONValue) {
        guard definitionsInStore, let store = messageStore, !isReplaying else { return }
        store.appendMetadata(change())
    }

    /// `{"put": {section: [entry]}}`: replayed by importing it as a definitions document.
    static func putChange(_ section: String, _ entry: JSONValue) -> JSONValue {
        .object(["put": .object([section: .array([entry])])])
    }

    /// `{"delete": {"kind": kind, ...}}`: replayed by the matching delete.
    static func deleteChange(_ kind: String, _ fields: [String: JSONValue]) -> JSONValue {
        var o = fields
        o["kind"] = .string(kind)
        return .object(["delete": .object(o)])
    }

    /// Applies one journaled change. Changes are replayed in order and are idempotent, so a
    /// change whose object is already gone (or already there) is not an error.
    func applyChange(_ change: JSONValue) {
        if let put = change["put"] {
            do throws(AdminError) {
                try importDefinitions(put)
            } catch {
                logger.warning("store: a journaled change could not be applied", metadata: ["error": "\(error)"])
            }
            return
        }
        guard let d = change["delete"], let kind = d["kind"]?.stringValue else {
            logger.warning("store: unknown journaled change skipped")
            return
        }
        let vhost = d["vhost"]?.stringValue ?? ""
        let name = d["name"]?.stringValue ?? ""
        let user = d["user"]?.stringValue ?? ""
        switch kind {
        case "vhost": try? deleteVirtualHost(name)
        case "user": try? deleteUser(name)
        case "permission": clearPermissions(user: user, vhost: vhost)
        case "topic_permission": clearTopicPermissions(user: user, vhost: vhost, exchange: d["exchange"]?.stringValue)
        case "policy": try? clearPolicy(vhost: vhost, name: name)
        case "operator_policy": try? clearPolicy(vhost: vhost, name: name, operator: true)
        case "parameter": clearParameter(vhost: vhost, component: d["component"]?.stringValue ?? "", name: name)
        case "global_parameter": clearGlobalParameter(name: name)
        case "exchange": try? vhosts[vhost]?.deleteExchange(named: name, ifUnused: false)
        case "queue":
            if let v = vhosts[vhost], let q = v.queues[name] { v.removeQueue(q) }
        case "binding":
            guard let v = vhosts[vhost], let source = v.exchanges[d["source"]?.stringValue ?? ""] else { return }
            let destName = d["destination"]?.stringValue ?? ""
            let destination: BindingDestination? =
                d["destination_type"]?.stringValue == "exchange"
                ? v.exchanges[destName].map(BindingDestination.exchange) : v.queues[destName].map(BindingDestination.queue)
            guard let destination else { return }
            try? v.unbind(
                source: source, destination: destination, routingKey: d["routing_key"]?.stringValue ?? "",
                arguments: Self.fieldTable(d["arguments"]?.objectValue))
        default:
            logger.warning("store: journaled delete of unknown kind skipped", metadata: ["kind": "\(kind)"])
        }
    }

    // MARK: recovery

    /// Rebuilds durable state after a restart: definitions from the snapshot and the changes
    /// journaled since, then each durable queue takes over its recovered messages. Storage
    /// that no queue claims (its queue was deleted) is dropped.
    public func recover(metadata: RecoveredMetadata, queues: [RecoveredQueue]) {
        isReplaying = true
        defer { isReplaying = false }
        for q in queues { recoveredQueues[q.id] = q }
        if let snapshot = metadata.snapshot {
            do throws(AdminError) {
                try importDefinitions(snapshot)
            } catch {
                logger.error("store: the metadata snapshot could not be applied", metadata: ["error": "\(error)"])
            }
        }
        for change in metadata.changes { applyChange(change) }
        if let store = messageStore {
            for id in recoveredQueues.keys.sorted() {
                logger.warning("store: messages of a deleted queue dropped", metadata: ["storage": "\(id)"])
                store.dropQueue(store.openQueue(id: id, durable: true))
            }
        }
        recoveredQueues.removeAll()
        var messages = 0
        for v in vhosts.values { for q in v.queues.values { messages += q.messageCount } }
        logger.notice(
            "recovered durable state",
            metadata: ["vhosts": "\(vhosts.count)", "users": "\(users.count)", "queues": "\(vhosts.values.reduce(0) { $0 + $1.queues.count })", "messages": "\(messages)"])
    }

    /// What a fresh node starts with (RabbitMQ's first boot): the default vhost and user, an
    /// administrator with every permission there. Journaled like any other change.
    public func seedDefaults() {
        addVirtualHost(configuration.defaultVirtualHost, description: "Default virtual host")
        putUser(User(name: configuration.defaultUser, password: configuration.defaultPassword, tags: ["administrator"]))
        setPermissions(user: configuration.defaultUser, vhost: configuration.defaultVirtualHost, .all)
    }

    // MARK: durability

    /// A channel waits for the store to reach a log position (confirms, tx.commit-ok).
    func waitForDurability(_ channel: ChannelSession) {
        durabilityWaiters[ObjectIdentifier(channel)] = channel
        messageStore?.requestSync()
    }

    func stopWaiting(_ channel: ChannelSession) {
        durabilityWaiters[ObjectIdentifier(channel)] = nil
    }

    /// The store fsynced up to `position`: confirms and commit-oks waiting for it go out.
    func durable(upTo position: UInt64) {
        clusterQueues?.durable(upTo: position)
        guard !durabilityWaiters.isEmpty else { return }
        for (id, channel) in durabilityWaiters where channel.durableReached(position) {
            durabilityWaiters[id] = nil
        }
    }
}
