import ArgumentParser
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// `up`: starts N nodes on free ports of 127.0.0.1 with the proxy between them, waits until they
/// are one healthy cluster, prints the layout.
struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start N nodes on 127.0.0.1 as one cluster and print their ports (JSON).")

    @OptionGroup var where_: DirOption
    @Option(help: "How many nodes.") var nodes = 3
    @Flag(help: "TLS on the cluster links (mutual, certificates made with openssl) and AMQPS on every node.") var tls = false
    @Option(help: "The warren binary (default: $WARREN_BIN, else warren beside this program).") var binary: String?
    @Option(help: "Seconds to wait for a healthy cluster.") var timeout: Double = 60
    @Argument(parsing: .postTerminator, help: "Extra flags for every node, after --.") var extra: [String] = []

    func run() throws {
        let dir = where_.dir
        guard nodes >= 1, nodes <= 15 else { throw DriverError("--nodes: 1 to 15") }
        if let old = try? ClusterLayout.load(dir), old.nodes.contains(where: { $0.pid.map(Processes.alive) ?? false }) {
            throw DriverError("'\(dir)' already holds a running cluster; `warren-cluster down --dir \(dir)` first")
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for stale in ["faults.json", "faults.applied", "proxy.stop"] { try? FileManager.default.removeItem(atPath: (dir as NSString).appendingPathComponent(stale)) }
        let binary = try resolveBinary()
        var secretBytes = [UInt8](repeating: 0, count: 24)
        for i in secretBytes.indices { secretBytes[i] = UInt8.random(in: 0...255) }
        let secret = secretBytes.map { String(format: "%02x", $0) }.joined()
        let certs = tls ? try Certificates.make(in: (dir as NSString).appendingPathComponent("tls"), nodes: nodes) : nil

        var layout = ClusterLayout(binary: binary, tls: tls, secret: secret, proxyPid: nil, nodes: [], links: [:])
        // bind(0) may hand out a port it handed out a moment ago (each is released at once):
        // every port of the layout must be distinct.
        var taken: Set<Int> = []
        func port() throws -> Int {
            for _ in 0..<100 {
                let p = try Processes.freePort()
                if taken.insert(p).inserted { return p }
            }
            throw DriverError("no free ports left on 127.0.0.1")
        }
        for i in 1...nodes {
            let name = "warren-\(i)@localhost"
            let home = (dir as NSString).appendingPathComponent("warren-\(i)")
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            layout.nodes.append(ClusterLayout.Node(
                index: i, name: name, amqp: try port(), amqps: tls ? try port() : nil,
                management: try port(), prometheus: try port(), cluster: try port(),
                dataDir: (home as NSString).appendingPathComponent("data"), log: (home as NSString).appendingPathComponent("warren.log"),
                argv: [], pid: nil, state: "stopped"))
        }
        for i in 1...nodes { for j in 1...nodes where i != j { layout.links[Faults.link(i, j)] = try port() } }
        let seeds = layout.nodes.map { "127.0.0.1:\($0.cluster)" }.joined(separator: ",")
        for i in layout.nodes.indices {
            let n = layout.nodes[i]
            // Every other node, by name and by seed address, is dialled through the proxy.
            var dial: [String] = []
            for m in layout.nodes where m.index != n.index {
                let port = layout.links[Faults.link(n.index, m.index)]!
                dial.append("\(m.name)=127.0.0.1:\(port)")
                dial.append("127.0.0.1:\(m.cluster)=127.0.0.1:\(port)")
            }
            var argv = [
                binary, "--node-name", n.name, "--data-dir", n.dataDir, "--bind", "127.0.0.1",
                "--amqp-port", "\(n.amqp)", "--management-port", "\(n.management)", "--prometheus-port", "\(n.prometheus)",
                "--cluster-port", "\(n.cluster)", "--cluster-address", "127.0.0.1:\(n.cluster)", "--cluster-seeds", seeds,
                "--cluster-secret", secret, "--cluster-dial", dial.joined(separator: ","),
            ]
            if let certs, let amqps = n.amqps {
                let c = certs.node(n.index)
                argv += ["--cluster-tls-cert", c.cert, "--cluster-tls-key", c.key, "--cluster-tls-ca-cert", certs.ca]
                argv += ["--amqps-port", "\(amqps)", "--tls-cert", c.cert, "--tls-key", c.key, "--tls-ca-cert", certs.ca]
            }
            layout.nodes[i].argv = argv + extra
        }
        try layout.save(dir)
        try Faults().save(dir)
        let me = Self.ownExecutable
        layout.proxyPid = try Processes.spawn([me, "proxy", "--dir", dir], log: (dir as NSString).appendingPathComponent("proxy.log"))
        try layout.save(dir)
        let proxyPid = layout.proxyPid!
        try waitFor("the proxy to listen", timeout: 10) {
            guard Processes.alive(proxyPid) else {
                let log = (try? String(contentsOfFile: (dir as NSString).appendingPathComponent("proxy.log"), encoding: .utf8)) ?? ""
                throw DriverError("the proxy exited: \(log.trimmingCharacters(in: .whitespacesAndNewlines)) (run up again: a port was taken meanwhile)")
            }
            return FileManager.default.fileExists(atPath: Faults.appliedPath(dir)) && layout.links.values.allSatisfy(Processes.accepts)
        }
        for i in layout.nodes.indices { try NodeControl.start(&layout, i, dir: dir) }
        try layout.save(dir)
        try Health.wait(layout, timeout: timeout)
        print(try JSONText.of(layout.summary(dir)))
    }

    /// This program's path (argv[0] may be a bare name found on PATH).
    static var ownExecutable: String { Processes.readLink("/proc/self/exe") ?? CommandLine.arguments[0] }

    func resolveBinary() throws -> String {
        let candidates = [binary, ProcessInfo.processInfo.environment["WARREN_BIN"],
                          ((Self.ownExecutable as NSString).deletingLastPathComponent as NSString).appendingPathComponent("warren")]
        for case let c? in candidates where FileManager.default.isExecutableFile(atPath: c) {
            return c.hasPrefix("/") ? c : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(c)
        }
        throw DriverError("no warren binary: pass --binary PATH or set WARREN_BIN")
    }
}

/// Polls `condition` every 50 ms until it holds; fails with what was awaited after `timeout`.
func waitFor(_ what: String, timeout: TimeInterval, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return }
        if Date() >= deadline { throw DriverError("timed out after \(Int(timeout)) s waiting for \(what)") }
        usleep(50_000)
    }
}

enum JSONText {
    static func of(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }
}

/// A CA and one certificate per node (CN and SAN = the node name and localhost), for `--tls`.
struct Certificates {
    let dir: String
    var ca: String { (dir as NSString).appendingPathComponent("ca.pem") }
    func node(_ i: Int) -> (cert: String, key: String) {
        ((dir as NSString).appendingPathComponent("warren-\(i).pem"), (dir as NSString).appendingPathComponent("warren-\(i).key"))
    }

    static func make(in dir: String, nodes: Int) throws -> Certificates {
        guard let openssl = Processes.which("openssl") else { throw DriverError("--tls needs openssl (apt-get install openssl)") }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let c = Certificates(dir: dir)
        let log = (dir as NSString).appendingPathComponent("openssl.log")
        let caKey = (dir as NSString).appendingPathComponent("ca.key")
        try Processes.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", c.ca, "-days", "3650", "-subj", "/CN=warren-cluster CA"], log: log)
        for i in 1...nodes {
            let (cert, key) = c.node(i)
            let csr = cert + ".csr"
            let ext = cert + ".ext"
            try "subjectAltName=DNS:localhost,DNS:warren-\(i),IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n".write(toFile: ext, atomically: true, encoding: .utf8)
            try Processes.run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=warren-\(i)@localhost"], log: log)
            try Processes.run([openssl, "x509", "-req", "-in", csr, "-CA", c.ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "3650", "-extfile", ext], log: log)
        }
        return c
    }
}
