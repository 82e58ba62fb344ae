public import Raft

/// Faults the random run injects, per step (probabilities) or per message.
public struct FaultProfile: Sendable {
    public var drop = 0.05
    public var duplicate = 0.03
    /// Extra steps a message may take (reordering comes from different delays).
    public var maxDelay = 3
    public var crash = 0.004
    public var restart = 0.05
    public var partition = 0.004
    public var heal = 0.02
    public var membershipChange = 0.003
    public var transfer = 0.003
    public var propose = 0.3
    public var read = 0.1
    public init() {}
    /// No faults at all (scripted scenarios decide everything).
    public static var none: FaultProfile {
        var f = FaultProfile()
        f.drop = 0
        f.duplicate = 0
        f.maxDelay = 0
        f.crash = 0
        f.restart = 0
        f.partition = 0
        f.heal = 0
        f.membershipChange = 0
        f.transfer = 0
        f.propose = 0
        f.read = 0
        return f
    }
}

/// What a run injected, for the report.
public struct FaultCounts: Sendable, CustomStringConvertible {
    public var steps = 0, messages = 0, dropped = 0, duplicated = 0, crashes = 0, restarts = 0, partitions = 0
    public var membershipChanges = 0, transfers = 0, proposals = 0, reads = 0, snapshotsSent = 0, elections = 0
    public init() {}
    public mutating func add(_ o: FaultCounts) {
        steps += o.steps
        messages += o.messages
        dropped += o.dropped
        duplicated += o.duplicated
        crashes += o.crashes
        restarts += o.restarts
        partitions += o.partitions
        membershipChanges += o.membershipChanges
        transfers += o.transfers
        proposals += o.proposals
        reads += o.reads
        snapshotsSent += o.snapshotsSent
        elections += o.elections
    }
    public var description: String {
        "steps \(steps), messages \(messages) (dropped \(dropped), duplicated \(duplicated)), crashes \(crashes), restarts \(restarts), partitions \(partitions), membership changes \(membershipChanges), transfers \(transfers), proposals \(proposals), reads \(reads), snapshots sent \(snapshotsSent), leaders elected \(elections)"
    }
}

public struct InvariantViolation: Error, CustomStringConvertible {
    public var description: String
}

/// One simulated member: the core, what it persisted, and its state machine (a counter whose
/// every increment returns the new value).
public final class SimNode {
    public let id: NodeID
    public var raft: RaftNode?
    public let storage: MemoryStorage
    public var value: UInt64 = 0
    public var appliedIndex: LogIndex = 0
    var lastRole = RaftNode.Role.follower
    var leaderLog: (first: LogIndex, terms: [Term])?
    var pendingReads: [ReadState] = []

    init(id: NodeID, storage: MemoryStorage) {
        self.id = id
        self.storage = storage
    }
    public var isUp: Bool { raft != nil }
}

/// N Raft nodes in one process over a simulated network, everything drawn from one seeded
/// PRNG: a failing run replays from its seed. Invariants are checked after every step.
public final class Simulation {
    public let seed: UInt64
    public var rng: SplitMix64
    public var faults: FaultProfile
    public private(set) var nodes: [NodeID: SimNode] = [:]
    public var configure: (inout RaftConfiguration) -> Void
    public private(set) var now = 0
    var inFlight: [(at: Int, seq: Int, message: Message)] = []
    var messageSeq = 0
    /// Nodes in different groups cannot talk; nil = fully connected.
    public private(set) var groups: [NodeID: Int]?
    public internal(set) var counts = FaultCounts()
    public let checker = InvariantChecker()
    public let history = History()
    var nextOp: UInt64 = 1
    var nextNodeID: NodeID
    /// Apply-then-compact threshold.
    public var snapshotEvery: LogIndex = 64
    /// Plays the host's failure detection, which quiet groups rely on
    /// (`RaftConfiguration.quiesceAfterRounds`): a crash, and each side of a partition, is
    /// reported to the nodes that can no longer hear it (`RaftNode.peerUnreachable`).
    public var hostLiveness = false

    public init(seed: UInt64, voters: Int, faults: FaultProfile = FaultProfile(), configure: @escaping (inout RaftConfiguration) -> Void = { _ in }) {
        self.seed = seed
        self.rng = SplitMix64(seed: seed)
        self.faults = faults
        self.configure = configure
        nextNodeID = NodeID(voters + 1)
        let ids = Set((1...voters).map { NodeID($0) })
        for id in ids.sorted() {
            let node = SimNode(id: id, storage: .bootstrap(voters: ids))
            nodes[id] = node
            start(node)
        }
    }

    func start(_ node: SimNode) {
        var c = RaftConfiguration(id: node.id)
        c.seed = seed &+ UInt64(counts.restarts)
        configure(&c)
        let raft = RaftNode(configuration: c, storage: node.storage)
        node.raft = raft
        node.value = 0
        node.appliedIndex = 0
        if let snap = node.storage.snapshot {
            node.value = Self.decode(snap.data)
            node.appliedIndex = snap.index
        }
        node.lastRole = raft.role
        node.leaderLog = nil
        node.pendingReads = []
    }

    // MARK: faults and commands

    public func crash(_ id: NodeID) {
        guard let n = nodes[id], n.isUp else { return }
        n.raft = nil
        counts.crashes += 1
        if hostLiveness {
            for other in nodes.keys.sorted() where other != id { nodes[other]!.raft?.peerUnreachable(id) }
        }
    }

    public func restart(_ id: NodeID) {
        guard let n = nodes[id], !n.isUp else { return }
        start(n)
        counts.restarts += 1
    }

    public func partition(_ parts: [[NodeID]]) {
        var g: [NodeID: Int] = [:]
        for (i, p) in parts.enumerated() { for id in p { g[id] = i } }
        var next = parts.count
        for id in nodes.keys where g[id] == nil {
            g[id] = next
            next += 1
        }
        groups = g
        counts.partitions += 1
        if hostLiveness {
            for a in nodes.keys.sorted() {
                for b in nodes.keys.sorted() where g[a] != g[b] { nodes[a]!.raft?.peerUnreachable(b) }
            }
        }
    }

    public func heal() { groups = nil }

    public func canTalk(_ a: NodeID, _ b: NodeID) -> Bool {
        guard let g = groups else { return true }
        return g[a] == g[b]
    }

    /// A new, empty node (to be added by a membership change).
    @discardableResult
    public func addNode(_ id: NodeID? = nil) -> NodeID {
        let id = id ?? nextNodeID
        nextNodeID = max(nextNodeID, id + 1)
        let node = SimNode(id: id, storage: MemoryStorage())
        nodes[id] = node
        start(node)
        return id
    }

    public func leader() -> SimNode? {
        nodes.values.filter { $0.raft?.role == .leader }.max { $0.raft!.term < $1.raft!.term }
    }

    /// A client increment at `id`; returns false if it was not taken (not the leader).
    @discardableResult
    public func propose(at id: NodeID) -> Bool {
        guard let raft = nodes[id]?.raft else { return false }
        let op = nextOp
        do {
            try raft.propose(Self.encode(op))
        } catch {
            return false
        }
        nextOp += 1
        counts.proposals += 1
        history.invoke(op: op, node: id, kind: .increment, at: now)
        return true
    }

    @discardableResult
    public func read(at id: NodeID) -> Bool {
        guard let raft = nodes[id]?.raft else { return false }
        let op = nextOp
        do {
            try raft.readIndex(context: op)
        } catch {
            return false
        }
        nextOp += 1
        counts.reads += 1
        history.invoke(op: op, node: id, kind: .read, at: now)
        return true
    }

    // MARK: running

    /// One step: due messages delivered, every node ticked, every Ready handled, invariants
    /// checked.
    public func step(tick: Bool = true) throws {
        now += 1
        counts.steps += 1
        let due = inFlight.filter { $0.at <= now }.sorted { ($0.at, $0.seq) < ($1.at, $1.seq) }
        inFlight.removeAll { $0.at <= now }
        for d in due { deliver(d.message) }
        if tick {
            for id in nodes.keys.sorted() { nodes[id]!.raft?.tick() }
        }
        try processAll()
    }

    /// Delivers every message in flight at once (no delays, no ticks) until none is left.
    public func stabilize(maxRounds: Int = 10_000) throws {
        try processAll()
        var rounds = 0
        while !inFlight.isEmpty && rounds < maxRounds {
            rounds += 1
            let batch = inFlight.sorted { $0.seq < $1.seq }
            inFlight.removeAll()
            for d in batch { deliver(d.message) }
            try processAll()
        }
    }

    /// Drops messages in flight from `from` to `to` (nil: any).
    public func dropInFlight(from: NodeID? = nil, to: NodeID? = nil) {
        inFlight.removeAll { (from == nil || $0.message.from == from) && (to == nil || $0.message.to == to) }
    }

    func deliver(_ m: Message) {
        guard canTalk(m.from, m.to), let raft = nodes[m.to]?.raft else { return }
        raft.step(m)
    }

    func processAll() throws {
        var again = true
        while again {
            again = false
            for id in nodes.keys.sorted() {
                guard let node = nodes[id], let raft = node.raft else { continue }
                if raft.hasReady {
                    try handleReady(node, raft)
                    again = true
                }
            }
        }
        try checker.checkStep(self)
    }

    func handleReady(_ node: SimNode, _ raft: RaftNode) throws {
        let ready = raft.ready()
        // Persist first ...
        node.storage.save(ready)
        try checker.persisted(node: node.id, entries: ready.entries, raft: raft)
        // ... then send ...
        for m in ready.messages { send(m) }
        // ... then apply.
        if let snap = ready.snapshot {
            node.value = Self.decode(snap.data)
            node.appliedIndex = snap.index
        }
        for e in ready.committed {
            try checker.applied(node: node.id, entry: e)
            node.appliedIndex = e.index
            if case .normal(let data) = e.payload {
                node.value += 1
                history.complete(op: Self.decode(data), node: node.id, result: node.value, index: e.index, at: now)
            }
        }
        node.pendingReads.append(contentsOf: ready.readStates)
        node.pendingReads.removeAll { r in
            guard node.appliedIndex >= r.index else { return false }
            history.complete(op: r.context, node: node.id, result: node.value, index: r.index, at: now)
            return true
        }
        raft.advance(ready)
        if raft.appliedIndex >= raft.firstIndex + snapshotEvery {
            raft.compact(upTo: raft.appliedIndex, data: Self.encode(node.value))
            if let snap = raft.latestSnapshot { node.storage.compact(to: snap) }
        }
    }

    func send(_ m: Message) {
        counts.messages += 1
        if case .snapshot = m.kind { counts.snapshotsSent += 1 }
        if faults.drop > 0 && Double.random(in: 0..<1, using: &rng) < faults.drop {
            counts.dropped += 1
            return
        }
        let copies = faults.duplicate > 0 && Double.random(in: 0..<1, using: &rng) < faults.duplicate ? 2 : 1
        if copies == 2 { counts.duplicated += 1 }
        for _ in 0..<copies {
            let delay = faults.maxDelay > 0 ? Int.random(in: 0...faults.maxDelay, using: &rng) : 0
            messageSeq += 1
            inFlight.append((now + 1 + delay, messageSeq, m))
        }
    }

    // MARK: the random run

    /// Runs `steps` random steps (client load and faults as the profile says), then heals
    /// everything and checks that the group converges: one leader, a final entry committed
    /// and applied everywhere. Throws the first invariant violation.
    public func runRandom(steps: Int) throws {
        for _ in 0..<steps {
            try injectRandom()
            try step()
        }
        // Quiet: all faults off, everyone up and connected.
        heal()
        // Every node comes back, members or not: who is a member can still change while an
        // uncommitted configuration entry is replaced (found by seed 14005).
        for id in nodes.keys.sorted() where !nodes[id]!.isUp { restart(id) }
        let saved = faults
        faults = .none
        defer { faults = saved }
        var leaderID: NodeID?
        for _ in 0..<400 {
            try step()
            if let l = leader(), l.raft!.transferee == 0, l.raft!.commitIndex >= l.raft!.lastIndex, l.raft!.term(at: l.raft!.commitIndex) == l.raft!.term {
                leaderID = l.id
                break
            }
        }
        guard let leaderID else { throw InvariantViolation(description: "no leader within 400 quiet steps (seed \(seed))") }
        guard propose(at: leaderID) else { throw InvariantViolation(description: "leader \(leaderID) refused a proposal (seed \(seed))") }
        for _ in 0..<400 {
            try step()
            let target = nodes[leaderID]!.raft?.lastIndex ?? 0
            let members = nodes.values.filter { isMember($0.id) }
            if members.allSatisfy({ ($0.raft?.appliedIndex ?? 0) >= target }) { break }
        }
        let target = nodes[leaderID]!.raft?.lastIndex ?? 0
        for n in nodes.values where isMember(n.id) {
            if (n.raft?.appliedIndex ?? 0) < target {
                throw InvariantViolation(description: "node \(n.id) did not catch up to \(target) after healing (seed \(seed))")
            }
        }
        try history.checkLinearizable(committed: checker.committed)
    }

    func isMember(_ id: NodeID) -> Bool {
        guard let l = leader()?.raft ?? nodes.keys.sorted().compactMap({ nodes[$0]!.raft }).first else { return true }
        return l.membership.members.contains(id)
    }

    /// One step's worth of random load and faults (what `runRandom` does before each step).
    public func injectRandomFaults() throws { try injectRandom() }

    func injectRandom() throws {
        func chance(_ p: Double) -> Bool { p > 0 && Double.random(in: 0..<1, using: &rng) < p }
        let ids = nodes.keys.sorted()
        if chance(faults.propose), let l = leader() { propose(at: l.id) }
        if chance(faults.propose * 0.2), let any = ids.randomElement(using: &rng) { propose(at: any) }
        if chance(faults.read), let l = leader() { read(at: l.id) }
        if chance(faults.crash), let victim = ids.randomElement(using: &rng) {
            let down = nodes.values.filter { !$0.isUp }.count
            if down < (ids.count - 1) / 2 + 1 { crash(victim) }
        }
        if chance(faults.restart), let back = ids.filter({ !nodes[$0]!.isUp }).randomElement(using: &rng) { restart(back) }
        if chance(faults.partition) {
            let shuffled = ids.shuffled(using: &rng)
            let cut = Int.random(in: 1..<max(2, shuffled.count), using: &rng)
            partition([Array(shuffled[..<cut]), Array(shuffled[cut...])])
        }
        if chance(faults.heal) { heal() }
        if chance(faults.transfer), let l = leader(), let target = l.raft!.membership.voters.sorted().filter({ $0 != l.id }).randomElement(using: &rng) {
            if (try? l.raft!.transferLeadership(to: target)) != nil { counts.transfers += 1 }
        }
        if chance(faults.membershipChange), let l = leader()?.raft {
            let m = l.membership
            let change: ConfChange
            switch Int.random(in: 0..<3, using: &rng) {
            case 0 where m.voters.count + m.learners.count < 6:
                let newID = addNode()
                change = .addLearner(newID)
            case 1 where !m.learners.isEmpty:
                change = .addVoter(m.learners.sorted().randomElement(using: &rng)!)
            default:
                guard m.voters.count > 3 || !m.learners.isEmpty else { return }
                let pool = m.learners.isEmpty ? m.voters : m.learners
                change = .remove(pool.sorted().randomElement(using: &rng)!)
            }
            if (try? l.proposeConfChange(change)) != nil { counts.membershipChanges += 1 }
        }
    }

    // MARK: the state machine's encoding

    public static func encode(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    public static func decode(_ b: [UInt8]) -> UInt64 {
        guard b.count == 8 else { return 0 }
        return b.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }
}
