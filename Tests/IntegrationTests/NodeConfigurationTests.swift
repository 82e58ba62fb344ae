import Foundation
import Testing
import WarrenCore
import WarrenNode

@Suite("Node configuration")
struct NodeConfigurationTests {
    func writeConfig(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "warren-config-\(UUID().uuidString).conf"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("defaults: port 5672 on all interfaces, guest from loopback only")
    func defaults() throws {
        let c = try NodeConfiguration.load(flags: [:], environment: [:])
        #expect(c.amqpPort == 5672)
        #expect(c.bindAddress == "0.0.0.0")
        #expect(c.broker.loopbackUsers == ["guest"])
        #expect(c.resolvedDataDirectory(home: "/home/x") == "/home/x/.local/share/warren")
    }

    @Test("flags win over the environment, the environment over the file")
    func precedence() throws {
        let file = try writeConfig("""
            # a comment
            amqp_port = 1111
            bind = 10.0.0.1
            heartbeat = 30   # trailing comment
            data-dir = /from/file
            """)
        let env = ["WARREN_CONFIG": file, "WARREN_AMQP_PORT": "2222", "WARREN_HEARTBEAT": "20"]
        let c = try NodeConfiguration.load(flags: ["amqp-port": "3333"], environment: env)
        #expect(c.amqpPort == 3333)
        #expect(c.broker.heartbeat == 20)
        #expect(c.bindAddress == "10.0.0.1")
        #expect(c.dataDirectory == "/from/file")
        #expect(c.configFile == file)
    }

    @Test("Deploy/warren.conf.example loads and states the defaults")
    func example() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = root.appendingPathComponent("Deploy/warren.conf.example").path
        let c = try NodeConfiguration.load(flags: [:], environment: ["WARREN_CONFIG": file])
        let defaults = try NodeConfiguration.load(flags: [:], environment: [:])
        #expect(c.amqpPort == defaults.amqpPort)
        #expect(c.broker.frameMax == defaults.broker.frameMax && c.broker.channelMax == defaults.broker.channelMax)
        #expect(c.resources == defaults.resources, "the example's alarm limits are the defaults")
    }

    @Test("every setting has a flag, a WARREN_ variable and a config key of the same name")
    func naming() {
        for s in NodeConfiguration.settings {
            #expect(s.environmentVariable == "WARREN_" + s.name.uppercased().replacingOccurrences(of: "-", with: "_"))
            #expect(s.configKey == s.name.replacingOccurrences(of: "-", with: "_"))
        }
        #expect(NodeConfiguration.settings.contains { $0.name == "data-dir" })
        #expect(NodeConfiguration.settings.contains { $0.name == "amqp-port" })
        #expect(NodeConfiguration.settings.contains { $0.name == "bind" })
    }

    @Test("bad values and unknown keys are refused with a message that names them", arguments: [
        ("amqp_port = 99999", "amqp-port: not a port number: '99999'"),
        ("colour = blue", "config line 1: unknown key 'colour'"),
        ("just words", "config line 1: expected 'key = value', got 'just words'"),
        ("frame_max = 100", "frame-max: must be at least 4096, got 100"),
        ("log_level = loud", "log-level: unknown level 'loud'"),
        ("tls_cert = /x.pem", "tls-cert given without tls-key"),
        ("plain_listener = off", "plain-listener off needs the AMQPS listener (tls-cert and tls-key)"),
        ("tls_min_version = tlsv1.1", "tls-min-version: expected tlsv1.2 or tlsv1.3, got 'tlsv1.1'"),
        ("tls_verify_peer = maybe", "tls-verify-peer: expected on or off, got 'maybe'"),
        ("tls_cert_login_from = cn", "tls-cert-login-from: unknown value 'cn'"),
    ])
    func errors(_ text: String, _ message: String) throws {
        let file = try writeConfig(text)
        #expect(throws: NodeConfiguration.Error.self) { try NodeConfiguration.load(flags: ["config": file], environment: [:]) }
        do {
            _ = try NodeConfiguration.load(flags: ["config": file], environment: [:])
        } catch {
            #expect("\(error)" == message)
        }
    }

    @Test("loopback-users 'none' lets guest in from anywhere")
    func loopbackUsers() throws {
        #expect(try NodeConfiguration.load(flags: ["loopback-users": "none"], environment: [:]).broker.loopbackUsers.isEmpty)
        #expect(try NodeConfiguration.load(flags: ["loopback-users": "a, b"], environment: [:]).broker.loopbackUsers == ["a", "b"])
    }

    @Test("two nodes cannot share a data directory")
    func dataDirectoryLock() throws {
        let dir = NSTemporaryDirectory() + "warren-lock-\(UUID().uuidString)"
        let first = try DataDirectory(path: dir)
        #expect(throws: DataDirectory.Error.self) { try DataDirectory(path: dir) }
        _ = first
    }
}

import ArgumentParser
@testable import warren

@Suite("Command line")
struct CommandLineTests {
    @Test("every setting has a flag of the same name")
    func everySettingHasAFlag() {
        let help = Serve.helpMessage(columns: 400)
        for s in NodeConfiguration.settings {
            #expect(help.contains("--\(s.name)"), "warren --help does not list --\(s.name)")
        }
    }
}
