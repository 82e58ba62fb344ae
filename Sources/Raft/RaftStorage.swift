/// Where a node's persisted state lives. The core reads it once, at start; afterwards the host
/// writes what each `Ready` says (hard state, snapshot, entries) before sending its messages.
public protocol RaftStorage {
    /// The hard state, the latest snapshot (nil if none) and the entries after it.
    func initialState() -> (HardState, Snapshot?, [Entry])
}

/// Storage in memory: for tests and the simulator (a crash keeps exactly what was persisted
/// here). The file-backed storage comes with clustering.
public final class MemoryStorage: RaftStorage {
    public private(set) var hardState = HardState()
    public private(set) var snapshot: Snapshot?
    public private(set) var entries: [Entry] = []

    public init() {}

    /// A founding member of a new group: the first configuration at index 1, term 1.
    public static func bootstrap(voters: Set<NodeID>) -> MemoryStorage {
        let s = MemoryStorage()
        s.entries = [Entry(term: 1, index: 1, payload: .config(.bootstrap(voters: voters)))]
        s.hardState = HardState(term: 1, vote: 0, commit: 1)
        return s
    }

    public func initialState() -> (HardState, Snapshot?, [Entry]) { (hardState, snapshot, entries) }

    /// Persists what a Ready says must be persisted.
    public func save(_ ready: Ready) {
        if let hs = ready.hardState { hardState = hs }
        if let snap = ready.snapshot { apply(snapshot: snap) }
        append(ready.entries)
    }

    public func append(_ new: [Entry]) {
        guard let first = new.first else { return }
        let base = (snapshot?.index ?? 0) + 1
        if first.index < base {
            append(Array(new.drop { $0.index < base }))
            return
        }
        let keep = Int(first.index - base)
        if keep < entries.count { entries.removeLast(entries.count - keep) }
        precondition(keep == entries.count, "raft storage: gap before index \(first.index)")
        entries.append(contentsOf: new)
    }

    public func apply(snapshot snap: Snapshot) {
        guard snap.index > (snapshot?.index ?? 0) else { return }
        let base = (snapshot?.index ?? 0) + 1
        let drop = Int(snap.index - base + 1)
        if drop <= entries.count, entries[drop - 1].term == snap.term {
            entries.removeFirst(drop)
        } else {
            entries.removeAll()
        }
        snapshot = snap
        hardState.commit = max(hardState.commit, snap.index)
    }

    /// The host took a snapshot (after RaftNode.compact): entries up to it can go.
    public func compact(to snap: Snapshot) { apply(snapshot: snap) }
}
