import AMQPProtocol
import Foundation
import WarrenCore

/// Which handler answers which path and method. Paths are matched on decoded segments, so a
/// vhost or name containing `/` (sent as %2F) is one segment.
extension ManagementAPI {
    func route(_ p: [String], _ r: ManagementRequest, _ caller: Caller, _ node: NodeStatus) throws -> ManagementResponse {
        let m = r.method
        let query = try ListQuery(r.query)
        let list = { (items: [JSONValue]) throws -> ManagementResponse in .list(items, query) }
        switch (m, p.count, p.first ?? "") {
        case ("GET", 1, "overview"): return .json(overview(caller, node))
        case ("GET", 1, "whoami"):
            return .json(.object(["name": .string(caller.user.name), "tags": .array(caller.user.tags.map(JSONValue.string))]))
        case ("GET", 1, "extensions"): return .json(.array([]))
        case ("GET", _, "nodes"):
            try require(.monitoring, caller)
            let all = nodesJSON(node)
            if p.count == 1 { return try list(all) }
            guard p.count == 2, let one = all.first(where: { $0["name"]?.stringValue == p[1] }) else { throw APIError.notFound }
            return .json(one)
        case ("GET", 1, "cluster-name"):
            return .json(.object(["name": .string(broker.clusterName)]))
        case ("PUT", 1, "cluster-name"):
            try require(.administrator, caller)
            guard let name = try object(r)["name"]?.stringValue, !name.isEmpty else {
                throw APIError(status: 400, error: "bad_request", reason: "expected {\"name\": \"...\"}")
            }
            return try commit(.setClusterName(name)) { _ in Self.noContent }
        case ("POST", 2, "warren") where p[1] == "grow" || p[1] == "shrink":
            try require(.administrator, caller)
            return try changeMembership(grow: p[1] == "grow", r)
        case ("POST", 2, "warren") where p[1] == "rebalance":
            try require(.administrator, caller)
            return try rebalance(r)
        case (_, _, "warren") where p.count >= 2:
            return try nodeAction(p, r, caller)
        case (_, _, "connections"): return try connections(p, r, caller, list)
        case ("GET", _, "channels"):
            if p.count == 1 { return try list(visibleConnections(caller).flatMap(channels(of:)).map { json(channel: $0) }) }
            guard p.count == 2, let ch = visibleConnections(caller).flatMap(channels(of:)).first(where: { Self.channelName($0) == p[1] })
            else { throw APIError.notFound }
            return .json(json(channel: ch))
        case ("GET", _, "consumers"):
            let vhosts = p.count == 2 ? [try visibleVHost(p[1], caller)] : visibleVHosts(caller)
            guard p.count <= 2 else { throw APIError.notFound }
            return try list(vhosts.flatMap { v in
                v.queues.values.sorted { $0.name < $1.name }.flatMap { $0.consumers.map { json(consumer: $0) } }
            })
        case (_, _, "exchanges"): return try exchanges(p, r, caller, list)
        case (_, _, "queues"): return try queues(p, r, caller, list)
        case (_, _, "bindings"): return try bindings(p, r, caller, list)
        case (_, _, "vhosts"): return try vhosts(p, r, caller, list)
        case (_, _, "users"): return try users(p, r, caller, list)
        case (_, _, "permissions"): return try permissions(p, r, caller, list, topic: false)
        case (_, _, "topic-permissions"): return try permissions(p, r, caller, list, topic: true)
        case (_, _, "policies"): return try policies(p, r, caller, list, operator: false)
        case (_, _, "operator-policies"): return try policies(p, r, caller, list, operator: true)
        case (_, _, "parameters"): return try parameters(p, r, caller, list)
        case (_, _, "global-parameters"): return try globalParameters(p, r, caller, list)
        case (_, _, "definitions"): return try definitions(p, r, caller)
        case (_, _, "federation-links"): return try federationLinks(p, r, caller, list)
        case ("GET", 3, "health") where p[1] == "checks" && (p[2] == "alarms" || p[2] == "local-alarms"):
            return alarmsCheck(local: p[2] == "local-alarms")
        case ("GET", 3, "health") where p[1] == "checks" && p[2] == "node-is-quorum-critical":
            try require(.monitoring, caller)
            var response = ManagementResponse(status: 202)
            response.nodeAction = .quorumCritical(quorumCriticalQueues())
            return response
        case ("GET", 2, "aliveness-test"): return try aliveness(p[1], caller)
        case ("GET", _, "healthchecks") where p.count >= 2 && p[1] == "node":
            // RabbitMQ 3.x's deprecated node health check, still used by clients' suites
            // (amqpstorm): ok while the node runs; another node's name is 404.
            guard p.count == 2 || (p.count == 3 && p[2] == nodeName) else { throw APIError.notFound }
            return .json(.object(["status": .string("ok")]))
        default:
            if ["overview", "whoami", "extensions", "nodes", "channels", "consumers", "health", "aliveness-test", "healthchecks"].contains(p.first ?? "")
                && knownPath(p)
            {
                throw APIError.methodNotAllowed
            }
            throw APIError.notFound
        }
    }

    private func knownPath(_ p: [String]) -> Bool {
        switch p.first ?? "" {
        case "overview", "whoami", "extensions": return p.count == 1
        case "aliveness-test": return p.count == 2
        case "health": return p.count == 3
        case "healthchecks": return p.count >= 2 && p.count <= 3 && p[1] == "node"
        default: return p.count <= 2
        }
    }

    /// The body of a PUT/POST as a JSON object (400 otherwise).
    func object(_ r: ManagementRequest) throws(APIError) -> [String: JSONValue] {
        guard case .object(let o) = try r.json() else { throw .badRequest("not_json") }
        return o
    }

    static let created = ManagementResponse(status: 201)
    static let noContent = ManagementResponse(status: 204)

    /// Booleans in bodies come as JSON booleans or as the strings "true"/"false" (the web UI's
    /// forms, and rabbitmqadmin, send strings).
    static func bool(_ v: JSONValue?, default d: Bool) -> Bool {
        switch v {
        case .bool(let b)?: return b
        case .string(let s)?: return s == "true"
        default: return d
        }
    }

    static func tagList(_ v: JSONValue?) -> [String] {
        switch v {
        case .string(let s)?: return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case .array(let a)?: return a.compactMap(\.stringValue)
        default: return []
        }
    }
}
