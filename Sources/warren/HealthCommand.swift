import ArgumentParser
import Foundation
import ManagementClient
import WarrenNode

/// `warren health alive | ready | quorum-critical`: the checks probes and operators run, as
/// RabbitMQ's `rabbitmq-diagnostics check_running`, `check_port_connectivity` and
/// `rabbitmq-queues check_if_node_is_quorum_critical`. Exit 0 when the check passes, 1 when
/// it fails, with one line that says why. Ports come from flags, the same WARREN_* variables the
/// node reads, or its config file (--config), in the node's order: a probe beside the node
/// needs no flags.
struct Health: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Health checks for probes and operators (exit 0: passes, 1: fails).",
        subcommands: [Alive.self, Ready.self, QuorumCritical.self])

    struct Target: ParsableArguments {
        @Option(help: "The node's host (default 127.0.0.1).") var host = "127.0.0.1"
        @Option(name: .customLong("amqp-port"), help: "AMQP port (default $WARREN_AMQP_PORT or 5672).") var amqpPort: Int?
        @Option(name: .customLong("management-port"), help: "Management API port (default $WARREN_MANAGEMENT_PORT or 15672).")
        var managementPort: Int?
        @Option(help: "User for the management API (default $WARREN_HEALTH_USER or guest).") var user: String?
        @Option(help: "Its password (default $WARREN_HEALTH_PASSWORD or guest).") var password: String?
        @Option(help: "Seconds each check may take.") var timeout: Double = 5

        @Option(help: "The node's config file, for its ports (default $WARREN_CONFIG).") var config: String?

        func env(_ name: String) -> String? { ProcessInfo.processInfo.environment[name] }
        /// The node's own settings (flags, then WARREN_* variables, then its config file), read
        /// by the node's loader; only the ports are used.
        func node() throws -> NodeConfiguration {
            var flags: [String: String] = [:]
            if let config { flags["config"] = config }
            if let amqpPort { flags["amqp-port"] = String(amqpPort) }
            if let managementPort { flags["management-port"] = String(managementPort) }
            do {
                return try NodeConfiguration.load(flags: flags, environment: ProcessInfo.processInfo.environment)
            } catch {
                throw Health.fail("unknown: the node's configuration: \(error)")
            }
        }
        var amqp: Int { get throws { try node().amqpPort } }
        var management: Int { get throws { try node().managementPort } }

        func get(_ path: String) throws -> (status: Int, json: [String: Any]) {
            var client = ManagementClient(
                host: host, port: try management, user: user ?? env("WARREN_HEALTH_USER") ?? "guest",
                password: password ?? env("WARREN_HEALTH_PASSWORD") ?? "guest")
            client.timeout = timeout
            do {
                let (status, json) = try client.request("GET", path)
                return (status, json as? [String: Any] ?? [:])
            } catch let e as CtlError {
                throw Health.fail("unknown: \(e.message)")
            }
        }
    }

    static func fail(_ line: String) -> ExitCode {
        print(line)
        return ExitCode(1)
    }

    struct Alive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The node answers AMQP: a protocol header on its port gets connection.start back (the broker's loop runs).")
        @OptionGroup var target: Target
        func run() throws {
            try Health.checkAlive(target)
            print("alive: \(target.host):\(try target.amqp) answers AMQP")
        }
    }

    struct Ready: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The node serves clients: alive, a member of its cluster, and it knows the cluster's metadata leader (a node cut off from the majority is not ready).")
        @OptionGroup var target: Target
        func run() throws {
            try Health.checkAlive(target)
            let (status, c) = try target.get("/api/warren/cluster")
            guard status == 200 else { throw Health.fail("not ready: the management API answered \(status): \(c["reason"] ?? "")") }
            guard let leader = c["metadata_leader"] as? String else {
                throw Health.fail("not ready: this node knows no metadata leader (cut off from the cluster's majority, or still joining)")
            }
            let running = (c["running_nodes"] as? [String]) ?? []
            print("ready: \(target.host):\(try target.amqp) serves; metadata leader \(leader); \(running.count) node(s) running")
        }
    }

    struct QuorumCritical: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "quorum-critical",
            abstract: "Fails if stopping this node would leave a replicated queue, or the cluster's metadata, without a majority of its members online (run it before stopping a node).")
        @OptionGroup var target: Target
        func run() throws {
            let (status, answer) = try target.get("/api/health/checks/node-is-quorum-critical")
            if status == 200 {
                print("ok: stopping this node leaves every replicated queue and the metadata a majority")
                return
            }
            guard status == 503 else { throw Health.fail("unknown: the management API answered \(status): \(answer["reason"] ?? "")") }
            var lines = ["quorum critical: \(answer["reason"] as? String ?? "")"]
            for q in answer["queues"] as? [[String: Any]] ?? [] {
                let online = (q["online"] as? [String] ?? []).joined(separator: ", ")
                lines.append("  \(q["readable_name"] ?? ""): members online \(online)")
            }
            throw Health.fail(lines.joined(separator: "\n"))
        }
    }

    /// AMQP 0-9-1's protocol header in, a method frame of connection.start (class 10, method
    /// 10) out.
    static func checkAlive(_ t: Target) throws {
        let port = try t.amqp
        let reply: Data
        do {
            reply = try HTTPExchange.exchange(host: t.host, port: port, send: Data("AMQP".utf8) + Data([0, 0, 9, 1]), timeout: t.timeout, until: { $0.count >= 11 })
        } catch {
            throw fail("not alive: \(error)")
        }
        let b = [UInt8](reply)
        guard b.count >= 11, b[0] == 1, b[7] == 0, b[8] == 10, b[9] == 0, b[10] == 10 else {
            throw fail("not alive: \(t.host):\(port) answered, but not with connection.start (\(b.prefix(12).map { String($0) }.joined(separator: " ")))")
        }
    }
}
