/// The federation components' runtime parameters (`federation-upstream`,
/// `federation-upstream-set`), checked as RabbitMQ 3.10's federation plugin checks them, with its
/// texts (what `rabbitmqctl set_parameter` prints after "Validation failed"), so a definitions
/// file or a script written against RabbitMQ meets the same answers. docs/federation.md.
public enum FederationParameters {
    public static let upstreamComponent = "federation-upstream"
    public static let upstreamSetComponent = "federation-upstream-set"

    enum Kind {
        case number, boolean, binary
        case oneOf([String])
        /// One URI or a list of them, amqp:// or amqps://.
        case uris
    }

    /// An upstream's keys, in the order they are checked. `queue-type` is newer than 3.10
    /// (which refuses it as unrecognised); Warren takes it, as the issue asks.
    static let upstreamKeys: [(String, Kind)] = [
        ("uri", .uris), ("prefetch-count", .number), ("reconnect-delay", .number), ("max-hops", .number),
        ("expires", .number), ("message-ttl", .number), ("trust-user-id", .boolean),
        ("ack-mode", .oneOf(["no-ack", "on-publish", "on-confirm"])), ("resource-cleanup-mode", .oneOf(["default", "never"])),
        ("queue-type", .oneOf(["classic", "quorum"])), ("bind-nowait", .boolean), ("exchange", .binary), ("queue", .binary),
        ("consumer-tag", .binary), ("ha-policy", .binary),
    ]

    /// Checks a parameter of one of the federation components; other components pass.
    /// The error is RabbitMQ's text.
    public static func validate(component: String, name: String, value: JSONValue) throws(AdminError) {
        switch component {
        case upstreamComponent:
            try validate(object: value, name: name, keys: upstreamKeys, required: ["uri"])
        case upstreamSetComponent:
            // RabbitMQ reads an empty object as an empty list.
            if case .object(let o) = value, o.isEmpty { return }
            guard let entries = value.arrayValue else { throw invalid("\(name) should be a list, actually was \(erlang(value))") }
            let keys = [("upstream", Kind.binary)] + upstreamKeys.filter { $0.0 != "uri" }
            for e in entries { try validate(object: e, name: name, keys: keys, required: ["upstream"]) }
        default:
            return
        }
    }

    static func validate(object value: JSONValue, name: String, keys: [(String, Kind)], required: [String]) throws(AdminError) {
        guard let o = value.objectValue else { throw invalid("\(name) should be an object, actually was \(erlang(value))") }
        for key in required where o[key] == nil { throw invalid("Key \"\(key)\" not found in \(name)") }
        for (key, kind) in keys {
            guard let v = o[key] else { continue }
            switch kind {
            case .number:
                if case .int = v { continue }
                if case .double = v { continue }
                throw invalid("\(key) should be a number, actually was \(erlang(v))")
            case .boolean:
                guard v.boolValue != nil else { throw invalid("\(key) should be boolean, actually was \(erlang(v))") }
            case .binary:
                guard v.stringValue != nil else { throw invalid("\(key) should be binary, actually was \(erlang(v))") }
            case .oneOf(let options):
                guard let s = v.stringValue, options.contains(s) else {
                    let list = options.map { "<<\"\($0)\">>" }.joined(separator: ",")
                    throw invalid("\(key) should be one of [\(list)], actually was \(erlang(v))")
                }
            case .uris:
                let list: [JSONValue]
                if v.stringValue != nil { list = [v] } else if let a = v.arrayValue { list = a } else {
                    throw invalid("\(key) should be list, actually was \(erlang(v))")
                }
                for u in list {
                    guard let s = u.stringValue else { throw invalid("\(key) should be list, actually was \(erlang(v))") }
                    if let why = uriProblem(s) { throw invalid("\"\(s)\" not a valid URI: {\(why),\"\(s)\"}") }
                }
            }
        }
        let known = Set(keys.map(\.0))
        let unknown = o.keys.filter { !known.contains($0) }.sorted()
        if !unknown.isEmpty {
            let terms = unknown.map { "{<<\"\($0)\">>,\(erlang(o[$0]!))}" }.joined(separator: ",")
            throw invalid("Unrecognised terms [\(terms)] in \(name)")
        }
    }

    /// What is wrong with an upstream URI, in RabbitMQ's words (nil: nothing).
    static func uriProblem(_ s: String) -> String? {
        guard let colon = s.firstIndex(of: ":") else { return "no_scheme" }
        let scheme = String(s[..<colon])
        guard scheme == "amqp" || scheme == "amqps" else { return "{unexpected_uri_scheme,\"\(scheme)\"}" }
        return nil
    }

    static func invalid(_ text: String) -> AdminError { AdminError("Validation failed\n\n\(text)\n") }

    /// A JSON value as RabbitMQ's messages print the Erlang term it decodes to.
    static func erlang(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return "\(i)"
        case .double(let d): return "\(d)"
        case .string(let s): return "<<\"\(s)\">>"
        case .array(let a): return "[" + a.map(erlang).joined(separator: ",") + "]"
        case .object(let o): return "[" + o.keys.sorted().map { "{<<\"\($0)\">>,\(erlang(o[$0]!))}" }.joined(separator: ",") + "]"
        }
    }
}
