public import AMQPProtocol

/// The `x-federation-upstream` exchange type: the internal exchange an exchange link declares
/// on its upstream (RabbitMQ's plugin declares the same). It routes like fanout, but drops a
/// message that has already been through `x-max-hops` links or has already visited the
/// downstream it leads to (`x-downstream-name` / `x-downstream-vhost`), so rings and meshes
/// of brokers deliver each message once. With it, a RabbitMQ downstream can federate from a
/// Warren upstream.
public final class FederationUpstreamRouter: ExchangeRouter {
    public static let typeName = "x-federation-upstream"

    private var destinations: [BindingDestination] = []
    let maxHops: Int
    let downstreamCluster: String
    let downstreamVhost: String

    public init(arguments: FieldTable) {
        maxHops = Int(arguments["x-max-hops"]?.integerValue ?? 1)
        downstreamCluster = arguments["x-downstream-name"]?.stringValue ?? ""
        downstreamVhost = arguments["x-downstream-vhost"]?.stringValue ?? ""
    }

    public func add(_ binding: Binding) { destinations.append(binding.destination) }

    public func remove(_ binding: Binding) {
        if let i = destinations.firstIndex(of: binding.destination) { destinations.remove(at: i) }
    }

    public func route(routingKey: String, headers: FieldTable?, into out: inout [BindingDestination]) {
        guard Federation.shouldForward(headers: headers, maxHops: maxHops, downstreamCluster: downstreamCluster, downstreamVhost: downstreamVhost)
        else { return }
        out.append(contentsOf: destinations)
    }
}
