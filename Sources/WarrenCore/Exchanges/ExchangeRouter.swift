public import AMQPProtocol

/// The routing algorithm of one exchange type, with its own index of bindings.
///
/// One type per file (direct, fanout, topic, headers, and the default exchange). A router sees
/// bindings come and go and answers which destinations a message goes to; it never touches
/// queues itself.
public protocol ExchangeRouter: AnyObject {
    func add(_ binding: Binding)
    func remove(_ binding: Binding)
    /// Appends the destinations for a message; duplicates are removed by the caller.
    func route(routingKey: String, headers: FieldTable?, into destinations: inout [BindingDestination])
}

/// The exchange types Warren knows, by the name clients declare them with.
public enum ExchangeKind: String, Sendable, CaseIterable {
    case direct
    case fanout
    case topic
    case headers
    /// Federation's internal exchanges (FederationUpstreamRouter.swift).
    case federationUpstream = "x-federation-upstream"

    func makeRouter(arguments: FieldTable = [:]) -> any ExchangeRouter {
        switch self {
        case .direct: return DirectRouter()
        case .fanout: return FanoutRouter()
        case .topic: return TopicRouter()
        case .headers: return HeadersRouter()
        case .federationUpstream: return FederationUpstreamRouter(arguments: arguments)
        }
    }
}
