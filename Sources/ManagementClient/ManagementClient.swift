public import Foundation

/// The management API over HTTP, with the answers warrenctl and warren-cluster need: parsed JSON or a
/// `CtlError` carrying the exit code.
public struct ManagementClient: Sendable {
    public let base: String
    let authorization: String
    /// Seconds a request may take.
    public var timeout: TimeInterval = 60

    let host: String
    let port: Int

    public init(host: String, port: Int, user: String, password: String) {
        self.host = host
        self.port = port
        base = "http://\(host):\(port)"
        authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    /// A path segment as the API wants it (the vhost `/` is %2F).
    public static func segment(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    /// The status and parsed JSON body (nil if empty or not JSON), whatever the status.
    public func request(_ method: String, _ path: String, body: Any? = nil, headers: [String: String] = [:]) throws -> (status: Int, json: Any?) {
        var all = [("Authorization", authorization), ("Accept", "application/json")] + headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        var payload: Data?
        if let body {
            payload = try body as? Data ?? JSONSerialization.data(withJSONObject: body)
            all.append(("Content-Type", "application/json"))
        }
        let reply: (status: Int, body: Data)
        do {
            reply = try HTTPExchange.perform(host: host, port: port, method: method, path: path, headers: all, body: payload, timeout: timeout)
        } catch {
            throw CtlError.unavailable("cannot reach the management API at \(base): \(error)")
        }
        let parsed = reply.body.isEmpty ? nil : try? JSONSerialization.jsonObject(with: reply.body, options: [.fragmentsAllowed])
        return (reply.status, parsed ?? (reply.body.isEmpty ? nil : String(decoding: reply.body, as: UTF8.self)))
    }

    public func call(_ method: String, _ path: String, body: Any? = nil, headers: [String: String] = [:]) throws -> Any? {
        let (code, parsed) = try request(method, path, body: body, headers: headers)
        switch code {
        case 200..<300: return parsed is String ? nil : parsed
        case 401, 403:
            let reason = (parsed as? [String: Any])?["reason"] as? String ?? "not authorised"
            throw CtlError.noPermission("\(reason) (HTTP \(code))")
        case 404: throw CtlError.notFound("not found: \(method) \(path)")
        default:
            let reason = (parsed as? [String: Any])?["reason"] as? String ?? (parsed as? String ?? "")
            throw CtlError.dataError("\(reason) (HTTP \(code))")
        }
    }

    public func list(_ path: String) throws -> [[String: Any]] {
        try call("GET", path) as? [[String: Any]] ?? []
    }
}

/// Failures with rabbitmqctl's exit codes (sysexits.h).
public enum CtlError: Error {
    case usage(String)
    case unavailable(String)
    case noPermission(String)
    case notFound(String)
    case dataError(String)

    public var exitCode: Int32 {
        switch self {
        case .usage: return 64
        case .dataError: return 65
        case .notFound: return 65
        case .unavailable: return 69
        case .noPermission: return 77
        }
    }

    public var message: String {
        switch self {
        case .usage(let m), .unavailable(let m), .noPermission(let m), .notFound(let m), .dataError(let m): return m
        }
    }
}
