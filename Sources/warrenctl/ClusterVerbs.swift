import ArgumentParser
import Foundation
import ManagementClient

/// rabbitmqctl's cluster verbs, on the node the options reach.
struct ClusterStatus: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "cluster_status", abstract: "Shows the cluster's members, running nodes, alarms, partitions and listeners.")
    @OptionGroup var node: NodeOptions
    func execute() throws {
        let s = try node.client.call("GET", "/api/warren/cluster") as? [String: Any] ?? [:]
        if node.formatter == "json" {
            Swift.print(Table.jsonValue(s))
            return
        }
        let overview = try node.client.call("GET", "/api/overview") as? [String: Any] ?? [:]
        func names(_ key: String) -> [String] { (s[key] as? [String] ?? []).sorted() }
        func section(_ title: String, _ lines: [String]) {
            Swift.print("\n\(title)\n")
            if lines.isEmpty { Swift.print("(none)") } else { for l in lines { Swift.print(l) } }
        }
        node.say("Cluster status of node \(overview["node"] ?? "") ...")
        Swift.print("Basics\n\nCluster name: \(s["cluster_name"] ?? "")")
        section("Disk Nodes", names("disk_nodes"))
        section("Running Nodes", names("running_nodes"))
        let versions = s["versions"] as? [String: [String: Any]] ?? [:]
        section("Versions", versions.keys.sorted().map { "\($0): Warren \(versions[$0]?["warren_version"] ?? "")" })
        let maintenance = s["maintenance_status"] as? [String: Any] ?? [:]
        section("Maintenance status", maintenance.keys.sorted().map { "\($0): \(maintenance[$0] ?? "")" })
        let alarms = s["alarms"] as? [[String: Any]] ?? []
        section("Alarms", alarms.map { "\($0["resource"] ?? "") alarm on node \($0["node"] ?? "")" })
        let partitions = s["network_partitions"] as? [String: [String]] ?? [:]
        section("Network Partitions", partitions.keys.sorted().map { "Node \($0) cannot communicate with \(partitions[$0]!.joined(separator: ", "))" })
        let listeners = s["listeners"] as? [String: [[String: Any]]] ?? [:]
        section("Listeners", listeners.keys.sorted().flatMap { n in
            (listeners[n] ?? []).map { "Node: \(n), interface: \($0["interface"] ?? ""), port: \($0["port"] ?? ""), protocol: \($0["protocol"] ?? "")" }
        })
        section("Metadata store", ["Leader: \(s["metadata_leader"] as? String ?? "(none: no majority reachable)")", "Voters: \(names("voters").joined(separator: ", "))"])
        section("Feature flags", [])
    }
}

/// The node's own action endpoints answer 204 (or an error with the reason).
private func act(_ node: NodeOptions, _ path: String, _ body: [String: Any] = [:], says: String) throws {
    _ = try node.client.call("POST", path, body: body)
    node.say(says)
}

struct JoinCluster: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "join_cluster",
        abstract: "Makes the node (its app stopped) leave everything it has and join the cluster of another node.",
        discussion: "NODE is warren@host (at the default cluster port) or HOST:PORT of the other node's cluster listener.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "A member of the cluster to join.") var target: String
    func execute() throws {
        try act(node, "/api/warren/cluster/join", ["node": target], says: "Clustering node with \(target)")
    }
}

struct ForgetClusterNode: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "forget_cluster_node", abstract: "Removes a stopped node from the cluster (asked of a running member).")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The node to forget.") var member: String
    func execute() throws {
        try act(node, "/api/warren/cluster/forget", ["node": member], says: "Removing node \(member) from the cluster")
    }
}

struct Reset: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "reset", abstract: "Returns the node (its app stopped) to a new, empty cluster of one; the others forget it.")
    @OptionGroup var node: NodeOptions
    func execute() throws {
        try act(node, "/api/warren/cluster/reset", says: "Resetting node")
    }
}

struct StopApp: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "stop_app", abstract: "Stops the node's AMQP listeners and closes its clients; the process and the cluster links stay.")
    @OptionGroup var node: NodeOptions
    func execute() throws {
        try act(node, "/api/warren/app/stop", says: "Stopping the application on the node")
    }
}

struct StartApp: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "start_app", abstract: "Starts the node's AMQP listeners again.")
    @OptionGroup var node: NodeOptions
    func execute() throws {
        try act(node, "/api/warren/app/start", says: "Starting the application on the node")
    }
}

struct SetClusterName: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "set_cluster_name", abstract: "Sets the cluster's name.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The new name.") var name: String
    func execute() throws {
        _ = try node.client.call("PUT", "/api/cluster-name", body: ["name": name])
        node.say("Setting cluster name to \(name)")
    }
}
