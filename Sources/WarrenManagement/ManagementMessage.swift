public import WarrenCore

/// An HTTP request as the API core sees it: the shell (Hummingbird in WarrenNode) fills it in.
/// `path` is the raw, still percent-encoded path: RabbitMQ's paths carry the vhost `/` as `%2F`,
/// so segments are split first and decoded one by one.
public struct ManagementRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var authorization: String?
    public var body: [UInt8]
    /// Whether the client is on a loopback address (`guest` may log in from there only).
    public var peerIsLoopback: Bool
    /// The `X-Reason` header (DELETE of a connection).
    public var reason: String?
    /// The body parsed as JSON, done by the shell off the broker loop (`parseBody()`): a large
    /// definitions file takes seconds to parse, which must not hold AMQP traffic.
    var parsed: Result<JSONValue, APIError>?

    public init(
        method: String, path: String, query: [String: String] = [:], authorization: String? = nil, body: [UInt8] = [],
        peerIsLoopback: Bool = true, reason: String? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.authorization = authorization
        self.body = body
        self.peerIsLoopback = peerIsLoopback
        self.reason = reason
    }
}

public struct ManagementResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Work left for `finish()`, off the broker loop: a list to sort, filter, page and trim to
    /// columns, and JSON to serialize. Listing 10,000 queues builds their JSON on the loop
    /// (it reads the broker) but spends as long again sorting and writing it out; that part
    /// need not hold up AMQP traffic.
    var pending: Pending?
    /// Set while the API has more slices of this answer to do on the broker loop: the shell
    /// calls `ManagementAPI.resume(_:)` with it until it is nil (see `SlicedWork`).
    public internal(set) var continuation: UInt64?
    /// An operation the node shell carries out; it answers in place of this response.
    public internal(set) var nodeAction: NodeAction?

    enum Pending: Sendable {
        case json(JSONValue)
        /// Items, the query, and the fields they are ordered by before the query's own sort
        /// (listings are built unsorted on the loop and put in order here).
        case list([JSONValue], ListQuery, order: [String] = [])
        /// An unordered export, and the vhost it is limited to (RabbitMQ's per-vhost export
        /// leaves the vhost fields out).
        case definitions(JSONValue, vhost: String?)
    }

    public init(status: Int, contentType: String = "application/json", headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }

    public static func json(_ value: JSONValue, status: Int = 200) -> ManagementResponse {
        var r = ManagementResponse(status: status)
        r.pending = .json(value)
        return r
    }

    static func list(_ items: [JSONValue], _ query: ListQuery, order: [String] = []) -> ManagementResponse {
        var r = ManagementResponse(status: 200)
        r.pending = .list(items, query, order: order)
        return r
    }

    /// Does the pending work: the body is ready to send after this.
    public func finish() -> ManagementResponse {
        var r = self
        r.pending = nil
        switch pending {
        case nil: return self
        case .json(let v): r.body = JSONWriter.bytes(v)
        case .definitions(let all, let vhost):
            r.body = JSONWriter.bytes(Self.ordered(all, vhost: vhost))
        case .list(var items, let query, let order):
            if !order.isEmpty { items = ListQuery.sorted(items, by: order) }
            do {
                r.body = JSONWriter.bytes(try query.apply(items))
            } catch {
                return error.response
            }
        }
        return r
    }

    static func ordered(_ all: JSONValue, vhost: String?) -> JSONValue {
        guard case .object(var o) = all else { return all }
        for (key, order) in [("queues", DefinitionsExport.queueOrder), ("exchanges", DefinitionsExport.queueOrder),
                             ("bindings", DefinitionsExport.bindingOrder)] {
            o[key] = .array(DefinitionsExport.ordered(o[key]?.arrayValue ?? [], by: order))
        }
        guard let vhost else { return .object(o) }
        var out: [String: JSONValue] = [:]
        out["rabbit_version"] = o["rabbit_version"]
        for key in ["parameters", "policies", "queues", "exchanges", "bindings"] {
            let items = (o[key]?.arrayValue ?? []).compactMap(\.objectValue).filter { $0["vhost"]?.stringValue == vhost }
            out[key] = .array(items.map { item in .object(item.filter { $0.key != "vhost" }) })
        }
        return .object(out)
    }

    /// The body as text (tests, logs).
    public var text: String { String(decoding: body, as: UTF8.self) }
}

extension ManagementRequest {
    /// Parses a JSON body now (call it off the broker loop); the API then uses the result.
    public mutating func parseBody() {
        guard method == "PUT" || method == "POST" else { return }
        do throws(APIError) {
            parsed = .success(try JSONWriter.parse(body))
        } catch {
            parsed = .failure(error)
        }
    }

    /// The body as JSON: parsed by the shell, or now (tests call the API directly).
    func json() throws(APIError) -> JSONValue {
        if let parsed { return try parsed.get() }
        return try JSONWriter.parse(body)
    }
}

/// An answer other than 2xx, with RabbitMQ's `{"error": ..., "reason": ...}` body.
struct APIError: Error {
    let status: Int
    let error: String
    let reason: JSONValue
    var headers: [(String, String)] = []
    var emptyBody = false

    init(status: Int, error: String, reason: String, headers: [(String, String)] = [], emptyBody: Bool = false) {
        self.status = status
        self.error = error
        self.reason = .string(reason)
        self.headers = headers
        self.emptyBody = emptyBody
    }

    /// RabbitMQ gives some reasons as a list (`["no_such_user", "bob"]`).
    init(status: Int, error: String, reasonList: [String]) {
        self.status = status
        self.error = error
        self.reason = .array(reasonList.map(JSONValue.string))
    }

    static let notFound = APIError(status: 404, error: "Object Not Found", reason: "Not Found")
    static func badRequest(_ reason: String) -> APIError { APIError(status: 400, error: "bad_request", reason: reason) }
    static func badRequest(_ reason: [String]) -> APIError { APIError(status: 400, error: "bad_request", reasonList: reason) }
    static func loginFailed(_ reason: String = "Login failed") -> APIError {
        APIError(status: 401, error: "not_authorized", reason: reason)
    }
    /// Authenticated, but the user's tags or permissions do not allow it: 403 (RabbitMQ 3.10
    /// answers 401 here; docs/management.md explains the choice).
    static func forbidden(_ reason: String) -> APIError { APIError(status: 403, error: "not_authorised", reason: reason) }
    static let methodNotAllowed = APIError(status: 405, error: "", reason: "", emptyBody: true)

    var response: ManagementResponse {
        if emptyBody { return ManagementResponse(status: status, headers: headers) }
        return ManagementResponse(
            status: status, headers: headers,
            body: JSONWriter.bytes(.object(["error": .string(error), "reason": reason])))
    }
}
