public import AMQPProtocol

/// Direct exchange: a message goes to every binding whose key equals its routing key.
public final class DirectRouter: ExchangeRouter {
    // A destination appears once per binding, so bindings that differ only in their arguments
    // each hold an entry; the caller's de-duplication delivers once.
    private var byKey: [String: [BindingDestination]] = [:]

    public init() {}

    public func add(_ binding: Binding) {
        byKey[binding.routingKey, default: []].append(binding.destination)
    }

    public func remove(_ binding: Binding) {
        guard var list = byKey[binding.routingKey], let i = list.firstIndex(of: binding.destination) else { return }
        list.remove(at: i)
        byKey[binding.routingKey] = list.isEmpty ? nil : list
    }

    public func route(routingKey: String, headers: FieldTable?, into destinations: inout [BindingDestination]) {
        if let list = byKey[routingKey] { destinations.append(contentsOf: list) }
    }
}
