public import AMQPProtocol

/// Names, arguments and headers of federation as RabbitMQ's plugin (3.10) makes them, so that a
/// Warren link and a RabbitMQ broker, either way round, understand each other. Pure functions;
/// the links (WarrenFederation) and the `x-federation-upstream` exchange type use them.
public enum Federation {
    /// The header every federated message carries: where it has been, newest first.
    public static let receivedFromHeader = "x-received-from"
    /// The argument of a binding an exchange link made upstream.
    public static let boundFromArgument = "x-bound-from"
    static let purposeArgument: (String, FieldValue) = ("x-internal-purpose", .string("federation"))

    // MARK: exchange links, upstream side

    /// The queue an exchange link consumes upstream: `federation: X -> CLUSTER`.
    public static func upstreamQueueName(exchange: String, downstreamCluster: String) -> String {
        "federation: \(exchange) -> \(downstreamCluster)"
    }

    /// The internal exchange between the upstream exchange and that queue; its suffix ("A" or
    /// "B") changes at each connection, so bindings made while the link was down are replaced
    /// whole.
    public static func internalExchangeName(exchange: String, downstreamCluster: String, suffix: String) -> String {
        "\(upstreamQueueName(exchange: exchange, downstreamCluster: downstreamCluster)) \(suffix)"
    }

    public static func upstreamQueueArguments(_ u: FederationUpstream) -> FieldTable {
        var a = FieldTable()
        if let e = u.expires { a["x-expires"] = .int64(e) }
        if let t = u.messageTTL { a["x-message-ttl"] = .int64(t) }
        if let qt = u.queueType, qt != "classic" { a["x-queue-type"] = .string(qt) }
        a[purposeArgument.0] = purposeArgument.1
        return a
    }

    public static func internalExchangeArguments(downstreamCluster: String, downstreamVhost: String, maxHops: Int) -> FieldTable {
        [
            "x-downstream-name": .string(downstreamCluster), "x-downstream-vhost": .string(downstreamVhost),
            purposeArgument.0: purposeArgument.1, "x-max-hops": .int64(Int64(maxHops)),
        ]
    }

    /// The arguments of the upstream binding for a downstream binding, or nil when it must not
    /// go further (it came from downstream more hops ago than allowed). A binding that was
    /// itself propagated (it has `x-bound-from`) goes on with one hop fewer.
    public static func upstreamBindingArguments(
        _ downstream: FieldTable, downstreamCluster: String, downstreamVhost: String, exchange: String, suffix: String, maxHops: Int
    ) -> FieldTable? {
        var args = downstream
        var prior: [FieldValue] = []
        var hops = maxHops
        if case .array(let list)? = downstream[boundFromArgument] {
            prior = list
            if let first = list.first?.tableValue, let h = first["hops"]?.integerValue { hops = min(hops, Int(h) - 1) }
        }
        guard hops > 0 else { return nil }
        let mine: FieldTable = [
            "cluster-name": .string(downstreamCluster), "exchange": .string("\(downstreamVhost):\(exchange) \(suffix)"),
            "hops": .int64(Int64(hops)), "vhost": .string(downstreamVhost),
        ]
        args[boundFromArgument] = .array([.table(mine)] + prior)
        return args
    }

    // MARK: loop detection

    /// What the `x-federation-upstream` exchange type and a receiving link both check: a message
    /// goes on only while it has been through fewer than `maxHops` links and has not been in the
    /// downstream broker's vhost already.
    public static func shouldForward(headers: FieldTable?, maxHops: Int, downstreamCluster: String, downstreamVhost: String) -> Bool {
        guard case .array(let list)? = headers?[receivedFromHeader] else { return true }
        if list.count >= maxHops { return false }
        for entry in list {
            guard let t = entry.tableValue else { continue }
            if t["cluster-name"]?.stringValue == downstreamCluster && t["vhost"]?.stringValue == downstreamVhost { return false }
        }
        return true
    }

    // MARK: messages a link publishes downstream

    /// Headers of a message an exchange link received: its `x-received-from` with this hop first.
    public static func exchangeLinkHeaders(
        _ headers: FieldTable?, uri: String, exchange: String, redelivered: Bool, upstreamCluster: String, upstreamVhost: String
    ) -> FieldTable {
        let entry: FieldTable = [
            "uri": .string(redacted(uri: uri)), "exchange": .string(exchange), "redelivered": .boolean(redelivered),
            "cluster-name": .string(upstreamCluster), "vhost": .string(upstreamVhost),
        ]
        return prepend(entry, to: headers ?? FieldTable())
    }

    /// Headers of a message a queue link received: `x-received-from` with a `visit-count` (how
    /// many times it has come from that queue), and its original exchange and routing key
    /// (kept from its first hop).
    public static func queueLinkHeaders(
        _ headers: FieldTable?, uri: String, queue: String, redelivered: Bool, exchange: String, routingKey: String
    ) -> FieldTable {
        var h = headers ?? FieldTable()
        let shown = redacted(uri: uri)
        var visits: Int64 = 1
        if case .array(var list)? = h[receivedFromHeader] {
            if let i = list.firstIndex(where: { $0.tableValue?["uri"]?.stringValue == shown && $0.tableValue?["queue"]?.stringValue == queue }) {
                visits = (list[i].tableValue?["visit-count"]?.integerValue ?? 0) + 1
                list.remove(at: i)
                h[receivedFromHeader] = .array(list)
            }
        }
        if h["x-original-exchange"] == nil { h["x-original-exchange"] = .string(exchange) }
        if h["x-original-routing-key"] == nil { h["x-original-routing-key"] = .string(routingKey) }
        let entry: FieldTable = [
            "uri": .string(shown), "queue": .string(queue), "redelivered": .boolean(redelivered), "visit-count": .int64(visits),
        ]
        return prepend(entry, to: h)
    }

    static func prepend(_ entry: FieldTable, to headers: FieldTable) -> FieldTable {
        var h = headers
        var list: [FieldValue] = []
        if case .array(let prior)? = h[receivedFromHeader] { list = prior }
        h[receivedFromHeader] = .array([.table(entry)] + list)
        return h
    }

    /// A URI as links show it: without user name and password (they never appear in headers,
    /// logs, the API or the CLI).
    public static func redacted(uri: String) -> String {
        let chars = Array(uri)
        guard let colon = chars.firstIndex(of: ":"), chars.count > colon + 2, chars[colon + 1] == "/", chars[colon + 2] == "/" else { return uri }
        let start = colon + 3
        let authorityEnd = chars[start...].firstIndex(where: { $0 == "/" || $0 == "?" }) ?? chars.count
        guard let at = chars[start..<authorityEnd].lastIndex(of: "@") else { return uri }
        return String(chars[..<start]) + String(chars[(at + 1)...])
    }
}
