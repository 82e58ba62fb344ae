import AMQPClient
import AMQPProtocol
import ArgumentParser
import Foundation
import ManagementClient
import NIOCore
import NIOPosix
import WarrenChecker

/// `warren-cluster check HISTORY`: the checker on a recorded history (JSON lines).
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a recorded history (JSON lines): lost, unexpected, duplicated, recovered, availability. Exit 1 if anything was lost or unexpected.")
    @Argument(help: "The history file (history.jsonl of a run).") var history: String
    @Flag(help: "The report as JSON instead of the summary.") var json = false

    func run() throws {
        let text = try String(contentsOfFile: history, encoding: .utf8)
        let decoder = JSONDecoder()
        var events: [HistoryEvent] = []
        for (n, line) in text.split(separator: "\n").enumerated() where !line.isEmpty {
            do {
                events.append(try decoder.decode(HistoryEvent.self, from: Data(line.utf8)))
            } catch {
                throw DriverError("\(history):\(n + 1): not a history event: \(line.prefix(200))")
            }
        }
        let report = Checker.check(events)
        print(json ? try RunReport.json(report) : Checker.summary(report))
        if !report.ok { throw ExitCode(1) }
    }
}

enum RunReport {
    static func json(_ r: Checker.Report) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(r), as: UTF8.self)
    }
}
