import Foundation
public import WarrenCore

/// JSON out (`JSONValue.jsonBytes`: keys sorted, so answers are stable) and in (via JSONSerialization).
public enum JSONWriter {
    public static func bytes(_ value: JSONValue) -> [UInt8] { value.jsonBytes }

    public static func string(_ value: JSONValue) -> String { String(decoding: value.jsonBytes, as: UTF8.self) }

    /// Parses a request body; an empty body is an empty object (RabbitMQ accepts PUT without one).
    static func parse(_ body: [UInt8]) throws(APIError) -> JSONValue {
        if body.allSatisfy({ $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }) { return .object([:]) }
        guard let o = try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) else {
            throw .badRequest("not_json")
        }
        return JSONValue(foundation: o)
    }
}
