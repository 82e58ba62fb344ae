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
    /// Objects rendered between two looks at the clock; definitions imported per unit.
    static let sliceUnit = 32

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
