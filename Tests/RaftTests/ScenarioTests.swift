import Foundation
import RaftTestKit
import Testing

/// Runs every scripted scenario in Tests/RaftTests/Scenarios (see ScenarioRunner for the
/// commands).
@Suite("Raft scenarios")
struct ScenarioTests {
    static let scenarios: [String] = {
        let dir = Bundle.module.resourceURL!.appendingPathComponent("Scenarios")
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasSuffix(".txt") }.sorted()
    }()

    @Test("scripted scenario", arguments: scenarios)
    func scenario(_ name: String) throws {
        let url = Bundle.module.resourceURL!.appendingPathComponent("Scenarios").appendingPathComponent(name)
        let script = try String(contentsOf: url, encoding: .utf8)
        do {
            try ScenarioRunner().run(script)
        } catch {
            Issue.record("\(name): \(error)")
        }
    }

    @Test("the scenarios the issue names are all there")
    func coverage() {
        for name in [
            "election", "split_vote", "prevote", "check_quorum", "log_divergence", "figure8", "membership",
            "learner_catch_up", "snapshot", "leader_transfer", "read_index",
        ] {
            #expect(Self.scenarios.contains("\(name).txt"))
        }
    }
}
