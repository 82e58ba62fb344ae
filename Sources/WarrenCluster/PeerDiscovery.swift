import Foundation

/// Peer discovery for a Kubernetes StatefulSet behind a headless service (`cluster_discovery =
/// dns:SERVICE`): each pod is named STATEFULSET-ORDINAL and reachable at
/// STATEFULSET-ORDINAL.SERVICE. The peers are the pods whose names resolve (the headless
/// service lists pods that are not ready too: `publishNotReadyAddresses`).
///
/// Who founds: only ordinal 0, only with an empty data directory, and only once every other pod
/// DNS lists has answered that it is in no cluster either (or there is none). So pods started
/// together form one cluster (the others wait for pod 0 and join it), a pod scaled up joins,
/// a pod restarted with its volume rejoins from its own log (discovery plays no part), and a
/// pod 0 that lost its volume while the others kept theirs joins them instead of founding a
/// second cluster. A pod whose peer has not answered yet waits: better late than split.
///
/// Pure: the resolver is a function (the node's does getaddrinfo on a thread of its own; the
/// tests' is a set of names).
public struct PeerDiscovery: Sendable {
    public var service: String
    public var hostname: String
    public var port: Int

    public init(service: String, hostname: String, port: Int) {
        self.service = service
        self.hostname = hostname
        self.port = port
    }

    /// "dns:SERVICE" (the setting's form); nil for anything else.
    public init?(setting: String, hostname: String, port: Int) {
        guard setting.hasPrefix("dns:"), setting.count > 4 else { return nil }
        self.init(service: String(setting.dropFirst(4)), hostname: hostname, port: port)
    }

    /// The StatefulSet's name and this pod's ordinal, from the host name (warren-2: warren, 2).
    public var ordinal: Int? {
        guard let dash = hostname.lastIndex(of: "-") else { return nil }
        return Int(hostname[hostname.index(after: dash)...])
    }
    public var statefulSet: String {
        guard let dash = hostname.lastIndex(of: "-"), ordinal != nil else { return hostname }
        return String(hostname[..<dash])
    }

    public func host(_ ordinal: Int) -> String { "\(statefulSet)-\(ordinal).\(service)" }
    public func address(_ ordinal: Int) -> String { "\(host(ordinal)):\(port)" }
    /// Where the others reach this pod (its cluster_address unless one was set).
    public var myAddress: String { address(ordinal ?? 0) }

    /// The other pods' addresses, pod 0 first (it founds): every ordinal whose name resolves,
    /// up to two misses past the highest ordinal seen (a pod being replaced leaves a gap).
    /// `resolve` turns a pod's host name into the address to dial, or nil.
    public func peers(resolve: (String) -> String?) -> [String] {
        var found: [String] = []
        var misses = 0
        var k = 0
        while k < 1024 && (misses < 2 || k <= (ordinal ?? 0)) {
            if k == ordinal {
                misses = 0
            } else if let a = resolve(host(k)) {
                found.append(a)
                misses = 0
            } else {
                misses += 1
            }
            k += 1
        }
        return found
    }

    /// The node's resolver: a name that getaddrinfo resolves is dialed by name, at `port`.
    public func dnsResolve(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        defer { if list != nil { freeaddrinfo(list) } }
        return getaddrinfo(host, nil, &hints, &list) == 0 && list != nil ? "\(host):\(port)" : nil
    }

    public enum Answer: Sendable, Equatable {
        /// A member of a cluster (it accepted, redirected, asked to retry or refused).
        case member
        /// A node in no cluster either (it is looking for one too).
        case notMember
    }

    public enum Decision: Sendable, Equatable {
        /// Keep asking the peers to be let in.
        case join
        /// Found a cluster of one now; the others join it.
        case found
        /// Not yet: a peer has not answered (it may hold the cluster).
        case wait(String)
    }

    /// What a node without a cluster does, given the peers DNS lists and what they answered.
    public func decide(peers: [String], answers: [String: Answer]) -> Decision {
        if peers.contains(where: { answers[$0] == .member }) { return .join }
        guard ordinal == 0 else { return .join }  // only pod 0 founds; the others wait for it
        let silent = peers.filter { answers[$0] == nil }
        if silent.isEmpty { return .found }
        return .wait("no answer yet from \(silent.joined(separator: ", ")) (it may be in a cluster already)")
    }
}
