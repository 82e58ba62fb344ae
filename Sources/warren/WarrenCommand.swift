import ArgumentParser
import Foundation
import Logging
import WarrenCore
import WarrenNode
import WarrenCluster
import WarrenStore
import WarrenLog

@main
struct WarrenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren",
        abstract: "Warren: an AMQP 0-9-1 message broker that RabbitMQ clients use unchanged.",
        subcommands: [Serve.self, Repair.self, Health.self],
        defaultSubcommand: Serve.self)
}

/// Runs a node (what `warren` does without a subcommand).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node (the default).",
        discussion: """
            Every option can also be set by the environment variable WARREN_<NAME> (e.g. \
            WARREN_AMQP_PORT) or by the key <name> in the config file (e.g. amqp_port = 5672). \
            Flags win over the environment, the environment over the file.
            """)

    @Option(name: .long, help: "Config file: 'key = value' lines.") var config: String?
    @Option(name: .customLong("data-dir"), help: "Directory for the node's data (created if missing).") var dataDir: String?
    @Option(name: .customLong("amqp-port"), help: "AMQP port; 0 picks a free one (default 5672).") var amqpPort: String?
    @Option(name: .long, help: "Address to listen on (default 0.0.0.0).") var bind: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.") var logLevel: String?
    @Option(name: .customLong("default-user"), help: "User created at boot (default guest).") var defaultUser: String?
    @Option(name: .customLong("default-pass"), help: "Password of the default user (default guest).") var defaultPass: String?
    @Option(name: .customLong("default-vhost"), help: "Virtual host created at boot (default /).") var defaultVhost: String?
    @Option(name: .customLong("loopback-users"), help: "Users limited to loopback logins; 'none' for nobody.") var loopbackUsers: String?
    @Option(name: .long, help: "Heartbeat the server proposes, seconds (default 60).") var heartbeat: String?
    @Option(name: .customLong("frame-max"), help: "Largest frame, bytes (default 131072).") var frameMax: String?
    @Option(name: .customLong("channel-max"), help: "Most channels per connection (default 2047).") var channelMax: String?
    @Option(name: .customLong("max-message-size"), help: "Largest message body, bytes (default 128 MiB, as RabbitMQ 3.x).") var maxMessageSize: String?
    @Option(name: .customLong("handshake-timeout"), help: "Seconds to complete the AMQP handshake (default 10).") var handshakeTimeout: String?
    @Option(name: .customLong("shutdown-timeout"), help: "Seconds to wait for clients at shutdown (default 10).") var shutdownTimeout: String?
    @Option(name: .customLong("load-definitions"), help: "Definitions file (RabbitMQ's JSON format) to import at boot.") var loadDefinitions: String?
    @Option(name: .customLong("memory-high-watermark"), help: "Memory at which publishers are blocked: 0.4 of RAM (default) or a size (2GB).")
    var memoryHighWatermark: String?
    @Option(name: .customLong("disk-free-limit"), help: "Free disk below which publishers are blocked (default 50MB).") var diskFreeLimit: String?
    @Option(name: .customLong("plain-listener"), help: "on or off: the plain AMQP listener (default on).") var plainListener: String?
    @Option(name: .customLong("amqps-port"), help: "AMQP over TLS port, with --tls-cert (default 5671).") var amqpsPort: String?
    @Option(name: .customLong("tls-cert"), help: "Server certificate chain (PEM); turns AMQPS on.") var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "Private key of the server certificate (PEM).") var tlsKey: String?
    @Option(name: .customLong("tls-ca-cert"), help: "CA bundle (PEM) to verify client certificates.") var tlsCACert: String?
    @Option(name: .customLong("tls-verify-peer"), help: "on or off: verify client certificates (default off).") var tlsVerifyPeer: String?
    @Option(name: .customLong("tls-fail-if-no-peer-cert"), help: "on or off: refuse clients without a certificate (default off).")
    var tlsFailIfNoPeerCert: String?
    @Option(name: .customLong("tls-min-version"), help: "tlsv1.2 (default) or tlsv1.3.") var tlsMinVersion: String?
    @Option(name: .customLong("tls-ciphers"), help: "OpenSSL cipher list for TLS 1.2 (default: ECDHE + AEAD only).") var tlsCiphers: String?
    @Option(name: .customLong("tls-cert-login-from"), help: "distinguished_name (default), common_name, subject_alternative_name:dns|email.")
    var tlsCertLoginFrom: String?
    @Option(name: .customLong("max-connections"), help: "Connections the node accepts at most ('infinity', the default, for no limit).")
    var maxConnections: String?
    @Option(name: .customLong("tls-handshake-timeout"), help: "Seconds to finish the TLS handshake (default 5).") var tlsHandshakeTimeout: String?
    @Option(name: .long, help: "on or off: the management HTTP API and web UI (default on).") var management: String?
    @Option(name: .customLong("management-port"), help: "Management API and web UI port; 0 picks a free one (default 15672).")
    var managementPort: String?
    @Option(name: .customLong("management-max-body-size"), help: "Largest management API request body, bytes (default 20000000).")
    var managementMaxBodySize: String?
    @Option(name: .long, help: "on or off: the Prometheus /metrics endpoint (default on).") var prometheus: String?
    @Option(name: .customLong("prometheus-port"), help: "Prometheus port; 0 picks a free one (default 15692).") var prometheusPort: String?

    @Option(name: .customLong("node-name"), help: "This node's name in the cluster (default warren@<short host name>).") var nodeName: String?
    @Option(name: .customLong("cluster-port"), help: "Port for the other nodes of the cluster; 0 picks a free one (default 25672).")
    var clusterPort: String?
    @Option(name: .customLong("cluster-address"), help: "HOST:PORT the other nodes reach this one at.") var clusterAddress: String?
    @Option(name: .customLong("cluster-name"), help: "Name of a cluster this node founds (default: its node name).") var clusterName: String?
    @Option(name: .customLong("cluster-seeds"), help: "Comma-separated HOST:PORT of the seed nodes; the first founds the cluster.")
    var clusterSeeds: String?
    @Option(name: .customLong("cluster-discovery"), help: "dns:SERVICE: peers are this StatefulSet's pods behind a headless service (instead of seeds).")
    var clusterDiscovery: String?
    @Option(name: .customLong("cluster-secret"), help: "The secret every node of the cluster must know.") var clusterSecret: String?
    @Option(name: .customLong("cluster-secret-file"), help: "File holding the cluster secret (default DATA_DIR/cluster-secret).")
    var clusterSecretFile: String?
    @Option(name: .customLong("cluster-tls-cert"), help: "Certificate (PEM) for the cluster links (mutual TLS).") var clusterTLSCert: String?
    @Option(name: .customLong("cluster-tls-key"), help: "Private key of the cluster certificate (PEM).") var clusterTLSKey: String?
    @Option(name: .customLong("cluster-tls-ca-cert"), help: "CA bundle (PEM) for the other nodes' certificates.") var clusterTLSCACert: String?
    @Option(name: .customLong("cluster-dial"), help: "NAME=HOST:PORT,...: dial these nodes there (warren-cluster's proxy).")
    var clusterDial: String?
    @Option(name: .customLong("metadata-timeout"), help: "Seconds a definition change waits to be committed (default 5).")
    var metadataTimeout: String?
    @Option(name: .customLong("metadata-snapshot-every"), help: "Metadata log entries between snapshots, at least (default 8192).")
    var metadataSnapshotEvery: String?
    @Option(name: .customLong("queue-link-timeout"), help: "Seconds a silent member is waited for before its queues count as down here (default 10).")
    var queueLinkTimeout: String?

    func run() async throws {
        var flags: [String: String] = [:]
        let given: [(String, String?)] = [
            ("config", config), ("data-dir", dataDir), ("amqp-port", amqpPort), ("bind", bind), ("log-level", logLevel),
            ("default-user", defaultUser), ("default-pass", defaultPass), ("default-vhost", defaultVhost),
            ("loopback-users", loopbackUsers), ("heartbeat", heartbeat), ("frame-max", frameMax),
            ("channel-max", channelMax), ("max-message-size", maxMessageSize),
            ("handshake-timeout", handshakeTimeout), ("shutdown-timeout", shutdownTimeout),
            ("load-definitions", loadDefinitions), ("memory-high-watermark", memoryHighWatermark), ("disk-free-limit", diskFreeLimit),
            ("plain-listener", plainListener), ("amqps-port", amqpsPort), ("tls-cert", tlsCert), ("tls-key", tlsKey),
            ("tls-ca-cert", tlsCACert), ("tls-verify-peer", tlsVerifyPeer), ("tls-fail-if-no-peer-cert", tlsFailIfNoPeerCert),
            ("tls-min-version", tlsMinVersion), ("tls-ciphers", tlsCiphers), ("tls-cert-login-from", tlsCertLoginFrom),
            ("tls-handshake-timeout", tlsHandshakeTimeout), ("max-connections", maxConnections),
            ("management", management), ("management-port", managementPort), ("management-max-body-size", managementMaxBodySize),
            ("prometheus", prometheus),
            ("prometheus-port", prometheusPort),
            ("node-name", nodeName), ("cluster-port", clusterPort), ("cluster-address", clusterAddress),
            ("cluster-name", clusterName), ("cluster-seeds", clusterSeeds), ("cluster-discovery", clusterDiscovery), ("cluster-secret", clusterSecret),
            ("cluster-secret-file", clusterSecretFile), ("cluster-tls-cert", clusterTLSCert), ("cluster-tls-key", clusterTLSKey),
            ("cluster-tls-ca-cert", clusterTLSCACert), ("cluster-dial", clusterDial), ("metadata-timeout", metadataTimeout),
            ("metadata-snapshot-every", metadataSnapshotEvery), ("queue-link-timeout", queueLinkTimeout),
        ]
        for (name, value) in given { if let value { flags[name] = value } }

        let configuration: NodeConfiguration
        do {
            configuration = try NodeConfiguration.load(flags: flags, environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("warren: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "warren")
        do {
            let node = try WarrenNode(configuration: configuration, logger: logger)
            try await node.run()
        } catch let error as DataDirectory.Error {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        } catch let error as AdminError {
            logger.critical("cannot load definitions: \(error.description)")
            throw ExitCode(1)
        } catch let error as StoreError {
            logger.critical("cannot start: \(error.description)")
            throw ExitCode(1)
        } catch let error as StartError {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
    }
}

/// `warren repair`: makes a store that refuses to start usable again, dropping what cannot be
/// read (docs/storage.md).
struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Repair a data directory whose store or Raft log refuses to start (the node must be stopped).")

    @Option(name: .customLong("data-dir"), help: "The node's data directory.") var dataDir: String?
    @Option(name: .long, help: "Config file, to find the data directory in.") var config: String?

    func run() throws {
        var flags: [String: String] = [:]
        if let dataDir { flags["data-dir"] = dataDir }
        if let config { flags["config"] = config }
        let configuration = try NodeConfiguration.load(flags: flags, environment: ProcessInfo.processInfo.environment)
        let path = configuration.resolvedDataDirectory()
        let lock: DataDirectory
        do {
            lock = try DataDirectory(path: path)
        } catch let error as DataDirectory.Error {
            FileHandle.standardError.write(Data("warren repair: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        do {
            var report = try StoreRepair.repair(directory: (lock.path as NSString).appendingPathComponent("store"))
            let raft = try RaftWALRepair.repair(directory: (lock.path as NSString).appendingPathComponent("raft"))
            report.actions += raft.actions
            report.bytesDropped += raft.bytesDropped
            if report.isClean {
                print("warren repair: nothing to repair in \(path)")
            } else {
                for action in report.actions { print("warren repair: \(action)") }
                print("warren repair: done; \(report.bytesDropped) bytes dropped. The node can start.")
            }
        } catch {
            FileHandle.standardError.write(Data("warren repair: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        _ = lock
    }
}
