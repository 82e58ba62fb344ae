import ArgumentParser
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// `warren health alive | ready | quorum-critical`: the checks probes and operators run, as
/// RabbitMQ's `rabbitmq-diagnostics check_running`, `check_port_connectivity` and
/// `rabbitmq-queues check_if_node_is_quorum_critical`. Exit 0 when the check passes, 1 when
/// it fails, with one line that says why. Ports come from flags, the same WARREN_* variables the
/// node reads, or its config file (--config), in the node's order: a probe beside the node
/// needs no flags.
///
/// Plain sockets, not URLSession: the `warren` binary stays free of libcurl, which a static
/// build (deployments without Swift) cannot carry.
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
        /// A key of the node's config file ('key = value' lines), as the node reads it.
        func fromFile(_ key: String) -> String? {
            guard let path = config ?? env("WARREN_CONFIG"), let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if parts.count == 2, parts[0] == key, !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") { return parts[1] }
            }
            return nil
        }
        // Flags, then the environment, then the file: the node's order.
        var amqp: Int { amqpPort ?? (env("WARREN_AMQP_PORT") ?? fromFile("amqp_port")).flatMap(Int.init) ?? 5672 }
        var management: Int { managementPort ?? (env("WARREN_MANAGEMENT_PORT") ?? fromFile("management_port")).flatMap(Int.init) ?? 15672 }

        func get(_ path: String) throws -> (status: Int, json: [String: Any]) {
            let credentials = "\(user ?? env("WARREN_HEALTH_USER") ?? "guest"):\(password ?? env("WARREN_HEALTH_PASSWORD") ?? "guest")"
            let request =
                "GET \(path) HTTP/1.1\r\nHost: \(host):\(management)\r\nAuthorization: Basic \(Data(credentials.utf8).base64EncodedString())\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
            let reply = try HealthSocket.exchange(host: host, port: management, send: Array(request.utf8), timeout: timeout, readAll: true)
            return try HTTPReply.parse(reply, from: "the management API at \(host):\(management)")
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
            print("alive: \(target.host):\(target.amqp) answers AMQP")
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
            print("ready: \(target.host):\(target.amqp) serves; metadata leader \(leader); \(running.count) node(s) running")
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
        let reply: [UInt8]
        do {
            reply = try HealthSocket.exchange(host: t.host, port: t.amqp, send: Array("AMQP".utf8) + [0, 0, 9, 1], timeout: t.timeout, readAll: false)
        } catch {
            throw fail("not alive: \(error)")
        }
        guard reply.count >= 11, reply[0] == 1, reply[7] == 0, reply[8] == 10, reply[9] == 0, reply[10] == 10 else {
            throw fail("not alive: \(t.host):\(t.amqp) answered, but not with connection.start (\(reply.prefix(12).map { String($0) }.joined(separator: " ")))")
        }
    }
}

/// One TCP exchange with a deadline: connect, send, read (until the peer closes, or the first
/// bytes).
enum HealthSocket {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func exchange(host: String, port: Int, send: [UInt8], timeout: Double, readAll: Bool) throws -> [UInt8] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let info = list else { throw Failure(description: "cannot resolve \(host)") }
        defer { freeaddrinfo(list) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            throw Failure(description: "nothing accepts connections on \(host):\(port) (\(String(cString: strerror(errno))))")
        }
        guard send.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == send.count else {
            throw Failure(description: "cannot write to \(host):\(port)")
        }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                out += buf[0..<n]
                if !readAll && out.count >= 11 { break }
            } else if n == 0 {
                break
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                throw Failure(description: "\(host):\(port) did not answer within \(timeout) s")
            } else if errno != EINTR {
                throw Failure(description: "reading from \(host):\(port): \(String(cString: strerror(errno)))")
            }
        }
        return out
    }
}

/// The status and JSON body of an HTTP/1.1 reply (Content-Length or chunked).
enum HTTPReply {
    static func parse(_ bytes: [UInt8], from source: String) throws -> (status: Int, json: [String: Any]) {
        let text = Data(bytes)
        guard let headerEnd = text.range(of: Data("\r\n\r\n".utf8)) else { throw HealthSocket.Failure(description: "\(source) sent no HTTP reply") }
        let head = String(decoding: text[..<headerEnd.lowerBound], as: UTF8.self)
        var body = Data(text[headerEnd.upperBound...])
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, let status = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
            throw HealthSocket.Failure(description: "\(source) sent no HTTP status")
        }
        if lines.contains(where: { $0.lowercased().hasPrefix("transfer-encoding:") && $0.lowercased().contains("chunked") }) {
            var plain = Data()
            var rest = body[...]
            while let lineEnd = rest.range(of: Data("\r\n".utf8)),
                let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";")[0], radix: 16), size > 0,
                rest.distance(from: lineEnd.upperBound, to: rest.endIndex) >= size
            {
                let start = lineEnd.upperBound
                plain += rest[start..<rest.index(start, offsetBy: size)]
                rest = rest[rest.index(start, offsetBy: min(size + 2, rest.distance(from: start, to: rest.endIndex)))...]
            }
            body = plain
        }
        let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        return (status, json)
    }
}
