import Crypto

/// A salted password hash in RabbitMQ's format, so users move between RabbitMQ and Warren through
/// definitions files: base64 of a 4-byte salt followed by hash(salt + UTF-8 password).
public struct PasswordHash: Sendable, Hashable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case sha256 = "rabbit_password_hashing_sha256"
        case sha512 = "rabbit_password_hashing_sha512"
        case md5 = "rabbit_password_hashing_md5"

        func digest(_ bytes: [UInt8]) -> [UInt8] {
            switch self {
            case .sha256: return Array(SHA256.hash(data: bytes))
            case .sha512: return Array(SHA512.hash(data: bytes))
            case .md5: return Array(Insecure.MD5.hash(data: bytes))
            }
        }
    }

    public let algorithm: Algorithm
    /// The salt followed by the digest.
    public let bytes: [UInt8]

    public init(algorithm: Algorithm, bytes: [UInt8]) {
        self.algorithm = algorithm
        self.bytes = bytes
    }

    /// Hashes a password with a fresh random salt (SHA-256 unless told otherwise, as RabbitMQ).
    public static func make(password: String, algorithm: Algorithm = .sha256) -> PasswordHash {
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return PasswordHash(algorithm: algorithm, bytes: salt + algorithm.digest(salt + Array(password.utf8)))
    }

    /// Parses RabbitMQ's `password_hash` (base64) for an algorithm name; nil if either is invalid.
    public init?(base64: String, algorithm name: String) {
        guard let algorithm = Algorithm(rawValue: name), let bytes = Base64.decode(base64), bytes.count > 4 else {
            return nil
        }
        self.init(algorithm: algorithm, bytes: bytes)
    }

    public var base64: String { Base64.encode(bytes) }

    /// Compares in constant time with respect to the digest's content.
    public func matches(_ password: String) -> Bool {
        let salt = Array(bytes.prefix(4))
        let expected = bytes.dropFirst(4)
        let actual = algorithm.digest(salt + Array(password.utf8))
        guard actual.count == expected.count else { return false }
        var diff: UInt8 = 0
        for (a, b) in zip(actual, expected) { diff |= a ^ b }
        return diff == 0
    }
}

/// Standard base64 (RFC 4648, with padding), as RabbitMQ writes password hashes.
enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i]
            let b1 = i + 1 < bytes.count ? bytes[i + 1] : 0
            let b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        for c in text.utf8 {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(c - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(c - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"), UInt8(ascii: "-"): values.append(62)
            case UInt8(ascii: "/"), UInt8(ascii: "_"): values.append(63)
            case UInt8(ascii: "="), UInt8(ascii: "\n"), UInt8(ascii: "\r"): continue
            default: return nil
            }
        }
        guard values.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < values.count {
            let v0 = values[i], v1 = i + 1 < values.count ? values[i + 1] : 0
            let v2 = i + 2 < values.count ? values[i + 2] : 0, v3 = i + 3 < values.count ? values[i + 3] : 0
            out.append(v0 << 2 | v1 >> 4)
            if i + 2 < values.count { out.append((v1 & 0x0F) << 4 | v2 >> 2) }
            if i + 3 < values.count { out.append((v2 & 0x03) << 6 | v3) }
            i += 4
        }
        return out
    }
}
