import Foundation

/// What `up` started, kept in DIR/cluster.json so every later verb (a new process each time)
/// finds the nodes, their ports and the proxy again.
struct ClusterLayout: Codable {
    struct Node: Codable {
        var index: Int
        var name: String
        var amqp: Int
        var amqps: Int?
        var management: Int
        var prometheus: Int
        /// The port the node listens on for the others (they reach it through the proxy).
        var cluster: Int
        var dataDir: String
        var log: String
        /// The command line `start` runs again.
        var argv: [String]
        /// Environment added to the driver's at each start (a scenario's fault: a faked clock).
        var env: [String: String]?
        var pid: Int32?
        /// running, stopped (stop/kill) or paused (SIGSTOP).
        var state: String
    }

    var binary: String
    var tls: Bool
    var secret: String
    var proxyPid: Int32?
    var nodes: [Node]
    /// "i-j" → the proxy port node i dials to reach node j.
    var links: [String: Int]

    static func path(_ dir: String) -> String { (dir as NSString).appendingPathComponent("cluster.json") }

    static func load(_ dir: String) throws -> ClusterLayout {
        let p = path(dir)
        guard let data = FileManager.default.contents(atPath: p) else {
            throw DriverError("no cluster in '\(dir)' (no cluster.json): start one with `warren-cluster up --dir \(dir)`")
        }
        do {
            return try JSONDecoder().decode(ClusterLayout.self, from: data)
        } catch {
            throw DriverError("'\(p)' is not a cluster layout: \(error)")
        }
    }

    func save(_ dir: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let tmp = Self.path(dir) + ".tmp"
        try enc.encode(self).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, Self.path(dir)) == 0 else { throw DriverError("cannot write '\(Self.path(dir))'") }
    }

    /// The directed links ("i-j") from or to any of these nodes (numbered from 1).
    func links(of nodes: Set<Int>) -> [String] {
        links.keys.filter { $0.split(separator: "-").compactMap { Int($0) }.contains(where: nodes.contains) }.sorted()
    }

    /// A node by number (2), short name (warren-2) or full name (warren-2@localhost).
    func index(of ref: String) throws -> Int {
        if let n = Int(ref), nodes.indices.contains(n - 1) { return n - 1 }
        if let i = nodes.firstIndex(where: { $0.name == ref || $0.name.hasPrefix(ref + "@") }) { return i }
        throw DriverError("no node '\(ref)' in this cluster; nodes: \(nodes.map(\.name).joined(separator: ", ")) (or 1...\(nodes.count))")
    }

    /// What the verbs print: one JSON object with each node's ports.
    func summary(_ dir: String) -> [String: Any] {
        var list: [[String: Any]] = []
        for n in nodes {
            var o: [String: Any] = [
                "name": n.name, "amqp": n.amqp, "management": n.management, "prometheus": n.prometheus, "cluster": n.cluster,
                "state": n.state, "data_dir": n.dataDir, "log": n.log,
            ]
            if let amqps = n.amqps { o["amqps"] = amqps }
            o["pid"] = n.pid.map { Int($0) } ?? NSNull()
            list.append(o)
        }
        return ["dir": dir, "nodes": list, "tls": tls, "proxy_pid": proxyPid.map { Int($0) } ?? NSNull()]
    }
}

struct DriverError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The faults the proxy applies, written by the verbs and read by the proxy (DIR/faults.json).
/// The proxy answers with the generation it applied (DIR/faults.applied).
struct Faults: Codable, Equatable {
    /// Directed links "i-j" (node indices from 1) that are cut: connections are closed and new
    /// ones refused.
    var cut: Set<String> = []
    /// Directed links whose bytes vanish (connections stay open, nothing arrives): a network
    /// that drops packets rather than refusing.
    var drop: Set<String> = []
    /// Directed links → added latency in milliseconds.
    var delay: [String: Int] = [:]
    /// Directed links → share of packets lost (0-1), as TCP shows loss to the nodes: a lost
    /// packet arrives one retransmission timeout late and holds up everything behind it.
    var loss: [String: Double] = [:]
    var generation: Int = 0

    init() {}
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cut = try c.decodeIfPresent(Set<String>.self, forKey: .cut) ?? []
        drop = try c.decodeIfPresent(Set<String>.self, forKey: .drop) ?? []
        delay = try c.decodeIfPresent([String: Int].self, forKey: .delay) ?? [:]
        loss = try c.decodeIfPresent([String: Double].self, forKey: .loss) ?? [:]
        generation = try c.decodeIfPresent(Int.self, forKey: .generation) ?? 0
    }

    static func path(_ dir: String) -> String { (dir as NSString).appendingPathComponent("faults.json") }
    static func appliedPath(_ dir: String) -> String { (dir as NSString).appendingPathComponent("faults.applied") }

    static func load(_ dir: String) -> Faults {
        guard let data = FileManager.default.contents(atPath: path(dir)), let f = try? JSONDecoder().decode(Faults.self, from: data) else {
            return Faults()
        }
        return f
    }

    func save(_ dir: String) throws {
        let tmp = Self.path(dir) + ".tmp"
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, Self.path(dir)) == 0 else { throw DriverError("cannot write '\(Self.path(dir))'") }
    }

    static func link(_ from: Int, _ to: Int) -> String { "\(from)-\(to)" }
}
