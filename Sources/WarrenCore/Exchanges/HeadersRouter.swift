public import AMQPProtocol

/// Headers exchange: routes on message headers against binding arguments, as RabbitMQ does.
///
/// `x-match` selects `all` (the default), `any`, `all-with-x` or `any-with-x`. Binding arguments
/// whose names start with `x-` are ignored unless a `-with-x` mode is chosen (`x-match` itself
/// always is). A void argument matches on the header's presence alone. Values compare by type
/// class: any integer equals any integer of the same value, float equals double, other types
/// compare exactly.
public final class HeadersRouter: ExchangeRouter {
    private var bindings: [(destination: BindingDestination, matcher: HeadersMatcher)] = []

    public init() {}

    public func add(_ binding: Binding) {
        bindings.append((binding.destination, HeadersMatcher(binding.arguments)))
    }

    public func remove(_ binding: Binding) {
        let matcher = HeadersMatcher(binding.arguments)
        if let i = bindings.firstIndex(where: { $0.destination == binding.destination && $0.matcher == matcher }) {
            bindings.remove(at: i)
        }
    }

    public func route(routingKey: String, headers: FieldTable?, into out: inout [BindingDestination]) {
        let headers = headers ?? FieldTable()
        for b in bindings where b.matcher.matches(headers) {
            out.append(b.destination)
        }
    }
}

/// One binding's compiled match rule.
public struct HeadersMatcher: Equatable {
    public enum Mode: Equatable { case all, any }
    public let mode: Mode
    public let conditions: [FieldTable.Entry]

    public init(_ arguments: FieldTable) {
        let xMatch = arguments["x-match"]?.stringValue ?? "all"
        let withX = xMatch.hasSuffix("-with-x")
        self.mode = xMatch.hasPrefix("any") ? .any : .all
        self.conditions = arguments.entries.filter { entry in
            entry.key != "x-match" && (withX || !entry.key.hasPrefix("x-"))
        }
    }

    public func matches(_ headers: FieldTable) -> Bool {
        switch mode {
        case .all:
            for c in conditions {
                guard let v = headers[c.key], Self.equal(pattern: c.value, value: v) else { return false }
            }
            return true
        case .any:
            for c in conditions {
                if let v = headers[c.key], Self.equal(pattern: c.value, value: v) { return true }
            }
            return false
        }
    }

    static func equal(pattern: FieldValue, value: FieldValue) -> Bool {
        if case .void = pattern { return true }
        if let a = pattern.integerValue, let b = value.integerValue { return a == b }
        switch (pattern, value) {
        case (.float(let a), .float(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.float(let a), .double(let b)), (.double(let b), .float(let a)): return Double(a) == b
        default: return pattern == value
        }
    }
}
