import AMQPClient
import NIOSSL
import WarrenCore

/// An upstream URI as RabbitMQ's federation reads it: `amqp://user:pass@host:port/vhost` or
/// `amqps://...`, with the query parameters of RabbitMQ's URI spec that matter here:
/// `heartbeat`, `connection_timeout` (ms, for the AMQP handshake), and for amqps `cacertfile`, `certfile`, `keyfile`,
/// `verify` (`verify_peer` / `verify_none`), `server_name_indication` (a name, or `disable`).
enum UpstreamURI {
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    /// Heartbeats are on for every link (a cut that leaves the socket open is noticed within two
    /// intervals); RabbitMQ's client default is 60 s, links want sooner.
    static let defaultHeartbeat: UInt16 = 10

    static func configuration(_ uri: String, connectionName: String) throws -> AMQPClientConfiguration {
        var base = uri
        var query: [String: String] = [:]
        if let q = uri.firstIndex(of: "?") {
            base = String(uri[..<q])
            for pair in uri[uri.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query[String(kv[0])] = kv.count > 1 ? percentDecoded(kv[1]) : ""
            }
        }
        var c: AMQPClientConfiguration
        do {
            c = try AMQPClientConfiguration(url: base)
        } catch {
            throw Problem(description: "\(Federation.redacted(uri: uri)) is not a valid AMQP URI")
        }
        c.connectionName = connectionName
        c.heartbeat = query["heartbeat"].flatMap { UInt16($0) } ?? defaultHeartbeat
        // RabbitMQ's URI parameter, in milliseconds; its clients' default is 60 s.
        c.handshakeTimeoutSeconds = (query["connection_timeout"].flatMap { Double($0) } ?? 60_000) / 1000
        if base.hasPrefix("amqps://") {
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                if let ca = query["cacertfile"] { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
                if let cert = query["certfile"] { tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) } }
                if let key = query["keyfile"] { tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)) }
                if query["verify"] == "verify_none" { tls.certificateVerification = .none }
                c.tls = try NIOSSLContext(configuration: tls)
            } catch {
                throw Problem(description: "TLS settings of \(Federation.redacted(uri: uri)): \(error)")
            }
            if let sni = query["server_name_indication"] {
                if sni == "disable" {
                    // No name check: the certificate must still chain to the trusted roots.
                    var relaxed = tls
                    if relaxed.certificateVerification == .fullVerification { relaxed.certificateVerification = .noHostnameVerification }
                    c.tls = try? NIOSSLContext(configuration: relaxed)
                } else {
                    c.tlsServerName = sni
                }
            }
        }
        return c
    }

    static func percentDecoded(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == UInt8(ascii: "%"), it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
