import Logging
import WarrenCore

/// Work that would hold the broker loop too long in one go (listing 100,000 queues, importing
/// a large definitions file) runs a slice at a time: the first slice in `respond`, the rest
/// each in its own turn of the loop, asked for by the shell with `ManagementAPI.resume(_:)`.
/// Between slices the loop serves AMQP, so the longest stall a management call causes is one
/// slice (docs/management.md gives the measured figure).
final class SlicedWork {
    /// Does the next slice, until the budget is spent; returns the answer once there is
    /// nothing left to do.
    let step: (SliceBudget) throws -> ManagementResponse?
    /// What the work is, and how it went (logged at debug when it ends).
    var what = ""
    var slices = 0
    var longest: Duration = .zero

    init(step: @escaping (SliceBudget) throws -> ManagementResponse?) {
        self.step = step
    }
}

/// How long one slice may hold the broker loop. Checked between units of work (a few objects),
/// so a slice overruns by at most one unit.
struct SliceBudget {
    let clock: ContinuousClock
    let deadline: ContinuousClock.Instant

    init(_ limit: Duration) {
        clock = ContinuousClock()
        deadline = clock.now.advanced(by: limit)
    }

    var exhausted: Bool { clock.now >= deadline }
}

extension SlicedWork {
    /// One slice, timed.
    func run(_ limit: Duration) throws -> ManagementResponse? {
        let clock = ContinuousClock()
        let start = clock.now
        defer {
            slices += 1
            let took = clock.now - start
            longest = max(longest, took)
        }
        return try step(SliceBudget(limit))
    }
}

extension ManagementAPI {
    /// Objects rendered between two looks at the clock.
    static let sliceUnit = 32
    /// Objects of a definitions import per change (one log entry).
    static let importChunk = 32

    /// Runs the first slice; the answer, or a response that names the work to resume.
    func sliced(_ work: SlicedWork) throws -> ManagementResponse {
        if let done = try work.run(sliceTime) { return done }
        let id = nextWorkID
        nextWorkID &+= 1
        slicedWork[id] = work
        var r = ManagementResponse(status: 200)
        r.continuation = id
        return r
    }

    /// The next slice of a sliced answer (on the broker loop).
    public func resume(_ id: UInt64) -> ManagementResponse {
        guard let work = slicedWork[id] else {
            return APIError(status: 500, error: "internal_error", reason: "unknown continuation").response
        }
        do {
            if let done = try work.run(sliceTime) {
                slicedWork[id] = nil
                broker.logger.debug(
                    "management: sliced answer done",
                    metadata: ["request": "\(work.what)", "slices": "\(work.slices)", "longest_slice": "\(work.longest)"])
                return done
            }
            var r = ManagementResponse(status: 200)
            r.continuation = id
            return r
        } catch {
            slicedWork[id] = nil
            return errorResponse(error, "resume")
        }
    }

    /// A listing rendered a slice at a time, ordered by `order` off the loop.
    /// `render` answers nil for an object gone since the listing began.
    func slicedList<T>(_ sources: [T], _ query: ListQuery, order: [String], render: @escaping (T) -> JSONValue?) throws
        -> ManagementResponse
    {
        var items: [JSONValue] = []
        items.reserveCapacity(sources.count)
        var i = 0
        return try sliced(
            SlicedWork { budget in
                repeat {
                    let end = min(sources.count, i + Self.sliceUnit)
                    while i < end {
                        if let item = render(sources[i]) { items.append(item) }
                        i += 1
                    }
                } while i < sources.count && !budget.exhausted
                return i == sources.count ? .list(items, query, order: order) : nil
            })
    }
}

extension ManagementAPI {
    /// For tests: objects between two looks at the clock.
    public static var sliceUnitForTests: Int { sliceUnit }
}

extension ManagementAPI {
    /// Proposes a definition change and answers with `finish` once it is applied (at once with
    /// a local log; after the commit in a cluster, the answer waiting as a sliced one meanwhile).
    /// A refusal answers as the broker's errors do; a change that could not be committed is 503.
    func commit(_ command: MetadataCommand, then finish: @escaping (MetadataReply) throws -> ManagementResponse) throws -> ManagementResponse {
        var outcome: MetadataOutcome?
        broker.metadataLog.propose(command) { outcome = $0 }
        return try sliced(
            SlicedWork { _ in
                guard let o = outcome else { return nil }
                return try Self.finish(o, finish)
            })
    }

    /// Several changes in order, with up to `window` of them proposed ahead (a cluster commits
    /// them in the same rounds); within one turn of the loop no more than its budget is spent
    /// (a local log applies them as they are proposed). The first refusal ends it.
    func commitAll(_ commands: [MetadataCommand], window: Int = 64, then finish: @escaping () throws -> ManagementResponse) throws
        -> ManagementResponse
    {
        var proposed = 0
        var settled = 0
        var outcomes: [Int: MetadataOutcome] = [:]
        return try sliced(
            SlicedWork { [broker] budget in
                var inThisSlice = 0
                while true {
                    while let o = outcomes.removeValue(forKey: settled) {
                        _ = try Self.finish(o) { _ in ManagementAPI.noContent }
                        settled += 1
                    }
                    if settled == commands.count { return try finish() }
                    // At least one per slice, however short the slice: the work always advances.
                    if proposed - settled >= window || proposed == commands.count || (budget.exhausted && inThisSlice > 0) { return nil }
                    inThisSlice += 1
                    let i = proposed
                    proposed += 1
                    broker.metadataLog.propose(commands[i]) { outcomes[i] = $0 }
                }
            })
    }

    static func finish(_ o: MetadataOutcome, _ finish: (MetadataReply) throws -> ManagementResponse) throws -> ManagementResponse {
        switch o {
        case .done(let r): return try finish(r)
        case .refused(.amqp(let e)): throw e
        case .refused(.admin(let e)): throw e
        case .notCommitted(let why): throw APIError(status: 503, error: "unavailable", reason: why)
        }
    }
}
