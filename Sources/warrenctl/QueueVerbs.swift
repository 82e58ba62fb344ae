import ArgumentParser
import Foundation
import ManagementClient

/// rabbitmq-queues' verbs for replicated (quorum) queues, through the management API of the
/// node the options reach (any member: each request goes where it must).
private func queuePath(_ node: NodeOptions, _ queue: String) -> String {
    "/api/queues/\(node.v)/\(ManagementClient.segment(queue))"
}

struct QuorumStatus: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "quorum_status", abstract: "Shows the Raft state of each member of a replicated queue's group.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The queue.") var queue: String
    func execute() throws {
        let rows = try node.client.list(queuePath(node, queue) + "/quorum-status").map { item -> [String: Any] in
            [
                "Node Name": item["node"] ?? "", "Raft State": item["raft_state"] ?? "", "Log Index": item["log_index"] ?? 0,
                "Commit Index": item["commit_index"] ?? 0, "Snapshot Index": item["snapshot_index"] ?? 0, "Term": item["term"] ?? 0,
                "Machine Version": item["machine_version"] ?? 1,
            ]
        }
        node.say("Status of quorum queue \(queue) ...")
        Table.print(
            rows.sorted { "\($0["Node Name"]!)" < "\($1["Node Name"]!)" },
            columns: ["Node Name", "Raft State", "Log Index", "Commit Index", "Snapshot Index", "Term", "Machine Version"],
            json: node.formatter == "json")
    }
}

struct AddMember: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "add_member", abstract: "Adds a node to a replicated queue's members (it gets a copy of the queue).")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The queue.") var queue: String
    @Argument(help: "The node to add.") var member: String
    func execute() throws {
        node.say("Adding a replica for queue \(queue) on node \(member) ...")
        _ = try node.client.call("POST", queuePath(node, queue) + "/members", body: ["node": member])
    }
}

struct DeleteMember: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "delete_member", abstract: "Removes a node from a replicated queue's members.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The queue.") var queue: String
    @Argument(help: "The node to remove.") var member: String
    func execute() throws {
        node.say("Removing a replica for queue \(queue) on node \(member) ...")
        _ = try node.client.call("DELETE", queuePath(node, queue) + "/members/\(ManagementClient.segment(member))")
    }
}

struct TransferLeadership: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "transfer_leadership", abstract: "Hands a replicated queue's leadership to another of its members.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The queue.") var queue: String
    @Argument(help: "The member to lead it.") var member: String
    func execute() throws {
        node.say("Transferring leadership of queue \(queue) to node \(member) ...")
        _ = try node.client.call("POST", queuePath(node, queue) + "/transfer-leadership", body: ["node": member])
    }
}

/// grow and shrink: one node added to, or removed from, many queues' members.
private func changeMembership(_ node: NodeOptions, _ verb: String, _ body: [String: Any], _ says: String) throws {
    node.say(says)
    let rows = (try node.client.call("POST", "/api/warren/\(verb)", body: body) as? [[String: Any]]) ?? []
    Table.print(rows, columns: ["vhost", "name", "size", "result"], json: node.formatter == "json")
}

struct Grow: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "grow", abstract: "Adds a node to the members of every matching replicated queue (all, or those with an even number).")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The node to add.") var member: String
    @Argument(help: "all or even.") var strategy: String
    @Option(help: "Only vhosts matching this pattern.") var vhostPattern = ".*"
    @Option(help: "Only queues matching this pattern.") var queuePattern = ".*"
    func execute() throws {
        try changeMembership(
            node, "grow", ["node": member, "strategy": strategy, "vhost_pattern": vhostPattern, "queue_pattern": queuePattern],
            "Growing \(strategy) quorum queues matching \(queuePattern) in vhosts matching \(vhostPattern) to \(member) ...")
    }
}

struct Shrink: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "shrink", abstract: "Removes a node from the members of every replicated queue it is a member of.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The node to remove.") var member: String
    func execute() throws {
        try changeMembership(node, "shrink", ["node": member], "Shrinking all quorum queues on \(member) ...")
    }
}

struct Rebalance: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "rebalance", abstract: "Spreads the leaders of replicated queues over the nodes, as evenly as their members allow.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "quorum or all (both mean every replicated queue).") var type: String = "all"
    @Option(help: "Only vhosts matching this pattern.") var vhostPattern = ".*"
    @Option(help: "Only queues matching this pattern.") var queuePattern = ".*"
    func execute() throws {
        node.say("Re-balancing leaders of replicated queues ...")
        let rows = (try node.client.call("POST", "/api/warren/rebalance", body: ["vhost_pattern": vhostPattern, "queue_pattern": queuePattern])
            as? [[String: Any]]) ?? []
        Table.print(rows, columns: ["vhost", "name", "from", "to"], json: node.formatter == "json")
    }
}
