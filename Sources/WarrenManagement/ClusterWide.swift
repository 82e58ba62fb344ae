public import WarrenCore

/// Views that span the cluster: connections and channels live on the node the client is
/// connected to, and the API of any node lists and closes those of every node (as RabbitMQ's
/// does). The node shell asks the other members with the same request (`forwarded`) and merges
/// what they answer; the API core itself stays one node's.
public enum ClusterScope: Sendable, Equatable {
    /// This node's answer is the whole answer.
    case local
    /// A list: every member's items, merged, then sorted and paged as one.
    case list
    /// One object that lives on one node: this node's answer unless it has none (404).
    case find
    /// Queues: each queue as its home node reports it (counts, consumers, rates live there).
    case queues
    /// One queue (its view, basic.get, purge): answered by its home node.
    case queue(vhost: String, name: String)
}

extension ManagementRequest {
    /// The query parameter that marks a request one node forwarded to another (answered for
    /// that node alone).
    public static let forwardedMark = "warren-forwarded"

    public var isForwarded: Bool { query[Self.forwardedMark] != nil }

    /// Which views span the cluster.
    public var clusterScope: ClusterScope {
        guard !isForwarded, let segments = try? ManagementAPI.segments(path), segments.first == "api" else { return .local }
        let p = Array(segments.dropFirst())
        switch (method, p.count, p.first) {
        case ("GET", 1, "connections"), ("GET", 1, "channels"): return .list
        // Each node lists the consumers of its own queues (another node's as a stand-in that
        // names its node), so the merged list has every consumer once.
        case ("GET", 1, "consumers"), ("GET", 2, "consumers"): return .list
        // Each node lists the federation links it runs; a restart goes to the node running it.
        case ("GET", _, "federation-links"): return .list
        case ("DELETE", 6, "federation-links"): return .find
        case ("GET", 3, "vhosts") where p[2] == "connections" || p[2] == "channels": return .list
        case ("GET", 3, "connections") where p[2] == "channels": return .list
        case ("GET", 2, "connections"), ("DELETE", 2, "connections"), ("GET", 2, "channels"): return .find
        case ("GET", 1, "queues"), ("GET", 2, "queues"): return .queues
        case ("GET", 3, "queues"): return .queue(vhost: p[1], name: p[2])
        // Each member of a replicated queue's group tells its own Raft state.
        case ("GET", 4, "queues") where p[3] == "quorum-status": return .list
        case ("POST", 4, "queues") where p[3] == "get": return .queue(vhost: p[1], name: p[2])
        case ("DELETE", 4, "queues") where p[3] == "contents": return .queue(vhost: p[1], name: p[2])
        default: return .local
        }
    }

    /// The request as another node receives it.
    public var forwarded: JSONValue {
        var q = query.mapValues { JSONValue.string($0) }
        q[Self.forwardedMark] = .string("1")
        var o: [String: JSONValue] = [
            "method": .string(method), "path": .string(path), "query": .object(q), "peer_loopback": .bool(peerIsLoopback),
            "body": .string(String(decoding: body, as: UTF8.self)),
        ]
        if let authorization { o["authorization"] = .string(authorization) }
        if let reason { o["reason"] = .string(reason) }
        return .object(o)
    }

    public init?(forwarded j: JSONValue) {
        guard let method = j["method"]?.stringValue, let path = j["path"]?.stringValue else { return nil }
        var query: [String: String] = [:]
        for (k, v) in j["query"]?.objectValue ?? [:] { if let s = v.stringValue { query[k] = s } }
        self.init(
            method: method, path: path, query: query, authorization: j["authorization"]?.stringValue,
            body: Array((j["body"]?.stringValue ?? "").utf8), peerIsLoopback: j["peer_loopback"]?.boolValue ?? false,
            reason: j["reason"]?.stringValue)
    }
}

extension ManagementResponse {
    /// A list's items before sorting and paging (what a forwarded list request answers).
    public var listItems: [JSONValue]? {
        if case .list(let items, _, _) = pending { return items }
        return nil
    }

    /// Queues as their home nodes report them: an item of this list for a queue whose home is
    /// another node is replaced by that node's item, when it answered (`theirs` holds only
    /// items from their queues' home nodes).
    public func replacingHomed(_ theirs: [JSONValue], me: String) -> ManagementResponse {
        guard case .list(let items, let query, let order) = pending, !theirs.isEmpty else { return self }
        func key(_ j: JSONValue) -> String { (j["vhost"]?.stringValue ?? "") + "\u{0}" + (j["name"]?.stringValue ?? "") }
        var byKey: [String: JSONValue] = [:]
        for t in theirs where t["node"]?.stringValue != me { byKey[key(t)] = t }
        var r = self
        r.pending = .list(items.map { $0["node"]?.stringValue != me ? byKey[key($0)] ?? $0 : $0 }, query, order: order)
        return r
    }

    /// The same list with other nodes' items added.
    public func merging(_ more: [JSONValue]) -> ManagementResponse {
        guard case .list(let items, let query, let order) = pending, !more.isEmpty else { return self }
        var r = self
        r.pending = .list(items + more, query, order: order)
        return r
    }

    /// A finished response as another node sends it back.
    public var forwardedJSON: JSONValue {
        .object([
            "status": .int(Int64(status)), "content_type": .string(contentType), "body": .string(String(decoding: body, as: UTF8.self)),
            "headers": .array(headers.map { .array([.string($0.0), .string($0.1)]) }),
        ])
    }

    public init?(forwarded j: JSONValue) {
        guard let status = j["status"]?.intValue.map({ Int($0) }), let contentType = j["content_type"]?.stringValue else { return nil }
        let headers = (j["headers"]?.arrayValue ?? []).compactMap { h -> (String, String)? in
            guard let a = h.arrayValue, a.count == 2, let k = a[0].stringValue, let v = a[1].stringValue else { return nil }
            return (k, v)
        }
        self.init(status: status, contentType: contentType, headers: headers, body: Array((j["body"]?.stringValue ?? "").utf8))
    }
}
