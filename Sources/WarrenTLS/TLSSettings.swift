public import NIOSSL
import NIOConcurrencyHelpers
import SwiftASN1
import X509

/// TLS for a listener (and later for cluster and federation links): where the certificate, key
/// and CA bundle are, how peers are verified, which versions and ciphers are allowed. Turned
/// into an `NIOSSLContext` by `makeContext()`; `TLSContextBox` holds the current one so that a
/// reload (SIGHUP) changes it for new connections without touching live ones.
public struct TLSSettings: Sendable, Equatable {
    public enum Version: String, Sendable, CaseIterable {
        case tls12 = "tlsv1.2"
        case tls13 = "tlsv1.3"
    }

    /// Which part of a verified client certificate names the user for SASL EXTERNAL
    /// (RabbitMQ's `ssl_cert_login_from`).
    public enum LoginFrom: Sendable, Equatable {
        case distinguishedName
        case commonName
        /// The first subject alternative name of this type: "dns" or "email".
        case subjectAlternativeName(String)

        public init?(_ text: String) {
            switch text {
            case "distinguished_name": self = .distinguishedName
            case "common_name": self = .commonName
            case "subject_alternative_name", "subject_alternative_name:dns": self = .subjectAlternativeName("dns")
            case "subject_alternative_name:email": self = .subjectAlternativeName("email")
            default: return nil
            }
        }
    }

    public var certificatePath: String
    public var keyPath: String
    public var caPath: String?
    /// Ask clients for a certificate and verify it against `caPath`.
    public var verifyPeer = false
    /// With `verifyPeer`: refuse clients that present none.
    public var failIfNoPeerCertificate = false
    public var minimumVersion = Version.tls12
    /// OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are all AEAD). The default allows
    /// only ECDHE key exchange with AEAD ciphers.
    public var ciphers = TLSSettings.defaultCiphers
    public var loginFrom = LoginFrom.distinguishedName

    public static let defaultCiphers = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1"

    public init(certificatePath: String, keyPath: String, caPath: String? = nil) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.caPath = caPath
    }

    /// Reads the files and builds the server context; throws with the file that is wrong.
    public func makeServerContext() throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw TLSSettingsError("cannot read the certificate '\(certificatePath)': \(error)")
        }
        guard !chain.isEmpty else { throw TLSSettingsError("no certificate in '\(certificatePath)'") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw TLSSettingsError("cannot read the private key '\(keyPath)': \(error)")
        }
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        c.minimumTLSVersion = minimumVersion == .tls13 ? .tlsv13 : .tlsv12
        c.cipherSuites = ciphers
        if verifyPeer {
            guard let caPath else { throw TLSSettingsError("verifying peers needs a CA bundle (--tls-ca-cert)") }
            c.trustRoots = .file(caPath)
            c.certificateVerification = failIfNoPeerCertificate ? .noHostnameVerification : .optionalVerification
        } else {
            c.certificateVerification = .none
        }
        do {
            return try NIOSSLContext(configuration: c)
        } catch {
            throw TLSSettingsError("TLS settings refused (ciphers '\(ciphers)', CA '\(caPath ?? "-")'): \(error)")
        }
    }

    /// The client side of a link that verifies the server against `caPath` and presents this
    /// certificate (the cluster links). Host names are not checked: nodes are dialled by
    /// address; the CA is the cluster's own.
    public func makeClientContext() throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw TLSSettingsError("cannot read the certificate '\(certificatePath)': \(error)")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw TLSSettingsError("cannot read the private key '\(keyPath)': \(error)")
        }
        var c = TLSConfiguration.makeClientConfiguration()
        c.certificateChain = chain.map { .certificate($0) }
        c.privateKey = .privateKey(key)
        c.minimumTLSVersion = minimumVersion == .tls13 ? .tlsv13 : .tlsv12
        c.cipherSuites = ciphers
        if let caPath { c.trustRoots = .file(caPath) }
        c.certificateVerification = .noHostnameVerification
        do {
            return try NIOSSLContext(configuration: c)
        } catch {
            throw TLSSettingsError("TLS client settings refused (CA '\(caPath ?? "-")'): \(error)")
        }
    }

    /// The user name a verified client certificate stands for, as `loginFrom` says; nil if the
    /// certificate has no such field.
    public func loginName(for certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes(), let cert = try? Certificate(derEncoded: der) else { return nil }
        switch loginFrom {
        case .distinguishedName:
            return cert.subject.description
        case .commonName:
            for rdn in cert.subject.reversed() {
                for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                    return String(describing: attribute.value)
                }
            }
            return nil
        case .subjectAlternativeName(let kind):
            guard let sans = try? cert.extensions.subjectAlternativeNames else { return nil }
            for name in sans {
                switch name {
                case .dnsName(let n) where kind == "dns": return n
                case .rfc822Name(let n) where kind == "email": return n
                default: continue
                }
            }
            return nil
        }
    }
}

public struct TLSSettingsError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The context new connections get; `reload()` swaps it (SIGHUP) and keeps the old one if the
/// new files do not load.
public final class TLSContextBox: Sendable {
    public let settings: TLSSettings
    private let current: NIOLockedValueBox<NIOSSLContext>

    public init(settings: TLSSettings) throws {
        self.settings = settings
        self.current = NIOLockedValueBox(try settings.makeServerContext())
    }

    public var context: NIOSSLContext { current.withLockedValue { $0 } }

    public func reload() throws {
        let fresh = try settings.makeServerContext()
        current.withLockedValue { $0 = fresh }
    }
}
