public import AMQPProtocol

/// One link that the vhost's policies and parameters ask for: an exchange or a queue federated
/// from one upstream. Equal specs are the same link; a changed spec (parameter edited, policy
/// changed) is a new link that replaces the old one.
public struct FederationLinkSpec: Sendable, Hashable {
    public enum Kind: String, Sendable { case exchange, queue }

    public var vhost: String
    public var kind: Kind
    /// The downstream exchange or queue.
    public var name: String
    public var upstream: FederationUpstream
    /// The policy that asked for it.
    public var policy: String
    /// The downstream exchange's declaration, repeated upstream (exchange links) / the
    /// downstream queue's (queue links).
    public var type: String
    public var durable: Bool
    public var autoDelete: Bool
    public var `internal`: Bool
    public var arguments: FieldTable

    /// The upstream exchange or queue name.
    public var upstreamName: String {
        switch kind {
        case .exchange: return upstream.exchange ?? name
        case .queue: return upstream.queue ?? name
        }
    }

    /// Eight hex digits naming the link (as RabbitMQ's `id`), stable across restarts and nodes.
    public var id: String {
        var h: UInt32 = 2_166_136_261
        for b in "\(vhost)\u{0}\(kind.rawValue)\u{0}\(name)\u{0}\(upstream.name)\u{0}\(upstreamName)".utf8 {
            h = (h ^ UInt32(b)) &* 16_777_619
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The consumer tag a queue link consumes upstream with.
    public var consumerTag: String { upstream.consumerTag ?? "federation-link-\(upstream.name)" }
}

extension Broker {
    /// Every link the policies and parameters of every vhost ask for, in a stable order. An
    /// upstream a policy names that does not exist gives no link (as in RabbitMQ).
    public func federationLinkSpecs() -> [FederationLinkSpec] {
        var out: [FederationLinkSpec] = []
        for vname in vhosts.keys.sorted() {
            guard let v = vhosts[vname] else { continue }
            let params = parameters[vname] ?? [:]
            let upstreamParams = params[FederationParameters.upstreamComponent] ?? [:]
            guard !upstreamParams.isEmpty else { continue }
            func upstreams(_ selection: FederationSelection) -> [FederationUpstream] {
                switch selection {
                case .upstream(let n):
                    return upstreamParams[n].flatMap { FederationUpstream(name: n, value: $0) }.map { [$0] } ?? []
                case .set("all"):
                    return upstreamParams.keys.sorted().compactMap { FederationUpstream(name: $0, value: upstreamParams[$0]!) }
                case .set(let s):
                    let entries = params[FederationParameters.upstreamSetComponent]?[s]?.arrayValue ?? []
                    return entries.compactMap { e in
                        guard let o = e.objectValue, let n = o["upstream"]?.stringValue, let value = upstreamParams[n] else { return nil }
                        return FederationUpstream(name: n, value: value, overrides: o)
                    }
                }
            }
            // (Filtered before sorting: this runs every second on the broker loop, and a vhost
            // may have many exchanges and queues of which few are federated.)
            for x in v.exchanges.values.filter({ $0.federation != nil }).sorted(by: { $0.name < $1.name }) {
                guard let sel = x.federation, !x.isBuiltIn || !x.name.isEmpty, let policy = x.policyName else { continue }
                // The exchanges a link declares upstream are never themselves federated.
                if x.type == FederationUpstreamRouter.typeName { continue }
                for u in upstreams(sel) {
                    out.append(
                        FederationLinkSpec(
                            vhost: vname, kind: .exchange, name: x.name, upstream: u, policy: policy, type: x.type, durable: x.durable,
                            autoDelete: x.autoDelete, internal: x.internal, arguments: x.arguments))
                }
            }
            let federatedQueues = v.queues.values.filter {
                $0.settings.otherPolicyKeys["federation-upstream"] != nil || $0.settings.otherPolicyKeys["federation-upstream-set"] != nil
            }
            for q in federatedQueues.sorted(by: { $0.name < $1.name }) {
                guard let policy = q.settings.policyName, let sel = FederationSelection(policyDefinition: q.settings.otherPolicyKeys) else { continue }
                // Links move messages only into queues that will keep them.
                if q.exclusiveOwner != nil { continue }
                for u in upstreams(sel) {
                    out.append(
                        FederationLinkSpec(
                            vhost: vname, kind: .queue, name: q.name, upstream: u, policy: policy, type: "queue", durable: q.durable,
                            autoDelete: q.autoDelete, internal: false, arguments: q.arguments))
                }
            }
        }
        return out
    }

    /// The bindings an exchange link sends upstream: each distinct (routing key, arguments) of
    /// the exchange's bindings, whatever their destination.
    public func federatedBindingKeys(vhost: String, exchange: String) -> (version: UInt64, keys: Set<FederationBindingKey>)? {
        guard let x = vhosts[vhost]?.exchanges[exchange] else { return nil }
        return (x.bindingsVersion, Set(x.bindings.map { FederationBindingKey(routingKey: $0.routingKey, arguments: $0.arguments) }))
    }

    /// Whether a queue link should move messages now: the queue has a consumer that could take
    /// one and nothing ready of its own (RabbitMQ's rule: federated queues fetch only when they
    /// would otherwise leave a consumer waiting). `backlog`: ready messages under which it still
    /// fetches (the link's prefetch in flight stays full without flapping on every message).
    public func federatedQueueWantsMessages(vhost: String, queue: String, backlog: Int) -> Bool {
        guard let q = vhosts[vhost]?.queues[queue] else { return false }
        return q.consumerCount > 0 && q.messageCount <= backlog
    }
}

/// A binding as an exchange link propagates it.
public struct FederationBindingKey: Sendable, Hashable {
    public var routingKey: String
    public var arguments: FieldTable

    public init(routingKey: String, arguments: FieldTable) {
        self.routingKey = routingKey
        self.arguments = arguments
    }
}
