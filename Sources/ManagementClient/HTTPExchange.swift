public import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// One HTTP/1.1 request over a plain socket, with a deadline: what the management API's
/// clients (warrenctl, warren-cluster, `warren health`) need, and no more. Not URLSession: its
/// Linux implementation links libcurl, which a static build (binaries for machines without
/// Swift) cannot carry.
public enum HTTPExchange {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Sends the request, reads the reply to the end (the request asks the server to close);
    /// returns the status and the body (Content-Length or chunked).
    public static func perform(
        host: String, port: Int, method: String, path: String, headers: [(String, String)], body: Data?, timeout: Double
    ) throws -> (status: Int, body: Data) {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body?.count ?? 0)\r\n\r\n"
        let reply = try exchange(host: host, port: port, send: Data(head.utf8) + (body ?? Data()), timeout: timeout, until: nil)
        return try parse(reply, from: "\(host):\(port)")
    }

    /// Connects, sends, reads until the peer closes or `until` says the bytes so far suffice.
    public static func exchange(host: String, port: Int, send: Data, timeout: Double, until: ((Data) -> Bool)?) throws -> Data {
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
        var sent = 0
        while sent < send.count {
            let n = send.withUnsafeBytes { write(fd, $0.baseAddress! + sent, $0.count - sent) }
            guard n > 0 else { throw Failure(description: "cannot write to \(host):\(port): \(String(cString: strerror(errno)))") }
            sent += n
        }
        var out = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                out.append(contentsOf: buf[0..<n])
                if let until, until(out) { break }
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

    /// The status and body of an HTTP/1.1 reply.
    static func parse(_ bytes: Data, from source: String) throws -> (status: Int, body: Data) {
        guard let headerEnd = bytes.range(of: Data("\r\n\r\n".utf8)) else { throw Failure(description: "\(source) sent no HTTP reply") }
        let head = String(decoding: bytes[..<headerEnd.lowerBound], as: UTF8.self)
        let body = Data(bytes[headerEnd.upperBound...])
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, let status = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
            throw Failure(description: "\(source) sent no HTTP status")
        }
        let chunked = lines.contains { $0.lowercased().hasPrefix("transfer-encoding:") && $0.lowercased().contains("chunked") }
        return (status, chunked ? dechunk(body) : body)
    }

    static func dechunk(_ body: Data) -> Data {
        var plain = Data()
        var rest = body[...]
        while let lineEnd = rest.range(of: Data("\r\n".utf8)),
            let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? "", radix: 16), size > 0,
            rest.distance(from: lineEnd.upperBound, to: rest.endIndex) >= size
        {
            let start = lineEnd.upperBound
            plain += rest[start..<rest.index(start, offsetBy: size)]
            rest = rest[rest.index(start, offsetBy: min(size + 2, rest.distance(from: start, to: rest.endIndex)))...]
        }
        return plain
    }
}
