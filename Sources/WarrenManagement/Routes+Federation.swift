import WarrenCore

/// `/api/federation-links[/VHOST][/state/down]` and the restart endpoint, as RabbitMQ's
/// rabbitmq_federation_management answers them. Each node lists the links it runs; in a
/// cluster the lists of every member are merged (ClusterWide.swift).
extension ManagementAPI {
    func federationLinks(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ list: ([JSONValue]) throws -> ManagementResponse) throws
        -> ManagementResponse
    {
        // DELETE /api/federation-links/vhost/VHOST/ID/NODE/restart
        if r.method == "DELETE" {
            guard p.count == 6, p[1] == "vhost", p[5] == "restart" else { throw APIError.notFound }
            try require(.monitoring, caller)
            _ = try visibleVHost(p[2], caller)
            guard p[4] == nodeName, broker.federationLinks[p[3]]?.spec.vhost == p[2], broker.restartFederationLink?(p[3]) == true else {
                throw APIError.notFound
            }
            return Self.noContent
        }
        guard r.method == "GET" else { throw APIError.methodNotAllowed }
        var rest = Array(p.dropFirst())
        var onlyDown = false
        if rest.count >= 2, rest[rest.count - 2] == "state", rest[rest.count - 1] == "down" {
            onlyDown = true
            rest.removeLast(2)
        }
        guard rest.count <= 1 else { throw APIError.notFound }
        let vhosts = rest.count == 1 ? [try visibleVHost(rest[0], caller).name] : visibleVHosts(caller).map(\.name)
        let wanted = Set(vhosts)
        let links = broker.federationLinks.values
            .filter { wanted.contains($0.spec.vhost) && (!onlyDown || $0.state != .running) }
            .sorted { ($0.spec.vhost, $0.spec.name, $0.spec.upstream.name) < ($1.spec.vhost, $1.spec.name, $1.spec.upstream.name) }
        return try list(links.map(Self.json(link:)))
    }

    static func json(link s: FederationLinkStatus) -> JSONValue {
        var o: [String: JSONValue] = [
            "node": .string(s.node), "vhost": .string(s.spec.vhost), "id": .string(s.spec.id), "type": .string(s.spec.kind.rawValue),
            "upstream": .string(s.spec.upstream.name), "status": .string(s.state.rawValue),
            "uri": .string(s.uri ?? Federation.redacted(uri: s.spec.upstream.uris.first ?? "")),
            "timestamp": .string(Self.linkTimestamp(s.since)),
        ]
        switch s.spec.kind {
        case .exchange:
            o["exchange"] = .string(s.spec.name)
            o["upstream_exchange"] = .string(s.spec.upstreamName)
        case .queue:
            o["queue"] = .string(s.spec.name)
            o["upstream_queue"] = .string(s.spec.upstreamName)
            o["consumer_tag"] = .string(s.spec.consumerTag)
        }
        if let e = s.error { o["error"] = .string(e) }
        if let c = s.localConnection, s.state == .running { o["local_connection"] = .string(c) }
        return .object(o)
    }

    /// "2026-12-06 21:04:36" (UTC), RabbitMQ's format for a link's timestamp.
    static func linkTimestamp(_ ms: Int64) -> String {
        let secs = ms / 1000
        let days = secs >= 0 ? secs / 86_400 : (secs - 86_399) / 86_400
        let t = secs - days * 86_400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(y)-\(two(m))-\(two(d)) \(two(t / 3600)):\(two(t % 3600 / 60)):\(two(t % 60))"
    }
}
