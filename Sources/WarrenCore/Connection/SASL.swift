import AMQPProtocol
import NIOCore

/// Credentials parsed from a `connection.start-ok` response.
public struct Credentials: Sendable, Equatable {
    public var username: String
    public var password: String
}

/// The SASL mechanisms Warren accepts: PLAIN (RFC 4616) and RabbitMQ's AMQPLAIN.
public enum SASL {
    /// Returns nil when the response is malformed for its mechanism.
    public static func parse(mechanism: String, response: [UInt8]) -> Credentials? {
        switch mechanism {
        case "PLAIN":
            // authzid NUL authcid NUL passwd; authzid is ignored, as RabbitMQ does.
            let parts = response.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { return nil }
            return Credentials(
                username: String(decoding: parts[1], as: UTF8.self), password: String(decoding: parts[2], as: UTF8.self))
        case "AMQPLAIN":
            // A field table's entries without the table's 32-bit length prefix.
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt32(response.count))
            buffer.writeBytes(response)
            guard let table = try? buffer.amqpReadFieldTable(),
                let login = table["LOGIN"]?.stringValue, let password = table["PASSWORD"]?.stringValue
            else { return nil }
            return Credentials(username: login, password: password)
        default:
            return nil
        }
    }
}
