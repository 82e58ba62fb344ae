import Foundation
import WarrenCore

/// What RabbitMQ's list endpoints accept in the query string: `columns=a,b.c`, `sort=field`,
/// `sort_reverse=true`, and pagination with `page`, `page_size`, `name`, `use_regex`.
struct ListQuery: Sendable {
    var columns: [[String]]?
    var sort: [String]?
    var sortReverse = false
    var page: Int?
    var pageSize = 100
    var nameFilter: String?
    var useRegex = false

    init(_ query: [String: String]) throws(APIError) {
        if let c = query["columns"], !c.isEmpty {
            columns = c.split(separator: ",").map { $0.split(separator: ".").map(String.init) }
        }
        if let s = query["sort"], !s.isEmpty { sort = s.split(separator: ".").map(String.init) }
        sortReverse = query["sort_reverse"] == "true"
        if let p = query["page"] {
            guard let n = Int(p), n >= 1 else { throw .badRequest("Invalid page: \(p)") }
            page = n
        }
        if let s = query["page_size"] {
            guard let n = Int(s), (1...500).contains(n) else { throw .badRequest("Invalid page size: \(s)") }
            pageSize = n
        }
        if let n = query["name"], !n.isEmpty { nameFilter = n }
        useRegex = query["use_regex"] == "true"
    }

    /// Sorts, filters, paginates and selects columns, as RabbitMQ does: a page request answers an
    /// object with the counts and `items`; otherwise the (sorted, filtered) list.
    func apply(_ items: [JSONValue]) throws(APIError) -> JSONValue {
        var list = items
        let total = list.count
        if let f = nameFilter {
            if useRegex {
                guard let re = try? NSRegularExpression(pattern: f) else { throw .badRequest("invalid regular expression") }
                list = list.filter { item in
                    let name = item["name"]?.stringValue ?? ""
                    return re.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
                }
            } else {
                list = list.filter { ($0["name"]?.stringValue ?? "").localizedCaseInsensitiveContains(f) }
            }
        }
        if let key = sort {
            list.sort { a, b in
                let less = Self.less(Self.lookup(a, key), Self.lookup(b, key))
                return sortReverse ? Self.less(Self.lookup(b, key), Self.lookup(a, key)) : less
            }
        }
        let filtered = list.count
        if let page {
            let pageCount = max(1, (filtered + pageSize - 1) / pageSize)
            guard page <= pageCount else { throw .badRequest("Page out of range") }
            let slice = Array(list.dropFirst((page - 1) * pageSize).prefix(pageSize))
            return .object([
                "filtered_count": .int(Int64(filtered)), "item_count": .int(Int64(slice.count)),
                "items": .array(slice.map(select)), "page": .int(Int64(page)), "page_count": .int(Int64(pageCount)),
                "page_size": .int(Int64(pageSize)), "total_count": .int(Int64(total)),
            ])
        }
        return .array(list.map(select))
    }

    func select(_ item: JSONValue) -> JSONValue {
        guard let columns, case .object = item else { return item }
        var out: JSONValue = .object([:])
        for path in columns {
            if let v = Self.lookup(item, path) { Self.insert(v, at: path[...], into: &out) }
        }
        return out
    }

    static func lookup(_ item: JSONValue, _ path: [String]) -> JSONValue? {
        var v: JSONValue? = item
        for k in path { v = v?[k] }
        return v
    }

    static func insert(_ v: JSONValue, at path: ArraySlice<String>, into target: inout JSONValue) {
        guard case .object(var o) = target, let first = path.first else { return }
        if path.count == 1 {
            o[first] = v
        } else {
            var child = o[first] ?? .object([:])
            insert(v, at: path.dropFirst(), into: &child)
            o[first] = child
        }
        target = .object(o)
    }

    /// Items in the order of the named top-level fields (each field's value compared as
    /// `less` compares, the first difference decides); keys are read once per item.
    static func sorted(_ items: [JSONValue], by fields: [String]) -> [JSONValue] {
        let keys = items.map { item in fields.map { item[$0] } }
        let order = keys.indices.sorted { i, j in
            for (a, b) in zip(keys[i], keys[j]) {
                if less(a, b) { return true }
                if less(b, a) { return false }
            }
            return false
        }
        return order.map { items[$0] }
    }

    static func less(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
        switch (a, b) {
        case (.int(let x)?, .int(let y)?): return x < y
        case (.double(let x)?, .double(let y)?): return x < y
        case (.int(let x)?, .double(let y)?): return Double(x) < y
        case (.double(let x)?, .int(let y)?): return x < Double(y)
        case (.string(let x)?, .string(let y)?): return x < y
        case (.bool(let x)?, .bool(let y)?): return !x && y
        case (nil, .some): return true
        default: return false
        }
    }
}
