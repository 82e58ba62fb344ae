import ArgumentParser
import Foundation
import ManagementClient

/// One rabbitmqctl list verb: where its rows come from, its columns (default first) and how
/// each is read from the API's JSON.
struct Listing: Sendable {
    let verb: String
    let abstract: String
    let noun: String
    let path: @Sendable (NodeOptions) -> String
    let defaults: [String]
    let columns: [(String, @Sendable ([String: Any]) -> Any?)]
    let info: @Sendable (NodeOptions) -> String
    /// Which of the API's items are listed (all when nil).
    var keep: (@Sendable (NodeOptions, [String: Any]) -> Bool)? = nil

    static func field(_ key: String) -> @Sendable ([String: Any]) -> Any? { { $0[key] } }
    static func nested(_ a: String, _ b: String) -> @Sendable ([String: Any]) -> Any? { { ($0[a] as? [String: Any])?[b] } }
    static func fields(_ names: [String]) -> [(String, @Sendable ([String: Any]) -> Any?)] { names.map { ($0, field($0)) } }

    var columnNames: [String] { columns.map(\.0) }

    func run(_ node: NodeOptions, _ requested: [String]) throws {
        let chosen = requested.isEmpty ? defaults : requested
        let unknown = chosen.filter { c in !columns.contains { $0.0 == c } }
        guard unknown.isEmpty else {
            throw CtlError.usage("Invalid \(noun) info item(s): \(unknown.joined(separator: ", ")). Valid items: \(columnNames.joined(separator: ", "))")
        }
        let items = try node.client.list(path(node)).filter { keep?(node, $0) ?? true }
        let rows = items.map { item -> [String: Any] in
            var row: [String: Any] = [:]
            for (name, read) in columns where chosen.contains(name) { row[name] = read(item) ?? NSNull() }
            return row
        }
        node.say(info(node))
        Table.print(rows, columns: chosen, json: node.formatter == "json")
    }

    static let queues = Listing(
        verb: "list_queues", abstract: "Lists queues and their properties.",
        noun: "queue", path: { "/api/queues/\($0.v)" }, defaults: ["name", "messages"],
        columns: fields([
            "name", "messages", "messages_ready", "messages_unacknowledged", "consumers", "durable", "auto_delete", "exclusive",
            "arguments", "policy", "operator_policy", "memory", "state", "type", "message_bytes", "message_bytes_ready",
            "exclusive_consumer_tag", "single_active_consumer_tag", "vhost", "node",
        ]),
        info: { "Listing queues for vhost \($0.vhost) ..." })

    static let exchanges = Listing(
        verb: "list_exchanges", abstract: "Lists exchanges.",
        noun: "exchange", path: { "/api/exchanges/\($0.v)" }, defaults: ["name", "type"],
        columns: fields(["name", "type", "durable", "auto_delete", "internal", "arguments", "policy", "vhost"]),
        info: { "Listing exchanges for vhost \($0.vhost) ..." })

    static let bindings = Listing(
        verb: "list_bindings", abstract: "Lists bindings, the default exchange's implicit ones too.",
        noun: "binding", path: { "/api/bindings/\($0.v)" },
        defaults: ["source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"],
        columns: [
            ("source_name", field("source")), ("source_kind", { _ in "exchange" }), ("destination_name", field("destination")),
            ("destination_kind", field("destination_type")), ("routing_key", field("routing_key")), ("arguments", field("arguments")),
            ("vhost", field("vhost")),
        ],
        info: { "Listing bindings for vhost \($0.vhost)..." })

    static let connections = Listing(
        verb: "list_connections", abstract: "Lists AMQP connections.",
        noun: "connection", path: { _ in "/api/connections" }, defaults: ["user", "peer_host", "peer_port", "state"],
        columns: fields([
            "user", "peer_host", "peer_port", "state", "name", "vhost", "host", "port", "channels", "protocol", "ssl",
            "auth_mechanism", "timeout", "frame_max", "channel_max", "connected_at", "client_properties", "user_provided_name", "type", "node",
        ]),
        info: { _ in "Listing connections ..." })

    static let channels = Listing(
        verb: "list_channels", abstract: "Lists channels (named; Warren has no Erlang pids).",
        noun: "channel", path: { _ in "/api/channels" }, defaults: ["name", "user", "consumer_count", "messages_unacknowledged"],
        columns: fields([
            "name", "user", "consumer_count", "messages_unacknowledged", "number", "vhost", "prefetch_count", "global_prefetch_count",
            "confirm", "transactional", "state", "node",
        ]) + [("connection", nested("connection_details", "name"))],
        info: { _ in "Listing channels ..." })

    static let consumers = Listing(
        verb: "list_consumers", abstract: "Lists consumers in a vhost (channel_pid shows the channel's name).",
        noun: "consumer", path: { "/api/consumers/\($0.v)" },
        defaults: ["queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active", "arguments"],
        columns: [
            ("queue_name", nested("queue", "name")), ("channel_pid", nested("channel_details", "name")), ("consumer_tag", field("consumer_tag")),
            ("ack_required", field("ack_required")), ("prefetch_count", field("prefetch_count")), ("active", field("active")),
            ("activity_status", field("activity_status")), ("exclusive", field("exclusive")), ("arguments", field("arguments")),
        ],
        info: { "Listing consumers in vhost \($0.vhost) ..." })

    static let users = Listing(
        verb: "list_users", abstract: "Lists users and their tags.",
        noun: "user", path: { _ in "/api/users" }, defaults: ["user", "tags"],
        columns: [("user", field("name")), ("tags", field("tags"))],
        info: { _ in "Listing users ..." })

    static let vhosts = Listing(
        verb: "list_vhosts", abstract: "Lists virtual hosts.",
        noun: "vhost", path: { _ in "/api/vhosts" }, defaults: ["name"],
        columns: fields(["name", "description", "tags", "tracing", "messages", "messages_ready", "messages_unacknowledged"]),
        info: { _ in "Listing vhosts ..." })

    static let permissions = Listing(
        verb: "list_permissions", abstract: "Lists the permissions in a vhost.",
        noun: "permission", path: { "/api/vhosts/\($0.v)/permissions" }, defaults: ["user", "configure", "write", "read"],
        columns: fields(["user", "configure", "write", "read"]),
        info: { "Listing permissions for vhost \"\($0.vhost)\" ..." })

    static let policies = Listing(
        verb: "list_policies", abstract: "Lists the policies in a vhost.",
        noun: "policy", path: { "/api/policies/\($0.v)" }, defaults: ["vhost", "name", "pattern", "apply-to", "definition", "priority"],
        columns: fields(["vhost", "name", "pattern", "apply-to", "definition", "priority"]),
        info: { "Listing policies for vhost \"\($0.vhost)\" ..." })

    static let parameters = Listing(
        verb: "list_parameters", abstract: "Lists the runtime parameters of a vhost (-p): federation upstreams and upstream sets, shovels...",
        noun: "parameter", path: { _ in "/api/parameters" }, defaults: ["component", "name", "value"],
        columns: fields(["component", "name", "value"]),
        info: { "Listing runtime parameters for vhost \"\($0.vhost)\" ..." },
        keep: { node, item in item["vhost"] as? String == node.vhost && item["component"] as? String != "operator_policy" })

    static let globalParameters = Listing(
        verb: "list_global_parameters", abstract: "Lists the global runtime parameters.",
        noun: "global parameter", path: { _ in "/api/global-parameters" }, defaults: ["name", "value"],
        columns: fields(["name", "value"]),
        info: { _ in "Listing global runtime parameters ..." })
}

/// Which list a `ListVerb` is: one tiny type per verb, since each subcommand is a type.
protocol ListKind {
    static var listing: Listing { get }
}

/// The list verbs, each `list_<noun>s [columns...]`.
struct ListVerb<Kind: ListKind>: CtlVerb {
    static var configuration: CommandConfiguration {
        let l = Kind.listing
        return CommandConfiguration(
            commandName: l.verb, abstract: l.abstract,
            discussion: "Columns: \(l.columnNames.joined(separator: " ")). Default: \(l.defaults.joined(separator: " ")).")
    }
    @OptionGroup var node: NodeOptions
    @Argument(help: "Columns to show.") var columns: [String] = []
    func execute() throws { try Kind.listing.run(node, columns) }
}

enum QueuesList: ListKind { static let listing = Listing.queues }
enum ExchangesList: ListKind { static let listing = Listing.exchanges }
enum BindingsList: ListKind { static let listing = Listing.bindings }
enum ConnectionsList: ListKind { static let listing = Listing.connections }
enum ChannelsList: ListKind { static let listing = Listing.channels }
enum ConsumersList: ListKind { static let listing = Listing.consumers }
enum UsersList: ListKind { static let listing = Listing.users }
enum VHostsList: ListKind { static let listing = Listing.vhosts }
enum PermissionsList: ListKind { static let listing = Listing.permissions }
enum PoliciesList: ListKind { static let listing = Listing.policies }
enum ParametersList: ListKind { static let listing = Listing.parameters }
enum GlobalParametersList: ListKind { static let listing = Listing.globalParameters }
