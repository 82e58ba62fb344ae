public import Raft

/// Scripted scenarios in plain text, in the spirit of etcd's testdata files. One command per
/// line, `#` starts a comment. A command prefixed with `!` must fail (e.g. `!propose 2`).
///
///     option prevote off | checkquorum off | election 10 | max-append BYTES  (before `nodes`)
///     nodes 3                 founding voters 1..3, no random faults
///     campaign 1 | tick 1 [n] | tick-all [n] | stabilize
///     propose 1 [count] | read 1 | compact 1
///     deliver [rounds]        one round: every message in flight delivered once
///     partition 1 | 2 3 | heal | crash 2 | restart 2 | drop 1 2 (messages in flight 1->2)
///     add-node 4 | conf 1 add-learner 4 | conf 1 add-voter 4 | conf 1 remove 3 | transfer 1 2
///     expect role 1 leader | expect leader-of 2 1 | expect term 1 2 | expect commit 1 3
///     expect commit * 3 (every node that is up) | expect applied * 3 | expect last-index 2 5
///     expect log-term 2 5 1 (node 2, index 5 has term 1) | expect voters 1 1 2 3
///     expect learners 1 4 | expect reads 1 2 (node 1 completed 2 reads) | expect value * 4
public struct ScenarioFailure: Error, CustomStringConvertible {
    public var line: Int
    public var text: String
    public var message: String
    public var description: String { "line \(line) `\(text)`: \(message)" }
}

public final class ScenarioRunner {
    public private(set) var sim: Simulation?
    var options = (preVote: true, checkQuorum: true, election: 10, maxAppend: 1 << 20)

    public init() {}

    public func run(_ script: String) throws {
        for (i, raw) in script.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard !words.isEmpty else { continue }
            var mustFail = false
            if words[0].hasPrefix("!") {
                mustFail = true
                words[0].removeFirst()
            }
            do {
                let ok = try execute(words)
                if mustFail && ok { throw ScenarioFailure(line: i + 1, text: line, message: "expected the command to fail, it succeeded") }
                if !mustFail && !ok { throw ScenarioFailure(line: i + 1, text: line, message: "the command failed") }
            } catch let f as ScenarioFailure {
                throw ScenarioFailure(line: i + 1, text: line, message: f.message)
            } catch {
                throw ScenarioFailure(line: i + 1, text: line, message: "\(error)")
            }
        }
    }

    func fail(_ message: String) -> ScenarioFailure { ScenarioFailure(line: 0, text: "", message: message) }

    func node(_ s: String) throws -> SimNode {
        guard let sim, let id = NodeID(s), let n = sim.nodes[id] else { throw fail("no node \(s)") }
        return n
    }

    func raft(_ s: String) throws -> RaftNode {
        guard let r = try node(s).raft else { throw fail("node \(s) is down") }
        return r
    }

    func int(_ s: String) throws -> UInt64 {
        guard let v = UInt64(s) else { throw fail("not a number: \(s)") }
        return v
    }

    /// Nodes a `*` or an id stands for (only nodes that are up).
    func targets(_ s: String) throws -> [(NodeID, RaftNode)] {
        guard let sim else { throw fail("no nodes yet") }
        if s == "*" { return sim.nodes.keys.sorted().compactMap { id in sim.nodes[id]!.raft.map { (id, $0) } } }
        return [(try node(s).id, try raft(s))]
    }

    func execute(_ w: [String]) throws -> Bool {
        func arg(_ i: Int) throws -> String {
            guard i < w.count else { throw fail("missing argument \(i)") }
            return w[i]
        }
        switch w[0] {
        case "option":
            let on = try arg(2) != "off"
            switch try arg(1) {
            case "prevote": options.preVote = on
            case "checkquorum": options.checkQuorum = on
            case "election": options.election = Int(try arg(2)) ?? 10
            case "max-append": options.maxAppend = Int(try arg(2)) ?? 1
            default: throw fail("unknown option")
            }
        case "nodes":
            let o = options
            sim = Simulation(seed: 1, voters: Int(try int(arg(1))), faults: .none) { c in
                c.preVote = o.preVote
                c.checkQuorum = o.checkQuorum
                c.electionTicks = o.election
                c.maxAppendBytes = o.maxAppend
            }
            sim!.snapshotEvery = .max / 2
        case "campaign":
            try raft(arg(1)).campaign()
            try sim!.stabilize(maxRounds: 0)
        case "tick":
            let r = try raft(arg(1))
            for _ in 0..<(w.count > 2 ? Int(try int(arg(2))) : 1) { r.tick() }
            try sim!.stabilize(maxRounds: 0)
        case "tick-all":
            for _ in 0..<(w.count > 1 ? Int(try int(arg(1))) : 1) { try sim!.step() }
        case "stabilize":
            try sim!.stabilize()
        case "deliver":
            for _ in 0..<(w.count > 1 ? Int(try int(arg(1))) : 1) { try sim!.stabilize(maxRounds: 1) }
        case "propose":
            // `propose * n`: at whichever node leads.
            let n = try arg(1) == "*" ? (sim!.leader() ?? { throw fail("no leader") }()) : try node(arg(1))
            for _ in 0..<(w.count > 2 ? Int(try int(arg(2))) : 1) {
                if !sim!.propose(at: n.id) { return false }
            }
        case "read":
            return sim!.read(at: try node(arg(1)).id)
        case "compact":
            let n = try node(arg(1))
            let r = try raft(arg(1))
            r.compact(upTo: r.appliedIndex, data: Simulation.encode(n.value))
            if let s = r.latestSnapshot { n.storage.compact(to: s) }
        case "partition":
            let parts = w.dropFirst().split(separator: "|").map { $0.compactMap { NodeID($0) } }
            sim!.partition(parts)
        case "heal": sim!.heal()
        case "crash": sim!.crash(try node(arg(1)).id)
        case "restart": sim!.restart(try node(arg(1)).id)
        case "drop": sim!.dropInFlight(from: NodeID(try arg(1)), to: NodeID(try arg(2)))
        case "add-node": sim!.addNode(NodeID(try arg(1)))
        case "conf":
            let r = try raft(arg(1))
            let target = NodeID(try int(arg(3)))
            let change: ConfChange
            switch try arg(2) {
            case "add-learner": change = .addLearner(target)
            case "add-voter": change = .addVoter(target)
            case "remove": change = .remove(target)
            default: throw fail("unknown change")
            }
            do {
                _ = try r.proposeConfChange(change)
            } catch {
                return false
            }
        case "transfer":
            do {
                try raft(arg(1)).transferLeadership(to: NodeID(try int(arg(2))))
            } catch {
                return false
            }
        case "expect":
            return try expect(Array(w.dropFirst()))
        default:
            throw fail("unknown command \(w[0])")
        }
        return true
    }

    func expect(_ w: [String]) throws -> Bool {
        func arg(_ i: Int) throws -> String {
            guard i < w.count else { throw fail("missing argument \(i)") }
            return w[i]
        }
        func check(_ ok: Bool, _ what: @autoclosure () -> String) throws {
            if !ok { throw fail(what()) }
        }
        switch try arg(0) {
        case "role":
            for (id, r) in try targets(arg(1)) {
                try check("\(r.role)".lowercased() == (try arg(2)).lowercased(), "node \(id) is \(r.role)")
            }
        case "leader-among":
            let ids = Set(try w.dropFirst(1).map { try int($0) })
            let leaders = sim!.nodes.values.filter { $0.raft?.role == .leader }.map(\.id)
            try check(leaders.count == 1 && ids.contains(leaders[0]), "leaders: \(leaders.sorted())")
        case "leader-of":
            for (id, r) in try targets(arg(1)) { try check(r.leader == (try int(arg(2))), "node \(id) follows \(r.leader)") }
        case "term":
            for (id, r) in try targets(arg(1)) { try check(r.term == (try int(arg(2))), "node \(id) is at term \(r.term)") }
        case "commit":
            for (id, r) in try targets(arg(1)) { try check(r.commitIndex == (try int(arg(2))), "node \(id) committed \(r.commitIndex)") }
        case "applied":
            for (id, r) in try targets(arg(1)) { try check(r.appliedIndex == (try int(arg(2))), "node \(id) applied \(r.appliedIndex)") }
        case "last-index":
            for (id, r) in try targets(arg(1)) { try check(r.lastIndex == (try int(arg(2))), "node \(id) ends at \(r.lastIndex)") }
        case "log-term":
            for (id, r) in try targets(arg(1)) {
                let t = r.term(at: try int(arg(2)))
                try check(t == (try int(arg(3))), "node \(id) has term \(String(describing: t)) at \(w[2])")
            }
        case "voters", "learners":
            let want = Set(try w.dropFirst(2).map { try int($0) })
            for (id, r) in try targets(arg(1)) {
                let have = w[0] == "voters" ? r.membership.voters : r.membership.learners
                try check(have == want, "node \(id) has \(r.membership)")
            }
        case "reads":
            let n = try node(arg(1))
            let done = sim!.history.operations.values.filter { $0.kind == .read && $0.node == n.id && $0.completedAt != nil }.count
            try check(done == Int(try int(arg(2))), "node \(n.id) completed \(done) reads")
        case "value":
            for (id, _) in try targets(arg(1)) {
                let v = sim!.nodes[id]!.value
                try check(v == (try int(arg(2))), "node \(id) has value \(v)")
            }
        default:
            throw fail("unknown expectation \(w[0])")
        }
        return true
    }
}
