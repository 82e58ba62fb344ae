import AMQPProtocol
import Foundation
import NIOCore
import WarrenCore

/// Message properties and payloads as the API's publish and get show them.
enum MessageJSON {
    static func json(_ p: BasicProperties) -> JSONValue {
        var o: [String: JSONValue] = [:]
        if let v = p.contentType { o["content_type"] = .string(v) }
        if let v = p.contentEncoding { o["content_encoding"] = .string(v) }
        if let v = p.headers { o["headers"] = Broker.json(v) }
        if let v = p.deliveryMode { o["delivery_mode"] = .int(Int64(v)) }
        if let v = p.priority { o["priority"] = .int(Int64(v)) }
        if let v = p.correlationID { o["correlation_id"] = .string(v) }
        if let v = p.replyTo { o["reply_to"] = .string(v) }
        if let v = p.expiration { o["expiration"] = .string(v) }
        if let v = p.messageID { o["message_id"] = .string(v) }
        if let v = p.timestamp { o["timestamp"] = .int(Int64(clamping: v)) }
        if let v = p.type { o["type"] = .string(v) }
        if let v = p.userID { o["user_id"] = .string(v) }
        if let v = p.appID { o["app_id"] = .string(v) }
        if let v = p.clusterID { o["cluster_id"] = .string(v) }
        return .object(o)
    }

    static func properties(_ j: JSONValue?) throws(APIError) -> BasicProperties {
        guard let o = j?.objectValue else { return BasicProperties() }
        func str(_ k: String) -> String? {
            switch o[k] {
            case .string(let s)?: return s
            case .int(let n)?: return String(n)
            default: return nil
            }
        }
        func small(_ k: String) throws(APIError) -> UInt8? {
            guard let v = o[k] else { return nil }
            let n = v.intValue ?? v.stringValue.flatMap { Int64($0) }
            guard let n, (0...255).contains(n) else { throw .badRequest("\(k): expected a number from 0 to 255") }
            return UInt8(n)
        }
        return BasicProperties(
            contentType: str("content_type"), contentEncoding: str("content_encoding"),
            headers: o["headers"]?.objectValue.map { Broker.fieldTable($0) }, deliveryMode: try small("delivery_mode"),
            priority: try small("priority"), correlationID: str("correlation_id"), replyTo: str("reply_to"),
            expiration: str("expiration"), messageID: str("message_id"),
            timestamp: o["timestamp"]?.intValue.map { UInt64(max(0, $0)) }, type: str("type"), userID: str("user_id"),
            appID: str("app_id"), clusterID: str("cluster_id"))
    }

    /// The payload of a publish: "string" (UTF-8) or "base64".
    static func payload(_ o: [String: JSONValue]) throws(APIError) -> ByteBuffer {
        guard let text = o["payload"]?.stringValue else { throw .badRequest("payload missing") }
        switch o["payload_encoding"]?.stringValue ?? "string" {
        case "string": return ByteBuffer(string: text)
        case "base64":
            guard let d = Data(base64Encoded: text) else { throw .badRequest("payload is not valid base64") }
            return ByteBuffer(bytes: d)
        case let other: throw .badRequest("unknown payload_encoding '\(other)'")
        }
    }

    /// One message of a get: the payload as text when it is UTF-8 and the caller allows it.
    static func json(_ e: QueueEntry, remaining: Int, encoding: String, truncate: Int?) -> JSONValue {
        let m = e.message
        var bytes = m.body.getBytes(at: m.body.readerIndex, length: m.bodySize) ?? []
        if let t = truncate, t >= 0, bytes.count > t { bytes = Array(bytes.prefix(t)) }
        let text = encoding == "auto" ? String(validating: bytes, as: UTF8.self) : nil
        return .object([
            "payload_bytes": .int(Int64(m.bodySize)), "redelivered": .bool(e.redelivered), "exchange": .string(m.exchange),
            "routing_key": .string(m.routingKey), "message_count": .int(Int64(remaining)), "properties": json(m.properties),
            "payload": .string(text ?? Data(bytes).base64EncodedString()), "payload_encoding": .string(text == nil ? "base64" : "string"),
        ])
    }
}
