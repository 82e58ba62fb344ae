import Foundation

/// rabbitmqctl's output: a header row of column names and tab-separated values, or with
/// --formatter json one object per line between brackets.
enum Table {
    static func print(_ rows: [[String: Any]], columns: [String], json: Bool) {
        if json {
            Swift.print("[")
            for (i, row) in rows.enumerated() {
                let fields = columns.map { "\(quote($0)):\(jsonValue(row[$0]))" }.joined(separator: ",")
                Swift.print((i == 0 ? "" : ",") + "{" + fields + "}")
            }
            Swift.print("]")
            return
        }
        Swift.print(columns.joined(separator: "\t"))
        for row in rows { Swift.print(columns.map { text(row[$0], column: $0) }.joined(separator: "\t")) }
    }

    /// A value as rabbitmqctl shows it in a table.
    static func text(_ v: Any?, column: String) -> String {
        switch v {
        case nil, is NSNull: return ""
        case let n as NSNumber:
            // Before any `as Bool`: a 0 or 1 from JSON would pass for a Bool.
            if isBool(n) { return n.boolValue ? "true" : "false" }
            let d = n.doubleValue
            return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        case let s as String: return s
        case let a as [Any]: return "[" + a.map { text($0, column: column) }.joined(separator: ", ") + "]"
        case let o as [String: Any]:
            if column == "definition" || column == "client_properties" { return jsonValue(o) }
            // Arguments as Erlang shows them: [{"x-max-priority",5}].
            return "[" + o.keys.sorted().map { "{\(quote($0)),\(jsonValue(o[$0]))}" }.joined(separator: ",") + "]"
        default: return "\(v!)"
        }
    }

    /// JSON's true and false arrive as NSNumbers of type "c" (or "B").
    static func isBool(_ n: NSNumber) -> Bool {
        let t = String(cString: n.objCType)
        return t == "c" || t == "B"
    }

    static func quote(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }

    static func jsonValue(_ v: Any?) -> String {
        guard let v, !(v is NSNull) else { return "null" }
        if let n = v as? NSNumber, isBool(n) { return n.boolValue ? "true" : "false" }
        guard let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]) else {
            return "null"
        }
        return String(decoding: data, as: UTF8.self)
    }
}
