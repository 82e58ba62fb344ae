public import AMQPProtocol
/// What applying a metadata command produced, on the node that proposed it.
public struct MetadataReply {
    /// The queue a declaration made or found (on this node).
    public var queue: MessageQueue?
    public var created = false
    /// Ready messages a queue deletion dropped (its home node counts them).
    public var messages = 0
    /// Consumers of a deleted queue, told after the reply (RabbitMQ sends delete-ok first).
    public var cancelled: [Consumer] = []
    public init() {}
}

/// How a proposed change ended.
public enum MetadataOutcome {
    case done(MetadataReply)
    /// Applied, and refused by the broker's rules (406 inequivalent, 404 no vhost...).
    case refused(AMQPErrorOrAdmin)
    /// Never applied: the change could not be committed (no majority of the cluster reachable,
    /// a timeout). The text says what to do.
    case notCommitted(String)
}

/// A refusal from a channel's point of view (an AMQP error with its code) or an administrator's
/// (a sentence).
public enum AMQPErrorOrAdmin: Error {
    case amqp(AMQPError)
    case admin(AdminError)

    /// As an AMQP error (admin refusals are 406 PRECONDITION_FAILED for a channel).
    public var amqpError: AMQPError {
        switch self {
        case .amqp(let e): return e
        case .admin(let e): return .preconditionFailed(e.description)
        }
    }

    public var text: String {
        switch self {
        case .amqp(let e): return e.text
        case .admin(let e): return e.description
        }
    }
}

/// Where metadata changes go to be ordered and made durable before they take effect. The broker
/// calls `propose`; the log calls `Broker.apply(_:)` for every committed command, in order, on
/// every node, `completion` on the proposing node with the outcome of its own command, and then
/// `Broker.settleApplied(_:)` on every node. All on the broker's event loop.
///
/// `LocalMetadataLog` applies at once (a broker with no cluster: unit tests, the fuzzer); the
/// node puts its Raft group behind this protocol.
public protocol MetadataLog: AnyObject {
    func propose(_ command: MetadataCommand, completion: @escaping (MetadataOutcome) -> Void)
}

/// Applies each command as it is proposed, and journals durable changes to the message store
/// when the broker has one.
public final class LocalMetadataLog: MetadataLog {
    unowned let broker: Broker

    public init(broker: Broker) {
        self.broker = broker
    }

    public func propose(_ command: MetadataCommand, completion: @escaping (MetadataOutcome) -> Void) {
        broker.localLogIndex += 1
        let outcome = broker.apply(command, index: broker.localLogIndex)
        completion(outcome)
        broker.settleApplied(outcome)
    }
}

extension Broker {
    /// After a command's outcome went to its proposer (or, on the other nodes, to no one):
    /// consumers of a deleted queue that were not told yet are told now. The proposer tells
    /// them after its own reply (delete-ok first, as RabbitMQ); every other node, and a proposer
    /// whose channel closed meanwhile, relies on this. Telling a consumer twice is harmless.
    public func settleApplied(_ outcome: MetadataOutcome) {
        guard case .done(let r) = outcome, !r.cancelled.isEmpty else { return }
        for c in r.cancelled { c.cancelledByBroker() }
    }
}
