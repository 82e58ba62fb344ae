import AMQPProtocol

/// A policy or operator policy, as RabbitMQ's `set_policy` takes it.
public struct Policy: Sendable, Hashable {
    public enum ApplyTo: String, Sendable, CaseIterable {
        case queues, exchanges, all
        case classicQueues = "classic_queues"
        case quorumQueues = "quorum_queues"
        case streams

        /// `queueType` nil: an exchange.
        func applies(toQueueOf queueType: QueueType?) -> Bool {
            switch self {
            case .all: return true
            case .queues: return queueType != nil
            case .classicQueues: return queueType == .classic
            case .quorumQueues: return queueType == .quorum
            case .exchanges: return queueType == nil
            case .streams: return false  // no streams
            }
        }
    }

    public var name: String
    public var vhost: String
    public var pattern: String
    public var applyTo: ApplyTo
    public var priority: Int
    public var definition: [String: JSONValue]

    public init(name: String, vhost: String, pattern: String, applyTo: ApplyTo = .all, priority: Int = 0, definition: [String: JSONValue]) {
        self.name = name
        self.vhost = vhost
        self.pattern = pattern
        self.applyTo = applyTo
        self.priority = priority
        self.definition = definition
    }

    /// Keys an operator policy may set (RabbitMQ 3.10's list).
    static let operatorKeys: Set<String> = [
        "expires", "message-ttl", "max-length", "max-length-bytes", "max-in-memory-length", "max-in-memory-bytes",
        "delivery-limit", "target-group-size",
    ]

    /// Checks every key and value of the definition; the error says which and why.
    public func validate(operator isOperator: Bool = false) throws(AdminError) {
        guard CompiledPattern.isValid(pattern) else { throw AdminError("invalid pattern '\(pattern)'") }
        if definition.isEmpty { throw AdminError("policy '\(name)': the definition is empty") }
        for (key, value) in definition {
            if isOperator && !Self.operatorKeys.contains(key) {
                throw AdminError("operator policy '\(name)': '\(key)' is not allowed in operator policies")
            }
            try Self.validate(key: key, value: value, policy: name)
        }
        if definition["federation-upstream"] != nil && definition["federation-upstream-set"] != nil {
            throw AdminError("Validation failed\n\ncannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together\n")
        }
        if let mode = definition["ha-mode"]?.stringValue {
            let params = definition["ha-params"]
            switch mode {
            case "exactly":
                guard let n = params?.intValue, n > 0 else { throw AdminError("policy '\(name)': ha-mode exactly needs ha-params, a positive integer") }
            case "nodes":
                guard let nodes = params?.arrayValue, !nodes.isEmpty, nodes.allSatisfy({ $0.stringValue != nil }) else {
                    throw AdminError("policy '\(name)': ha-mode nodes needs ha-params, a list of node names")
                }
            default:
                if params != nil { throw AdminError("policy '\(name)': ha-params is only used with ha-mode exactly or nodes") }
            }
        } else if definition["ha-params"] != nil || definition["ha-sync-mode"] != nil {
            throw AdminError("policy '\(name)': ha-params and ha-sync-mode need ha-mode")
        }
    }

    static func validate(key: String, value: JSONValue, policy: String) throws(AdminError) {
        func fail(_ why: String) -> AdminError { AdminError("policy '\(policy)': \(key) \(why)") }
        func nonNegative() throws(AdminError) {
            guard let n = value.intValue, n >= 0 else { throw fail("must be a non-negative integer") }
        }
        func oneOf(_ options: [String]) throws(AdminError) {
            guard let s = value.stringValue, options.contains(s) else { throw fail("must be one of \(options.joined(separator: ", "))") }
        }
        func string() throws(AdminError) {
            guard value.stringValue != nil else { throw fail("must be a string") }
        }
        switch key {
        case "message-ttl", "max-length", "max-length-bytes", "delivery-limit", "max-in-memory-length",
            "max-in-memory-bytes", "ha-sync-batch-size", "target-group-size":
            try nonNegative()
        case "expires":
            guard let n = value.intValue, n > 0 else { throw fail("must be a positive integer") }
        case "overflow": try oneOf(["drop-head", "reject-publish", "reject-publish-dlx"])
        case "queue-mode": try oneOf(["default", "lazy"])
        case "ha-mode": try oneOf(["all", "exactly", "nodes"])
        case "ha-sync-mode": try oneOf(["manual", "automatic"])
        case "ha-promote-on-shutdown", "ha-promote-on-failure": try oneOf(["when-synced", "always"])
        case "ha-params": break  // checked with ha-mode
        case "dead-letter-exchange", "dead-letter-routing-key", "alternate-exchange", "queue-master-locator", "queue-leader-locator":
            try string()
        case "dead-letter-strategy": try oneOf(["at-most-once", "at-least-once"])
        case "federation-upstream", "federation-upstream-set":
            // RabbitMQ's text.
            guard value.stringValue != nil else {
                let what = key == "federation-upstream" ? "federation upstream" : "federation upstream set"
                throw AdminError("Validation failed\n\n\(FederationParameters.erlang(value)) is not a valid \(what) name\n")
            }
        default:
            throw fail("is not a recognised policy key")
        }
    }
}

/// How a queue treats publishes over its length limit.
public enum OverflowBehaviour: String, Sendable {
    case dropHead = "drop-head"
    case rejectPublish = "reject-publish"
    case rejectPublishDLX = "reject-publish-dlx"
}

/// The settings a queue runs with, from its arguments and the policies that apply to it:
/// numeric limits take the lowest of the three, other keys prefer the argument to the policy.
public struct QueueSettings: Sendable, Equatable {
    public var messageTTL: Int64?
    public var expires: Int64?
    public var maxLength: Int?
    public var maxLengthBytes: Int?
    public var overflow: OverflowBehaviour = .dropHead
    public var deadLetterExchange: String?
    public var deadLetterRoutingKey: String?
    public var maxPriority: UInt8?
    public var singleActiveConsumer = false
    /// `x-queue-mode: lazy`: keep only a few messages in memory, the rest in the store.
    public var lazy = false
    public var policyName: String?
    public var operatorPolicyName: String?
    /// Quorum queues: deliveries after which a message is dead-lettered (or dropped); nil for
    /// no limit (`x-delivery-limit`, policy `delivery-limit`; the lower wins, negative is none).
    public var deliveryLimit: Int64?
    /// Quorum queues: `x-dead-letter-strategy` / policy `dead-letter-strategy`
    /// `at-least-once` (kept until the dead-letter targets confirm). RabbitMQ 3.10 honours it
    /// only with `x-overflow: reject-publish` and a dead-letter exchange, and falls back to
    /// at-most-once otherwise; so does Warren.
    public var deadLetterAtLeastOnce = false
    /// Keys the cluster and federation issues will act on (ha-*, federation-upstream...).
    public var otherPolicyKeys: [String: JSONValue] = [:]

    public init() {}

    static func resolve(type: QueueType = .classic, arguments a: FieldTable, policy: Policy?, operatorPolicy: Policy?) -> QueueSettings {
        var s = QueueSettings()
        let p = policy?.definition ?? [:]
        let op = operatorPolicy?.definition ?? [:]
        s.policyName = policy?.name
        s.operatorPolicyName = operatorPolicy?.name
        // RabbitMQ 3.10 (rabbit_amqqueue_process:process_args_policy): for these numeric
        // settings the lowest of argument, policy and operator policy wins; for the others
        // (dead-letter-*, overflow, queue-mode) the argument wins over the policy.
        func int(_ arg: String, _ key: String) -> Int64? {
            [a[arg]?.integerValue, p[key]?.intValue, op[key]?.intValue].compactMap { $0 }.min()
        }
        s.messageTTL = int("x-message-ttl", "message-ttl")
        s.expires = int("x-expires", "expires")
        s.maxLength = int("x-max-length", "max-length").map { Int($0) }
        s.maxLengthBytes = int("x-max-length-bytes", "max-length-bytes").map { Int($0) }
        if let o = a["x-overflow"]?.stringValue ?? p["overflow"]?.stringValue, let b = OverflowBehaviour(rawValue: o) {
            s.overflow = b
        }
        s.deadLetterExchange = a["x-dead-letter-exchange"]?.stringValue ?? p["dead-letter-exchange"]?.stringValue
        s.deadLetterRoutingKey = a["x-dead-letter-routing-key"]?.stringValue ?? p["dead-letter-routing-key"]?.stringValue
        s.singleActiveConsumer = a["x-single-active-consumer"]?.boolValue ?? false
        switch type {
        case .classic:
            if let n = a["x-max-priority"]?.integerValue, n > 0 { s.maxPriority = UInt8(min(n, 255)) }
            s.lazy = (a["x-queue-mode"]?.stringValue ?? p["queue-mode"]?.stringValue) == "lazy"
        case .quorum:
            // Priorities and modes are classic queues' (RabbitMQ ignores those policy keys on
            // quorum queues); a quorum queue counts deliveries instead.
            s.deliveryLimit = int("x-delivery-limit", "delivery-limit").flatMap { $0 >= 0 ? $0 : nil }
            if s.overflow == .rejectPublishDLX { s.overflow = .dropHead }  // as RabbitMQ 3.10 falls back
            let strategy = a["x-dead-letter-strategy"]?.stringValue ?? p["dead-letter-strategy"]?.stringValue
            s.deadLetterAtLeastOnce = strategy == "at-least-once" && s.overflow == .rejectPublish && s.deadLetterExchange != nil
        }
        for (k, v) in p where k.hasPrefix("ha-") || k.hasPrefix("federation-") || k.hasSuffix("-locator") {
            s.otherPolicyKeys[k] = v
        }
        return s
    }
}

extension Broker {
    /// The policy of highest priority that matches an object (ties: the first name in order).
    func matchingPolicy(in set: [String: [String: Policy]], vhost: String, name: String, queueType: QueueType?) -> Policy? {
        var best: Policy?
        for p in (set[vhost] ?? [:]).values where p.applyTo.applies(toQueueOf: queueType) && CompiledPattern(p.pattern).matches(name) {
            if best == nil || p.priority > best!.priority || (p.priority == best!.priority && p.name < best!.name) { best = p }
        }
        return best
    }

    /// Adds or replaces a policy (or operator policy) and applies it to existing objects at once.
    public func setPolicy(_ policy: Policy, operator isOperator: Bool = false) throws(AdminError) {
        guard vhosts[policy.vhost] != nil else { throw AdminError("no vhost '\(policy.vhost)'") }
        try policy.validate(operator: isOperator)
        if isOperator {
            operatorPolicies[policy.vhost, default: [:]][policy.name] = policy
            journal(Self.putChange("operator_policies", Self.json(policy)))
        } else {
            policies[policy.vhost, default: [:]][policy.name] = policy
            journal(Self.putChange("policies", Self.json(policy)))
        }
        vhosts[policy.vhost]?.applyPolicies()
    }

    public func clearPolicy(vhost: String, name: String, operator isOperator: Bool = false) throws(AdminError) {
        let removed = isOperator ? operatorPolicies[vhost]?.removeValue(forKey: name) : policies[vhost]?.removeValue(forKey: name)
        guard removed != nil else { throw AdminError("no policy '\(name)' in vhost '\(vhost)'") }
        journal(Self.deleteChange(isOperator ? "operator_policy" : "policy", ["vhost": .string(vhost), "name": .string(name)]))
        vhosts[vhost]?.applyPolicies()
    }
}
