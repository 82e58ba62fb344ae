import ArgumentParser
import ManagementClient

/// `federation_status [--only-down]` and `restart_federation_link ID`, as rabbitmqctl's
/// federation plugin commands (the links of every node of the cluster).
struct FederationStatus: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "federation_status", abstract: "Shows the federation links (of every node) and their state; no password is shown.")
    @OptionGroup var node: NodeOptions
    @Flag(help: "Only the links that are not running.") var onlyDown = false

    static let columns = [
        "type", "vhost", "exchange", "queue", "upstream", "upstream_exchange", "upstream_queue", "status", "error", "uri", "local_connection",
        "timestamp", "node", "id",
    ]

    func execute() throws {
        node.say("Listing federation links ...")
        let rows = try node.client.list("/api/federation-links" + (onlyDown ? "/state/down" : ""))
        Table.print(rows.map { r in r.filter { Self.columns.contains($0.key) } }, columns: Self.columns, json: node.formatter == "json")
    }
}

struct RestartFederationLink: CtlVerb {
    static let configuration = CommandConfiguration(
        commandName: "restart_federation_link", abstract: "Restarts a federation link (its id as federation_status shows it).")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The link's id.") var id: String

    func execute() throws {
        guard let link = try node.client.list("/api/federation-links").first(where: { $0["id"] as? String == id }),
            let vhost = link["vhost"] as? String, let owner = link["node"] as? String
        else { throw CtlError.notFound("Federation link with ID \(id) not found") }
        node.say("Restarting federation link \(id) ...")
        _ = try node.client.call(
            "DELETE", "/api/federation-links/vhost/\(ManagementClient.segment(vhost))/\(ManagementClient.segment(id))/\(ManagementClient.segment(owner))/restart")
    }
}
