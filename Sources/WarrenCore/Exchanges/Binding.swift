public import AMQPProtocol

/// What a binding routes to: a queue, or another exchange (exchange-to-exchange binding).
/// Held by reference so routing never looks names up.
public enum BindingDestination: Hashable {
    case queue(MessageQueue)
    case exchange(Exchange)

    public static func == (a: BindingDestination, b: BindingDestination) -> Bool {
        switch (a, b) {
        case (.queue(let x), .queue(let y)): return x === y
        case (.exchange(let x), .exchange(let y)): return x === y
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .queue(let q): hasher.combine(ObjectIdentifier(q))
        case .exchange(let x): hasher.combine(ObjectIdentifier(x))
        }
    }

    public var name: String {
        switch self {
        case .queue(let q): return q.name
        case .exchange(let x): return x.name
        }
    }

    public var isExchange: Bool {
        if case .exchange = self { return true }
        return false
    }

    /// "queue" or "exchange", as RabbitMQ's listings name the destination kind.
    public var kind: String {
        switch self {
        case .queue: return "queue"
        case .exchange: return "exchange"
        }
    }
}

/// A binding from a source exchange to a destination, with a key and arguments. Two bindings
/// are the same binding when all four match (RabbitMQ's identity).
public struct Binding: Hashable {
    public let source: Exchange
    public let destination: BindingDestination
    public let routingKey: String
    public let arguments: FieldTable

    public init(source: Exchange, destination: BindingDestination, routingKey: String, arguments: FieldTable) {
        self.source = source
        self.destination = destination
        self.routingKey = routingKey
        self.arguments = arguments
    }

    public static func == (a: Binding, b: Binding) -> Bool {
        a.source === b.source && a.destination == b.destination && a.routingKey == b.routingKey
            && a.arguments == b.arguments
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(source))
        hasher.combine(destination)
        hasher.combine(routingKey)
    }
}

extension Binding {
    /// Survives a restart: both ends do (RabbitMQ's rule; the built-in exchanges are durable,
    /// an exclusive queue never is).
    public var isDurable: Bool {
        guard source.durable else { return false }
        switch destination {
        case .queue(let q): return q.durable && !q.isExclusive
        case .exchange(let x): return x.durable
        }
    }
}
