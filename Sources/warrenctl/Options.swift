import ArgumentParser
import Foundation
import ManagementClient

/// Where the node is and who asks, for every verb. Defaults reach a local node as guest;
/// WARRENCTL_HOST, WARRENCTL_PORT, WARRENCTL_USER and WARRENCTL_PASSWORD override them.
struct NodeOptions: ParsableArguments {
    @Option(name: .long, help: "Management API host (default localhost).") var host: String?
    @Option(name: .long, help: "Management API port (default 15672).") var port: Int?
    @Option(name: .long, help: "User to log in as (default guest).") var username: String?
    @Option(name: .long, help: "Password (default guest).") var password: String?
    @Option(name: [.customShort("p"), .long], help: "Virtual host (default /).") var vhost: String = "/"
    @Flag(name: [.short, .long], help: "Print only the data: no 'Listing ...' lines.") var quiet = false
    @Option(name: .long, help: "Output format: table (tab-separated, the default) or json.") var formatter: String = "table"

    func validate() throws {
        guard formatter == "table" || formatter == "json" else { throw ValidationError("--formatter must be table or json") }
    }

    var client: ManagementClient {
        let env = ProcessInfo.processInfo.environment
        return ManagementClient(
            host: host ?? env["WARRENCTL_HOST"] ?? "localhost", port: port ?? env["WARRENCTL_PORT"].flatMap(Int.init) ?? 15672,
            user: username ?? env["WARRENCTL_USER"] ?? "guest", password: password ?? env["WARRENCTL_PASSWORD"] ?? "guest")
    }

    var v: String { ManagementClient.segment(vhost) }

    /// An informational line, as rabbitmqctl prints before its data, unless --quiet.
    func say(_ line: String) {
        if !quiet { print(line) }
    }
}

/// Runs a verb, turning failures into rabbitmqctl-style messages and exit codes.
protocol CtlVerb: ParsableCommand {
    var node: NodeOptions { get }
    func execute() throws
}

extension CtlVerb {
    func run() throws {
        do {
            try execute()
        } catch let e as CtlError {
            FileHandle.standardError.write(Data("Error: \(e.message)\n".utf8))
            throw ExitCode(e.exitCode)
        }
    }
}
