import ArgumentParser
import Foundation
import ManagementClient

struct AddUser: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "add_user", abstract: "Adds a user (no tags, no permissions).")
    @OptionGroup var node: NodeOptions
    @Argument var username: String
    @Argument var password: String
    func execute() throws {
        node.say("Adding user \"\(username)\" ...")
        let path = "/api/users/\(ManagementClient.segment(username))"
        if (try? node.client.call("GET", path)) != nil { throw CtlError.dataError("user \"\(username)\" already exists") }
        _ = try node.client.call("PUT", path, body: ["password": password, "tags": ""])
    }
}

struct DeleteUser: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "delete_user", abstract: "Deletes a user.")
    @OptionGroup var node: NodeOptions
    @Argument var username: String
    func execute() throws {
        node.say("Deleting user \"\(username)\" ...")
        _ = try node.client.call("DELETE", "/api/users/\(ManagementClient.segment(username))")
    }
}

/// Changes one thing of an existing user: PUT keeps what the body does not name (the
/// password without `password`, the tags without `tags`), so only that thing is sent. The GET
/// first keeps a missing user from being created.
func updateUser(_ node: NodeOptions, _ username: String, _ change: [String: Any]) throws {
    let path = "/api/users/\(ManagementClient.segment(username))"
    _ = try node.client.call("GET", path)
    _ = try node.client.call("PUT", path, body: change)
}

struct ChangePassword: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "change_password", abstract: "Changes a user's password.")
    @OptionGroup var node: NodeOptions
    @Argument var username: String
    @Argument var password: String
    func execute() throws {
        node.say("Changing password for user \"\(username)\" ...")
        try updateUser(node, username, ["password": password])
    }
}

struct SetUserTags: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "set_user_tags", abstract: "Sets a user's tags (none clears them).")
    @OptionGroup var node: NodeOptions
    @Argument var username: String
    @Argument var tags: [String] = []
    func execute() throws {
        node.say("Setting tags for user \"\(username)\" to [\(tags.joined(separator: ", "))] ...")
        try updateUser(node, username, ["tags": tags.joined(separator: ",")])
    }
}

struct AddVHost: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "add_vhost", abstract: "Adds a virtual host.")
    @OptionGroup var node: NodeOptions
    @Argument var name: String
    @Option(name: .long, help: "Description.") var description: String = ""
    func execute() throws {
        node.say("Adding vhost \"\(name)\" ...")
        _ = try node.client.call("PUT", "/api/vhosts/\(ManagementClient.segment(name))", body: ["description": description])
    }
}

struct DeleteVHost: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "delete_vhost", abstract: "Deletes a virtual host, its objects and permissions; its connections are closed.")
    @OptionGroup var node: NodeOptions
    @Argument var name: String
    func execute() throws {
        node.say("Deleting vhost \"\(name)\" ...")
        _ = try node.client.call("DELETE", "/api/vhosts/\(ManagementClient.segment(name))")
    }
}

struct SetPermissions: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "set_permissions", abstract: "Sets a user's permissions in a vhost (-p).")
    @OptionGroup var node: NodeOptions
    @Argument var username: String
    @Argument var configure: String
    @Argument var write: String
    @Argument var read: String
    func execute() throws {
        node.say("Setting permissions for user \"\(username)\" in vhost \"\(node.vhost)\" ...")
        _ = try node.client.call(
            "PUT", "/api/permissions/\(node.v)/\(ManagementClient.segment(username))", body: ["configure": configure, "write": write, "read": read])
    }
}

struct ClearPermissions: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "clear_permissions", abstract: "Removes a user's permissions in a vhost (-p).")
    @OptionGroup var node: NodeOptions
    @Argument var username: String
    func execute() throws {
        node.say("Clearing permissions for user \"\(username)\" in vhost \"\(node.vhost)\" ...")
        _ = try node.client.call("DELETE", "/api/permissions/\(node.v)/\(ManagementClient.segment(username))")
    }
}

struct SetPolicy: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "set_policy", abstract: "Sets a policy in a vhost (-p).")
    @OptionGroup var node: NodeOptions
    @Option(name: .long, help: "Priority (default 0).") var priority: Int = 0
    @Option(name: .customLong("apply-to"), help: "queues, exchanges or all (default all).") var applyTo: String = "all"
    @Argument var name: String
    @Argument var pattern: String
    @Argument(help: "The definition, JSON.") var definition: String
    func execute() throws {
        guard let def = try? JSONSerialization.jsonObject(with: Data(definition.utf8)) as? [String: Any] else {
            throw CtlError.usage("the policy definition must be a JSON object, got \(definition)")
        }
        node.say("Setting policy \"\(name)\" for pattern \"\(pattern)\" to \"\(definition)\" with priority \"\(priority)\" for vhost \"\(node.vhost)\" ...")
        _ = try node.client.call(
            "PUT", "/api/policies/\(node.v)/\(ManagementClient.segment(name))",
            body: ["pattern": pattern, "definition": def, "priority": priority, "apply-to": applyTo])
    }
}

struct ClearPolicy: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "clear_policy", abstract: "Removes a policy from a vhost (-p).")
    @OptionGroup var node: NodeOptions
    @Argument var name: String
    func execute() throws {
        node.say("Clearing policy \"\(name)\" on vhost \"\(node.vhost)\" ...")
        _ = try node.client.call("DELETE", "/api/policies/\(node.v)/\(ManagementClient.segment(name))")
    }
}

struct SetParameter: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "set_parameter", abstract: "Sets a runtime parameter of a vhost (-p): federation-upstream, federation-upstream-set...")
    @OptionGroup var node: NodeOptions
    @Argument var component: String
    @Argument var name: String
    @Argument(help: "The value, JSON.") var value: String
    func execute() throws {
        guard let v = try? JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed]) else {
            throw CtlError.usage("the value must be JSON, got \(value)")
        }
        node.say("Setting runtime parameter \"\(name)\" for component \"\(component)\" to \"\(value)\" in vhost \"\(node.vhost)\" ...")
        _ = try node.client.call(
            "PUT", "/api/parameters/\(ManagementClient.segment(component))/\(node.v)/\(ManagementClient.segment(name))",
            body: ["vhost": node.vhost, "component": component, "name": name, "value": v])
    }
}

struct ClearParameter: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "clear_parameter", abstract: "Clears a runtime parameter of a vhost (-p).")
    @OptionGroup var node: NodeOptions
    @Argument var component: String
    @Argument var name: String
    func execute() throws {
        node.say("Clearing runtime parameter \"\(name)\" for component \"\(component)\" on vhost \"\(node.vhost)\" ...")
        _ = try node.client.call("DELETE", "/api/parameters/\(ManagementClient.segment(component))/\(node.v)/\(ManagementClient.segment(name))")
    }
}

struct SetGlobalParameter: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "set_global_parameter", abstract: "Sets a global runtime parameter (e.g. warren-leader-spreading, warren-replica-healing).")
    @OptionGroup var node: NodeOptions
    @Argument var name: String
    @Argument(help: "The value, JSON (a string is quoted: '\"off\"').") var value: String
    func execute() throws {
        guard let v = try? JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed]) else {
            throw CtlError.usage("the value must be JSON, got \(value) (a string is written '\"off\"')")
        }
        node.say("Setting global runtime parameter \"\(name)\" to \"\(value)\" ...")
        _ = try node.client.call("PUT", "/api/global-parameters/\(ManagementClient.segment(name))", body: ["name": name, "value": v])
    }
}

struct ClearGlobalParameter: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "clear_global_parameter", abstract: "Clears a global runtime parameter.")
    @OptionGroup var node: NodeOptions
    @Argument var name: String
    func execute() throws {
        node.say("Clearing global runtime parameter \"\(name)\" ...")
        _ = try node.client.call("DELETE", "/api/global-parameters/\(ManagementClient.segment(name))")
    }
}

struct PurgeQueue: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "purge_queue", abstract: "Removes every ready message from a queue.")
    @OptionGroup var node: NodeOptions
    @Argument var queue: String
    func execute() throws {
        node.say("Purging queue '\(queue)' in vhost '\(node.vhost)' ...")
        _ = try node.client.call("DELETE", "/api/queues/\(node.v)/\(ManagementClient.segment(queue))/contents")
    }
}

struct DeleteQueue: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "delete_queue", abstract: "Deletes a queue.")
    @OptionGroup var node: NodeOptions
    @Flag(name: [.customShort("e"), .customLong("if-empty")], help: "Only if it has no messages.") var ifEmpty = false
    @Flag(name: [.customShort("u"), .customLong("if-unused")], help: "Only if it has no consumers.") var ifUnused = false
    @Argument var queue: String
    func execute() throws {
        node.say("Deleting queue '\(queue)' on vhost '\(node.vhost)' ...")
        var query: [String] = []
        if ifEmpty { query.append("if-empty=true") }
        if ifUnused { query.append("if-unused=true") }
        let path = "/api/queues/\(node.v)/\(ManagementClient.segment(queue))" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        _ = try node.client.call("DELETE", path)
    }
}

struct CloseConnection: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "close_connection", abstract: "Closes a client connection (320 CONNECTION_FORCED with the explanation).")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The connection's name, as list_connections name shows it.") var connection: String
    @Argument var explanation: String
    func execute() throws {
        node.say("Closing connection \(connection), reason: \(explanation)...")
        _ = try node.client.call("DELETE", "/api/connections/\(ManagementClient.segment(connection))", headers: ["X-Reason": explanation])
    }
}

struct ExportDefinitions: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "export_definitions", abstract: "Writes the definitions (RabbitMQ's JSON format) to a file, or - for stdout.")
    @OptionGroup var node: NodeOptions
    @Argument var path: String
    func execute() throws {
        let defs = try node.client.call("GET", "/api/definitions") ?? [:]
        let data = try JSONSerialization.data(withJSONObject: defs, options: [.prettyPrinted, .sortedKeys])
        if path == "-" {
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        } else {
            node.say("Exporting definitions in JSON to a file at \"\(path)\" ...")
            guard FileManager.default.createFile(atPath: path, contents: data) else { throw CtlError.dataError("cannot write \(path)") }
        }
    }
}

struct ImportDefinitions: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "import_definitions", abstract: "Imports definitions (RabbitMQ's JSON format) from a file, or - for stdin.")
    @OptionGroup var node: NodeOptions
    @Argument var path: String
    func execute() throws {
        let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: path)
        guard let data else { throw CtlError.dataError("cannot read \(path)") }
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else { throw CtlError.dataError("\(path) is not a JSON object") }
        node.say("Importing definitions in JSON from a file at \"\(path)\" ...")
        _ = try node.client.call("POST", "/api/definitions", body: data)
    }
}

struct Status: CtlVerb {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Shows the node's status.")
    @OptionGroup var node: NodeOptions
    func execute() throws {
        let overview = try node.client.call("GET", "/api/overview") as? [String: Any] ?? [:]
        let n = try node.client.list("/api/nodes").first ?? [:]
        if node.formatter == "json" {
            Swift.print(Table.jsonValue(["overview": overview, "node": n]))
            return
        }
        node.say("Status of node \(overview["node"] ?? "") ...")
        let totals = overview["object_totals"] as? [String: Any] ?? [:]
        func mb(_ key: String) -> String { String(format: "%.1f MB", ((n[key] as? NSNumber)?.doubleValue ?? 0) / 1_000_000) }
        let lines: [(String, Any?)] = [
            ("Product", "\(overview["product_name"] ?? "") \(overview["product_version"] ?? "")"),
            ("Node", overview["node"]), ("Cluster name", overview["cluster_name"]), ("OS PID", n["os_pid"]),
            ("Uptime (seconds)", ((n["uptime"] as? NSNumber)?.intValue ?? 0) / 1000),
            ("Memory used", mb("mem_used")), ("Memory high watermark", mb("mem_limit")), ("Memory alarm", n["mem_alarm"]),
            ("Free disk", mb("disk_free")), ("Free disk limit", mb("disk_free_limit")), ("Disk alarm", n["disk_free_alarm"]),
            ("File descriptors", "\(n["fd_used"] ?? 0) of \(n["fd_total"] ?? 0)"),
            ("Connections", totals["connections"]), ("Channels", totals["channels"]), ("Queues", totals["queues"]),
            ("Consumers", totals["consumers"]),
        ]
        for (k, v) in lines { Swift.print("\(k): \(Table.text(v, column: k))") }
        let listeners = overview["listeners"] as? [[String: Any]] ?? []
        Swift.print("Listeners:")
        for l in listeners { Swift.print("  \(l["protocol"] ?? "") on \(l["ip_address"] ?? ""):\(l["port"] ?? "")") }
    }
}
