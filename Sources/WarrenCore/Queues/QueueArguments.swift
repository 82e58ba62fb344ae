public import AMQPProtocol

/// The kinds of queue Warren runs (`x-queue-type`).
public enum QueueType: String, Sendable {
    case classic
    /// Always durable; every message is kept on disk and confirmed after fsync; deliveries are
    /// counted (`x-delivery-limit`, `x-delivery-count`). On one node a group of one; the
    /// replicated-queue work makes it replicate (docs/queues.md).
    case quorum

    init(arguments: FieldTable) {
        self = arguments["x-queue-type"]?.stringValue == "quorum" ? .quorum : .classic
    }

    /// RabbitMQ's name for the type in its error texts.
    var moduleName: String { "rabbit_\(rawValue)_queue" }
}

/// Validation and equivalence of the `x-` arguments RabbitMQ gives meaning to, with its error
/// texts. Arguments outside this list are stored and ignored, as RabbitMQ does.
public enum QueueArguments {
    /// Arguments compared when a queue is declared again (RabbitMQ's `declare_args`).
    public static let equivalenceKeys: [String] = [
        "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
        "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
        "x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer", "x-queue-type",
        "x-quorum-initial-group-size", "x-delivery-limit", "x-queue-master-locator",
        "x-queue-leader-locator", "x-max-age", "x-stream-max-segment-size-bytes",
        "x-initial-cluster-size",
    ]

    /// Checks every known argument's type and range. Throws 406 with RabbitMQ's wording.
    public static func validate(_ args: FieldTable, queue: String, vhost: String) throws(AMQPError) {
        func invalid(_ key: String, _ why: String) -> AMQPError {
            .preconditionFailed("invalid arg '\(key)' for queue '\(queue)' in vhost '\(vhost)': \(why)")
        }
        func integer(_ key: String, _ v: FieldValue) throws(AMQPError) -> Int64 {
            guard let n = v.integerValue else { throw invalid(key, "\"expected integer, got \(v.typeName)\"") }
            return n
        }
        for entry in args.entries {
            let key = entry.key
            let v = entry.value
            switch key {
            case "x-message-ttl", "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes":
                let n = try integer(key, v)
                if n < 0 { throw invalid(key, "{value_negative,\(n)}") }
                if key == "x-message-ttl" && n > 4_294_967_295 {
                    throw invalid(key, "{value_too_large,\(n)}")
                }
            case "x-expires":
                let n = try integer(key, v)
                if n < 0 { throw invalid(key, "{value_negative,\(n)}") }
                if n == 0 { throw invalid(key, "{value_zero,0}") }
            case "x-max-priority":
                let n = try integer(key, v)
                if n < 0 { throw invalid(key, "{value_negative,\(n)}") }
                if n > 255 { throw invalid(key, "{max_value_exceeded,\(n)}") }
            case "x-dead-letter-exchange":
                guard v.stringValue != nil else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
            case "x-dead-letter-routing-key":
                guard v.stringValue != nil else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
                if args["x-dead-letter-exchange"] == nil { throw invalid(key, "routing_key_but_no_dlx_defined") }
            case "x-overflow":
                guard let s = v.stringValue else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
                if !["drop-head", "reject-publish", "reject-publish-dlx"].contains(s) {
                    throw invalid(key, "invalid_overflow")
                }
            case "x-queue-mode":
                guard let s = v.stringValue else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
                if !["default", "lazy"].contains(s) { throw invalid(key, "\"unsupported queue mode '\(s)'\"") }
            case "x-single-active-consumer":
                guard v.boolValue != nil else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
            case "x-queue-type":
                guard let s = v.stringValue else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
                // Streams are not implemented: refused rather than run as something else.
                if QueueType(rawValue: s) == nil { throw invalid(key, "\"unsupported queue type '\(s)'\"") }
            case "x-quorum-initial-group-size":
                let n = try integer(key, v)
                if n < 0 { throw invalid(key, "{value_negative,\(n)}") }
                if n == 0 { throw invalid(key, "{value_zero,0}") }
            case "x-dead-letter-strategy":
                guard let s = v.stringValue else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
                if s != "at-most-once" && s != "at-least-once" { throw invalid(key, "invalid_dlx_strategy") }
            case "x-queue-leader-locator", "x-queue-master-locator":
                guard let s = v.stringValue else { throw invalid(key, "{unacceptable_type,\(v.typeName)}") }
                if QueueLocator(rawValue: s) == nil { throw invalid(key, "invalid_queue_locator_arg") }
            case "x-delivery-limit":
                // Any integer: a negative one means no limit (RabbitMQ 4 uses -1 to turn off its
                // default of 20). 3.10 does not check the type either.
                continue
            default:
                continue
            }
        }
    }

    /// Arguments RabbitMQ 3.10 refuses on a quorum queue ("of queue type rabbit_quorum_queue").
    static let unsupportedByQuorum: [String] = [
        "x-max-priority", "x-queue-mode", "x-queue-master-locator", "x-queue-version", "x-max-age",
        "x-stream-max-segment-size-bytes", "x-initial-cluster-size",
    ]

    /// The rules of a quorum queue's declaration, checked in RabbitMQ's order after the values
    /// are validated: arguments it does not support, then auto-delete, exclusive, non-durable.
    /// (A server-named quorum queue is refused before anything else.)
    static func checkQuorum(
        _ args: FieldTable, queue: String, vhost: String, durable: Bool, exclusive: Bool, autoDelete: Bool
    ) throws(AMQPError) {
        for entry in args.entries where unsupportedByQuorum.contains(entry.key) {
            throw .preconditionFailed(
                "invalid arg '\(entry.key)' for queue '\(queue)' in vhost '\(vhost)' of queue type \(QueueType.quorum.moduleName)")
        }
        func invalid(_ property: String) -> AMQPError {
            .preconditionFailed("invalid property '\(property)' for queue '\(queue)' in vhost '\(vhost)'")
        }
        if autoDelete { throw invalid("auto-delete") }
        if exclusive { throw invalid("exclusive-owner") }
        if !durable { throw invalid("non-durable") }
    }

    /// Compares the equivalence arguments of a redeclaration with the queue's. Throws 406 with
    /// RabbitMQ's "inequivalent arg" text.
    public static func assertEquivalent(
        current: FieldTable, received: FieldTable, resource: String
    ) throws(AMQPError) {
        for key in equivalenceKeys {
            let a = received[key]
            let b = current[key]
            if a == nil && b == nil { continue }
            if let a, let b, equivalent(a, b) { continue }
            // RabbitMQ names the type only when one side is missing.
            let oneSided = a == nil || b == nil
            throw .preconditionFailed(
                "inequivalent arg '\(key)' for \(resource): received \(describe(a, typed: oneSided)) but current is \(describe(b, typed: oneSided))"
            )
        }
    }

    /// Values of one type class compare by value (an int 5 sent as short equals one sent as long).
    static func equivalent(_ a: FieldValue, _ b: FieldValue) -> Bool {
        if let x = a.integerValue, let y = b.integerValue { return x == y }
        return a == b
    }

    /// RabbitMQ's rendering of a value in equivalence errors.
    static func describe(_ v: FieldValue?, typed: Bool) -> String {
        guard let v else { return "none" }
        return typed ? "the value '\(display(v))' of type '\(v.typeName)'" : "'\(display(v))'"
    }

    /// A value as RabbitMQ prints it inside quotes.
    public static func display(_ v: FieldValue) -> String {
        switch v {
        case .boolean(let b): return b ? "true" : "false"
        case .float(let f): return "\(f)"
        case .double(let d): return "\(d)"
        case .timestamp(let t): return "\(t)"
        case .void: return "undefined"
        default:
            if let n = v.integerValue { return "\(n)" }
            if let s = v.stringValue { return s }
            return "\(v)"
        }
    }
}
