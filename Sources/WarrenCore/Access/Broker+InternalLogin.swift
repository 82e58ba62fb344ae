/// The node's own AMQP clients (federation links) publish into their node as any client does,
/// over a loopback connection, so that routing, confirms and replicated queues behave exactly
/// as for users. They log in with a secret only this process knows, not with a user account:
/// RabbitMQ's links act as `guest` by default and stop working when an operator deletes it.
extension SASL {
    /// Never offered in connection.start; accepted from loopback peers only, with the node's
    /// secret as the response.
    public static let internalMechanism = "WARREN-INTERNAL"
}

extension Broker {
    /// The identity internal connections act as: every vhost, every permission.
    public static let internalUserName = "warren-internal"

    /// True for the internal identity, which permission checks let through. A user account of
    /// the same name (an operator made one) turns that off rather than inherit it: the name
    /// alone never grants anything.
    @inline(__always)
    func isInternal(user: String) -> Bool {
        user == Broker.internalUserName && internalLoginSecret != nil && users[user] == nil
    }

    /// Whether `response` is this process's internal secret.
    func acceptsInternalLogin(_ response: [UInt8]) -> Bool {
        guard let secret = internalLoginSecret, secret.count == response.count else { return false }
        // Constant time: the comparison does not say how much of a guess was right.
        var diff: UInt8 = 0
        for (a, b) in zip(secret, response) { diff |= a ^ b }
        return diff == 0
    }
}
