public import AMQPProtocol

/// Fanout exchange: a message goes to every bound destination, whatever its routing key.
public final class FanoutRouter: ExchangeRouter {
    private var destinations: [BindingDestination] = []

    public init() {}

    public func add(_ binding: Binding) { destinations.append(binding.destination) }

    public func remove(_ binding: Binding) {
        if let i = destinations.firstIndex(of: binding.destination) { destinations.remove(at: i) }
    }

    public func route(routingKey: String, headers: FieldTable?, into out: inout [BindingDestination]) {
        out.append(contentsOf: destinations)
    }
}
