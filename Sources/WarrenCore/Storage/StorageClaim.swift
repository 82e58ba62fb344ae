import Logging

/// Which durable queue owns a piece of the store, when the definitions live in the metadata log
/// rather than in the store: one incarnation of a queue (`MessageQueue.incarnation`) on this
/// node. The store journals a claim when such a queue is made and its end when it is deleted;
/// after a restart, replaying the metadata log makes each queue again and it takes back the
/// storage its claim names. Storage nobody claims once the log is replayed belongs to queues
/// that are gone, and is dropped.
public struct StorageClaim: Hashable, Sendable {
    public var vhost: String
    public var name: String
    public var incarnation: UInt64

    public init(vhost: String, name: String, incarnation: UInt64) {
        self.vhost = vhost
        self.name = name
        self.incarnation = incarnation
    }

    init(_ q: MessageQueue) {
        self.init(vhost: q.vhost.name, name: q.name, incarnation: q.incarnation)
    }

    var fields: [String: JSONValue] {
        ["vhost": .string(vhost), "name": .string(name), "incarnation": .int(Int64(bitPattern: incarnation))]
    }

    func json(storage: StoreQueueID) -> JSONValue {
        var o = fields
        o["storage"] = .int(Int64(storage))
        return .object(["claim": .object(o)])
    }

    var unclaimJSON: JSONValue { .object(["unclaim": .object(fields)]) }

    init?(json o: JSONValue) {
        guard let vhost = o["vhost"]?.stringValue, let name = o["name"]?.stringValue, let inc = o["incarnation"]?.intValue else { return nil }
        self.init(vhost: vhost, name: name, incarnation: UInt64(bitPattern: inc))
    }
}

extension Broker {
    /// Whether the store's metadata is claims (the metadata log holds the definitions) rather
    /// than definitions journaled by a node of an earlier version.
    public static func isClaimsMetadata(_ m: RecoveredMetadata) -> Bool {
        if let s = m.snapshot { return s["claims"] != nil }
        return m.changes.allSatisfy { $0["claim"] != nil || $0["unclaim"] != nil }
    }

    /// Takes the store's recovered claims and storage: each durable queue takes its own back
    /// when the metadata log makes it again (`dropUnclaimedStorage` ends this).
    public func recoverStorage(metadata: RecoveredMetadata, queues: [RecoveredQueue]) {
        for q in queues { recoveredQueues[q.id] = q }
        var claims: [StorageClaim: StoreQueueID] = [:]
        for c in metadata.snapshot?["claims"]?.arrayValue ?? [] {
            if let claim = StorageClaim(json: c), let id = c["storage"]?.intValue { claims[claim] = StoreQueueID(truncatingIfNeeded: id) }
        }
        for change in metadata.changes {
            if let c = change["claim"], let claim = StorageClaim(json: c), let id = c["storage"]?.intValue {
                claims[claim] = StoreQueueID(truncatingIfNeeded: id)
            } else if let c = change["unclaim"], let claim = StorageClaim(json: c) {
                claims[claim] = nil
            }
        }
        storageClaims = claims
    }

    /// The metadata log is replayed: storage no queue took back belongs to queues that are gone.
    public func dropUnclaimedStorage() {
        guard let store = messageStore else { return }
        for id in recoveredQueues.keys.sorted() {
            logger.warning("store: messages of a deleted queue dropped", metadata: ["storage": "\(id)"])
            store.dropQueue(store.openQueue(id: id, durable: true))
        }
        recoveredQueues.removeAll()
        storageClaims.removeAll()
    }

    /// The store's checkpoint of claims: every durable queue of this node and its storage.
    public func storageClaimsSnapshot() -> JSONValue {
        var claims: [JSONValue] = []
        for v in vhosts.values {
            for q in v.queues.values {
                guard q.isLocal, let s = q.storeQueue, s.durable else { continue }
                var o = StorageClaim(q).fields
                o["storage"] = .int(Int64(s.id))
                claims.append(.object(o))
            }
        }
        // Claims not yet taken back (a restart still replaying) stay claimed.
        for (claim, id) in storageClaims {
            var o = claim.fields
            o["storage"] = .int(Int64(id))
            claims.append(.object(o))
        }
        return .object(["claims": .array(claims)])
    }
}
