public import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The management API over HTTP, with the answers warrenctl and warren-cluster need: parsed JSON or a
/// `CtlError` carrying the exit code.
public struct ManagementClient: Sendable {
    public let base: String
    let authorization: String
    /// Seconds a request may take.
    public var timeout: TimeInterval = 60

    public init(host: String, port: Int, user: String, password: String) {
        base = "http://\(host):\(port)"
        authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    /// A path segment as the API wants it (the vhost `/` is %2F).
    public static func segment(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    public func call(_ method: String, _ path: String, body: Any? = nil, headers: [String: String] = [:]) throws -> Any? {
        guard let url = URL(string: base + path) else { throw CtlError.usage("bad address \(base + path)") }
        var req = URLRequest(url: url, timeoutInterval: timeout)
        req.httpMethod = method
        req.setValue(authorization, forHTTPHeaderField: "Authorization")
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        if let body {
            req.httpBody = try body as? Data ?? JSONSerialization.data(withJSONObject: body)
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: req) { data, response, error in
            box.set(data, (response as? HTTPURLResponse)?.statusCode, error)
            done.signal()
        }.resume()
        done.wait()
        let (data, status, error) = box.get()
        if let error {
            throw CtlError.unavailable("cannot reach the management API at \(base): \(error.localizedDescription)")
        }
        let code = status ?? 0
        let parsed = data.flatMap { $0.isEmpty ? nil : try? JSONSerialization.jsonObject(with: $0, options: [.fragmentsAllowed]) }
        switch code {
        case 200..<300: return parsed
        case 401, 403:
            let reason = (parsed as? [String: Any])?["reason"] as? String ?? "not authorised"
            throw CtlError.noPermission("\(reason) (HTTP \(code))")
        case 404: throw CtlError.notFound("not found: \(method) \(path)")
        default:
            let reason = (parsed as? [String: Any])?["reason"] as? String ?? String(decoding: data ?? Data(), as: UTF8.self)
            throw CtlError.dataError("\(reason) (HTTP \(code))")
        }
    }

    public func list(_ path: String) throws -> [[String: Any]] {
        try call("GET", path) as? [[String: Any]] ?? []
    }
}

private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (Data?, Int?, (any Error)?) = (nil, nil, nil)
    func set(_ d: Data?, _ s: Int?, _ e: (any Error)?) { lock.withLock { value = (d, s, e) } }
    func get() -> (Data?, Int?, (any Error)?) { lock.withLock { value } }
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
