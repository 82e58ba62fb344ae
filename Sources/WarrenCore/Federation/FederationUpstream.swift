/// One upstream as a link uses it: a `federation-upstream` parameter, with an upstream set's
/// entry laid over it. Defaults are RabbitMQ 3.10's (docs/federation.md lists them).
public struct FederationUpstream: Sendable, Hashable {
    public enum AckMode: String, Sendable { case onConfirm = "on-confirm", onPublish = "on-publish", noAck = "no-ack" }

    /// The parameter's name.
    public var name: String
    /// One is picked at random at each connection attempt, as RabbitMQ does.
    public var uris: [String]
    public var prefetchCount = 1000
    /// Seconds to wait after a failure before connecting again.
    public var reconnectDelay: Double = 5
    public var ackMode = AckMode.onConfirm
    public var trustUserId = false
    /// The upstream exchange or queue; nil: the downstream's own name.
    public var exchange: String?
    public var queue: String?
    public var maxHops = 1
    /// `x-expires` and `x-message-ttl` of the queue an exchange link declares upstream.
    public var expires: Int64?
    public var messageTTL: Int64?
    /// `x-queue-type` of that queue (newer than RabbitMQ 3.10).
    public var queueType: String?
    public var consumerTag: String?
    public var bindNowait = false
    /// "never": an exchange link leaves its upstream queue and exchange in place when it stops
    /// for good (policy removed); "default" deletes them.
    public var cleanupNever = false

    public init(name: String, uris: [String]) {
        self.name = name
        self.uris = uris
    }

    /// Reads a parameter value that `FederationParameters.validate` accepted, with `overrides`
    /// (a set's entry) laid over it.
    public init?(name: String, value: JSONValue, overrides: [String: JSONValue] = [:]) {
        guard var o = value.objectValue else { return nil }
        for (k, v) in overrides where k != "upstream" { o[k] = v }
        let uris: [String]
        switch o["uri"] {
        case .string(let s): uris = [s]
        case .array(let a): uris = a.compactMap(\.stringValue)
        default: return nil
        }
        guard !uris.isEmpty else { return nil }
        self.init(name: name, uris: uris)
        func number(_ k: String) -> Double? {
            switch o[k] {
            case .int(let i): return Double(i)
            case .double(let d): return d
            default: return nil
            }
        }
        if let n = number("prefetch-count") { prefetchCount = max(1, min(65_535, Int(n))) }
        if let n = number("reconnect-delay") { reconnectDelay = max(0, n) }
        if let s = o["ack-mode"]?.stringValue, let m = AckMode(rawValue: s) { ackMode = m }
        trustUserId = o["trust-user-id"]?.boolValue ?? false
        exchange = o["exchange"]?.stringValue
        queue = o["queue"]?.stringValue
        if let n = number("max-hops") { maxHops = max(1, Int(n)) }
        expires = number("expires").map { Int64($0) }
        messageTTL = number("message-ttl").map { Int64($0) }
        queueType = o["queue-type"]?.stringValue
        consumerTag = o["consumer-tag"]?.stringValue
        bindNowait = o["bind-nowait"]?.boolValue ?? false
        cleanupNever = o["resource-cleanup-mode"]?.stringValue == "never"
    }
}

/// What a policy asks of an exchange or queue: one upstream, or a set of them ("all": every
/// upstream of the vhost).
public enum FederationSelection: Sendable, Hashable {
    case upstream(String)
    case set(String)

    init?(policyDefinition d: [String: JSONValue]) {
        if let u = d["federation-upstream"]?.stringValue {
            self = .upstream(u)
        } else if let s = d["federation-upstream-set"]?.stringValue {
            self = .set(s)
        } else {
            return nil
        }
    }
}
