import Foundation
public import Logging
public import WarrenCore
public import WarrenTLS

/// Everything a node is configured with, loaded with one rule for every setting:
/// command-line flag, then environment variable, then config file, then default.
///
/// A setting named `amqp-port` is the flag `--amqp-port`, the variable `WARREN_AMQP_PORT` and
/// the config key `amqp_port`. Later subsystems add their settings to `NodeConfiguration.settings`.
public struct NodeConfiguration: Sendable {
    public var dataDirectory: String?
    public var amqpPort = 5672
    public var bindAddress = "0.0.0.0"
    public var configFile: String?
    public var logLevel: Logger.Level = .info
    public var handshakeTimeoutSeconds = 10
    public var shutdownTimeoutSeconds = 10
    /// A definitions file (RabbitMQ's JSON format) to import at boot.
    public var loadDefinitions: String?
    public var broker = BrokerConfiguration()
    public var resources = ResourceLimits()
    /// The plain AMQP listener; off leaves only AMQPS.
    public var plainListener = true
    public var amqpsPort = 5671
    /// TLS: the AMQPS listener runs when a certificate is configured.
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var tlsCACertificate: String?
    public var tlsVerifyPeer = false
    public var tlsFailIfNoPeerCertificate = false
    public var tlsMinimumVersion = TLSSettings.Version.tls12
    public var tlsCiphers = TLSSettings.defaultCiphers
    public var tlsLoginFrom = TLSSettings.LoginFrom.distinguishedName
    public var tlsHandshakeTimeoutSeconds = 5
    /// Connections the node accepts in all (nil: no limit, as RabbitMQ's default).
    public var maxConnections: Int?
    /// The management HTTP API and web UI, and the Prometheus endpoint (RabbitMQ's ports).
    public var management = true
    public var managementPort = 15672
    /// Largest request body the management API reads (RabbitMQ's management.http.max_body_size).
    public var managementMaxBodySize = 20_000_000
    public var prometheus = true
    public var prometheusPort = 15692
    /// This node's name in the cluster (RabbitMQ's `rabbit@host` shape).
    public var nodeName = NodeConfiguration.defaultNodeName
    /// The cluster port (Raft and the cluster's own messages between nodes).
    public var clusterPort = 25672
    /// HOST:PORT the other nodes reach this one at (nil: the host name and the cluster port).
    public var clusterAddress: String?
    /// The cluster's name when this node founds it (nil: the node name).
    public var clusterName: String?
    /// HOST:PORT of the seed nodes; the first founds the cluster.
    public var clusterSeeds: [String] = []
    /// "dns:SERVICE": peers are the StatefulSet's pods behind that headless service, instead of
    /// seeds (docs/deploy.md).
    public var clusterDiscovery: String?
    /// How discovery resolves a pod's host name to an address to dial (nil: DNS). Tests
    /// replace it; not a setting.
    public var discoveryResolver: (@Sendable (String) -> String?)?
    public var clusterSecret: String?
    public var clusterSecretFile: String?
    public var clusterTLSCertificate: String?
    public var clusterTLSKey: String?
    public var clusterTLSCACertificate: String?
    /// Dial addresses by node name (NAME=HOST:PORT,...): the cluster driver's proxy.
    public var clusterDial: [String: String] = [:]
    /// Seconds a definition change may wait for the cluster to commit it.
    public var metadataTimeoutSeconds = 5
    public var metadataSnapshotEvery = 8192
    /// Seconds a member may be silent on its queue link before this node gives up on it: its
    /// consumers here are cancelled, publishes waiting for it nacked.
    public var queueLinkTimeoutSeconds = 10

    public static let defaultNodeName = "warren@" + (ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost")

    /// The AMQPS listener's TLS settings, or nil when no certificate is configured.
    public func tlsSettings() throws -> TLSSettings? {
        guard let cert = tlsCertificate else {
            if tlsKey != nil { throw Error("tls-key given without tls-cert") }
            return nil
        }
        guard let key = tlsKey else { throw Error("tls-cert given without tls-key") }
        var t = TLSSettings(certificatePath: cert, keyPath: key, caPath: tlsCACertificate)
        t.verifyPeer = tlsVerifyPeer
        t.failIfNoPeerCertificate = tlsFailIfNoPeerCertificate
        t.minimumVersion = tlsMinimumVersion
        t.ciphers = tlsCiphers
        t.loginFrom = tlsLoginFrom
        return t
    }

    public init() {}

    /// The cluster links' TLS settings (mutual verification), or nil without a certificate.
    public func clusterTLSSettings() throws -> TLSSettings? {
        guard let cert = clusterTLSCertificate else {
            if clusterTLSKey != nil || clusterTLSCACertificate != nil { throw Error("cluster-tls-key or cluster-tls-ca-cert given without cluster-tls-cert") }
            return nil
        }
        guard let key = clusterTLSKey else { throw Error("cluster-tls-cert given without cluster-tls-key") }
        guard let ca = clusterTLSCACertificate else { throw Error("cluster-tls-cert given without cluster-tls-ca-cert (the nodes verify each other)") }
        var t = TLSSettings(certificatePath: cert, keyPath: key, caPath: ca)
        t.verifyPeer = true
        t.failIfNoPeerCertificate = true
        t.minimumVersion = tlsMinimumVersion
        t.ciphers = tlsCiphers
        return t
    }

    /// One configurable value.
    public struct Setting: Sendable {
        public let name: String
        public let help: String
        let apply: @Sendable (inout NodeConfiguration, String) throws -> Void

        public var environmentVariable: String { "WARREN_" + name.uppercased().replacingOccurrences(of: "-", with: "_") }
        public var configKey: String { name.replacingOccurrences(of: "-", with: "_") }
    }

    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ d: String) { description = d }
    }

    public static let settings: [Setting] = [
        Setting(name: "data-dir", help: "Directory for the node's data (created if missing).") { c, v in
            c.dataDirectory = v
        },
        Setting(name: "amqp-port", help: "AMQP port; 0 picks a free one and the log says which (default 5672).") { c, v in
            c.amqpPort = try port(v, "amqp-port")
        },
        Setting(name: "bind", help: "Address to listen on (default 0.0.0.0).") { c, v in c.bindAddress = v },
        Setting(name: "log-level", help: "trace, debug, info, notice, warning, error or critical (default info).") { c, v in
            guard let level = Logger.Level(rawValue: v) else { throw Error("log-level: unknown level '\(v)'") }
            c.logLevel = level
        },
        Setting(name: "default-user", help: "User created at boot (default guest).") { c, v in c.broker.defaultUser = v },
        Setting(name: "default-pass", help: "Password of the default user (default guest).") { c, v in
            c.broker.defaultPassword = v
        },
        Setting(name: "default-vhost", help: "Virtual host created at boot (default /).") { c, v in
            c.broker.defaultVirtualHost = v
        },
        Setting(
            name: "loopback-users",
            help: "Comma-separated users allowed to log in from loopback only; 'none' for nobody (default guest)."
        ) { c, v in
            c.broker.loopbackUsers = v == "none" ? [] : Set(v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        },
        Setting(name: "heartbeat", help: "Heartbeat interval the server proposes, seconds (default 60; 0 disables).") { c, v in
            c.broker.heartbeat = try number(v, "heartbeat", max: Int(UInt16.max))
        },
        Setting(name: "frame-max", help: "Largest frame, bytes (default 131072; at least 4096).") { c, v in
            let n: UInt32 = try number(v, "frame-max", max: Int(UInt32.max))
            guard n >= 4096 else { throw Error("frame-max: must be at least 4096, got \(n)") }
            c.broker.frameMax = n
        },
        Setting(name: "channel-max", help: "Most channels per connection (default 2047).") { c, v in
            c.broker.channelMax = try number(v, "channel-max", max: Int(UInt16.max))
        },
        Setting(name: "max-message-size", help: "Largest message body, bytes (default 134217728, RabbitMQ 3.x's).") { c, v in
            c.broker.maxMessageSize = try number(v, "max-message-size", max: 512 * 1024 * 1024)
        },
        Setting(name: "handshake-timeout", help: "Seconds a client has to complete the AMQP handshake (default 10).") { c, v in
            c.handshakeTimeoutSeconds = try number(v, "handshake-timeout", max: 3600)
        },
        Setting(name: "load-definitions", help: "Definitions file (RabbitMQ's JSON export format) to import at boot.") { c, v in
            c.loadDefinitions = v
        },
        Setting(name: "shutdown-timeout", help: "Seconds to wait for clients to close at shutdown (default 10).") { c, v in
            c.shutdownTimeoutSeconds = try number(v, "shutdown-timeout", max: 3600)
        },
        Setting(
            name: "memory-high-watermark",
            help: "Memory at which publishers are blocked: a share of RAM (0.4, the default) or bytes (2GB, 512MiB)."
        ) { c, v in
            guard let m = ResourceLimits.parseMemory(v) else { throw Error("memory-high-watermark: expected a share like 0.4 or a size like 2GB, got '\(v)'") }
            c.resources.memoryHighWatermark = m
        },
        Setting(name: "disk-free-limit", help: "Free disk space below which publishers are blocked (default 50MB).") { c, v in
            guard let n = ResourceLimits.parseBytes(v) else { throw Error("disk-free-limit: expected a size like 50MB or 1GiB, got '\(v)'") }
            c.resources.diskFreeLimit = n
        },
        Setting(name: "plain-listener", help: "on or off: the plain (non-TLS) AMQP listener (default on).") { c, v in
            c.plainListener = try bool(v, "plain-listener")
        },
        Setting(name: "amqps-port", help: "AMQP over TLS port, used when --tls-cert is set; 0 picks a free one (default 5671).") { c, v in
            c.amqpsPort = try port(v, "amqps-port")
        },
        Setting(name: "tls-cert", help: "Server certificate chain (PEM); turns the AMQPS listener on.") { c, v in c.tlsCertificate = v },
        Setting(name: "tls-key", help: "Private key of the server certificate (PEM).") { c, v in c.tlsKey = v },
        Setting(name: "tls-ca-cert", help: "CA bundle (PEM) client certificates are verified against.") { c, v in c.tlsCACertificate = v },
        Setting(name: "tls-verify-peer", help: "on or off: ask clients for a certificate and verify it (default off).") { c, v in
            c.tlsVerifyPeer = try bool(v, "tls-verify-peer")
        },
        Setting(name: "tls-fail-if-no-peer-cert", help: "on or off: with tls-verify-peer, refuse clients without a certificate (default off).") {
            c, v in c.tlsFailIfNoPeerCertificate = try bool(v, "tls-fail-if-no-peer-cert")
        },
        Setting(name: "tls-min-version", help: "tlsv1.2 (default) or tlsv1.3; older versions are never accepted.") { c, v in
            guard let version = TLSSettings.Version(rawValue: v) else { throw Error("tls-min-version: expected tlsv1.2 or tlsv1.3, got '\(v)'") }
            c.tlsMinimumVersion = version
        },
        Setting(name: "tls-ciphers", help: "OpenSSL cipher list for TLS 1.2 (default: ECDHE with AES-GCM or ChaCha20 only).") { c, v in
            c.tlsCiphers = v
        },
        Setting(
            name: "tls-cert-login-from",
            help: "What names the user of a client certificate for EXTERNAL: distinguished_name (default), common_name, subject_alternative_name:dns or subject_alternative_name:email."
        ) { c, v in
            guard let l = TLSSettings.LoginFrom(v) else { throw Error("tls-cert-login-from: unknown value '\(v)'") }
            c.tlsLoginFrom = l
        },
        Setting(name: "max-connections", help: "Connections the node accepts at most, all listeners together; 'infinity' (default) for no limit.") {
            c, v in c.maxConnections = v == "infinity" ? nil : try number(v, "max-connections", max: 10_000_000)
        },
        Setting(name: "management", help: "on or off: the management HTTP API and web UI (default on).") { c, v in
            c.management = try bool(v, "management")
        },
        Setting(name: "management-port", help: "Management API and web UI port; 0 picks a free one and the log says which (default 15672).") {
            c, v in c.managementPort = try port(v, "management-port")
        },
        Setting(name: "management-max-body-size", help: "Largest management API request body, bytes; larger ones get 413 (default 20000000).") {
            c, v in c.managementMaxBodySize = try number(v, "management-max-body-size", max: Int(Int32.max))
        },
        Setting(name: "prometheus", help: "on or off: the Prometheus /metrics endpoint (default on).") { c, v in
            c.prometheus = try bool(v, "prometheus")
        },
        Setting(name: "prometheus-port", help: "Prometheus metrics port; 0 picks a free one and the log says which (default 15692).") {
            c, v in c.prometheusPort = try port(v, "prometheus-port")
        },
        Setting(name: "tls-handshake-timeout", help: "Seconds a client has to finish the TLS handshake (default 5).") { c, v in
            c.tlsHandshakeTimeoutSeconds = try number(v, "tls-handshake-timeout", max: 3600)
        },
        Setting(name: "node-name", help: "This node's name in the cluster (default warren@<short host name>).") { c, v in
            guard !v.isEmpty, !v.contains(","), !v.contains("=") else { throw Error("node-name: expected a name like warren@host, got '\(v)'") }
            c.nodeName = v
        },
        Setting(name: "cluster-port", help: "Port for the other nodes of the cluster; 0 picks a free one (default 25672).") { c, v in
            c.clusterPort = try port(v, "cluster-port")
        },
        Setting(name: "cluster-address", help: "HOST:PORT the other nodes reach this one at (default: host name and cluster port).") { c, v in
            guard v.contains(":") else { throw Error("cluster-address: expected HOST:PORT, got '\(v)'") }
            c.clusterAddress = v
        },
        Setting(name: "cluster-name", help: "Name of a cluster this node founds (default: its node name).") { c, v in c.clusterName = v },
        Setting(
            name: "cluster-seeds",
            help: "Comma-separated HOST:PORT of the cluster's seed nodes; the first founds the cluster, the others join it (default: none, a cluster of one)."
        ) { c, v in
            let seeds = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for s in seeds where !s.contains(":") { throw Error("cluster-seeds: expected HOST:PORT, got '\(s)'") }
            c.clusterSeeds = seeds
        },
        Setting(
            name: "cluster-discovery",
            help: "dns:SERVICE: the peers are the pods of this node's StatefulSet behind the headless SERVICE; pod 0 founds the cluster once no peer is in one (instead of cluster-seeds)."
        ) { c, v in
            guard v.hasPrefix("dns:"), v.count > 4 else { throw Error("cluster-discovery: expected dns:SERVICE (a headless service), got '\(v)'") }
            c.clusterDiscovery = v
        },
        Setting(name: "cluster-secret", help: "The secret every node of the cluster must know (as RabbitMQ's Erlang cookie).") { c, v in
            c.clusterSecret = v
        },
        Setting(name: "cluster-secret-file", help: "File holding the cluster secret (default DATA_DIR/cluster-secret, made at first start).") { c, v in
            c.clusterSecretFile = v
        },
        Setting(name: "cluster-tls-cert", help: "Certificate (PEM) for the cluster links; turns TLS on them on, with mutual verification.") { c, v in
            c.clusterTLSCertificate = v
        },
        Setting(name: "cluster-tls-key", help: "Private key of the cluster certificate (PEM).") { c, v in c.clusterTLSKey = v },
        Setting(name: "cluster-tls-ca-cert", help: "CA bundle (PEM) the other nodes' certificates are verified against.") { c, v in
            c.clusterTLSCACertificate = v
        },
        Setting(name: "cluster-dial", help: "NAME=HOST:PORT,... (or ADDRESS=HOST:PORT): dial these nodes or seed addresses there instead (warren-cluster's proxy).") {
            c, v in
            var map: [String: String] = [:]
            for pair in v.split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard kv.count == 2, kv[1].contains(":") else { throw Error("cluster-dial: expected NAME=HOST:PORT, got '\(pair)'") }
                map[kv[0]] = kv[1]
            }
            c.clusterDial = map
        },
        Setting(name: "metadata-timeout", help: "Seconds a definition change waits for the cluster to commit it before it fails (default 5).") { c, v in
            c.metadataTimeoutSeconds = try number(v, "metadata-timeout", max: 3600)
            if c.metadataTimeoutSeconds == 0 { throw Error("metadata-timeout: must be at least 1") }
        },
        Setting(
            name: "queue-link-timeout",
            help: "Seconds a silent member is waited for before its queues count as down here: consumers cancelled, publishes nacked (default 10)."
        ) { c, v in
            c.queueLinkTimeoutSeconds = try number(v, "queue-link-timeout", max: 3600)
            if c.queueLinkTimeoutSeconds == 0 { throw Error("queue-link-timeout: must be at least 1") }
        },
        Setting(
            name: "metadata-snapshot-every",
            help: "Entries of the metadata log between snapshots, at least (default 8192; the number of objects if larger)."
        ) { c, v in
            c.metadataSnapshotEvery = try number(v, "metadata-snapshot-every", max: 1 << 30)
            if c.metadataSnapshotEvery < 10 { throw Error("metadata-snapshot-every: must be at least 10") }
        },
    ]

    static func bool(_ v: String, _ name: String) throws -> Bool {
        switch v.lowercased() {
        case "on", "true", "yes", "1": return true
        case "off", "false", "no", "0": return false
        default: throw Error("\(name): expected on or off, got '\(v)'")
        }
    }

    static func port(_ v: String, _ name: String) throws -> Int {
        guard let n = Int(v), (0...65535).contains(n) else { throw Error("\(name): not a port number: '\(v)'") }
        return n
    }

    static func number<T: FixedWidthInteger>(_ v: String, _ name: String, max: Int) throws -> T {
        guard let n = Int(v), n >= 0, n <= max else { throw Error("\(name): expected a number from 0 to \(max), got '\(v)'") }
        return T(n)
    }

    /// Loads the configuration. `flags` maps setting names (and "config") to values given on the
    /// command line; `environment` is the process environment.
    public static func load(flags: [String: String], environment: [String: String]) throws -> NodeConfiguration {
        var config = NodeConfiguration()
        let file = flags["config"] ?? environment["WARREN_CONFIG"]
        var fileValues: [String: String] = [:]
        if let file {
            config.configFile = file
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw Error("config: cannot read '\(file)'")
            }
            fileValues = try ConfigFile.parse(text, known: Set(settings.map(\.configKey)))
        }
        for s in settings {
            if let v = flags[s.name] ?? environment[s.environmentVariable] ?? fileValues[s.configKey] {
                try s.apply(&config, v)
            }
        }
        _ = try config.tlsSettings()
        _ = try config.clusterTLSSettings()
        if !config.plainListener && config.tlsCertificate == nil {
            throw Error("plain-listener off needs the AMQPS listener (tls-cert and tls-key)")
        }
        return config
    }

    /// The data directory to use: the configured one, or `~/.local/share/warren`.
    public func resolvedDataDirectory(home: String? = nil) -> String {
        if let d = dataDirectory { return d }
        return ((home ?? NSHomeDirectory()) as NSString).appendingPathComponent(".local/share/warren")
    }
}

/// The config file format: one `key = value` per line, `#` starts a comment. Keys are the
/// settings' names with `_` (or `-`); an unknown key is an error, so typos do not pass silently.
public enum ConfigFile {
    public static func parse(_ text: String, known: Set<String>) throws -> [String: String] {
        var values: [String: String] = [:]
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw NodeConfiguration.Error("config line \(i + 1): expected 'key = value', got '\(trimmed)'")
            }
            let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "-", with: "_")
            let value = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard known.contains(key) else {
                throw NodeConfiguration.Error("config line \(i + 1): unknown key '\(key)'")
            }
            values[key] = value
        }
        return values
    }
}
