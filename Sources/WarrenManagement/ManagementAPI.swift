import AMQPProtocol
import Foundation
import Logging
public import WarrenCore

/// The management HTTP API's core, RabbitMQ's paths, status codes and JSON: a request in, a
/// response out, run on the broker's event loop (the broker is not thread-safe and does not
/// need to be). No sockets here; WarrenNode's Hummingbird shell feeds it, tests call it directly.
public final class ManagementAPI {
    public let broker: Broker
    var rates = RateSampler()
    var rateRound: RateRound?
    /// The node's name as the API shows it (`warren@host`).
    public let nodeName: String
    /// Sliced answers in progress, by the id their responses carry.
    var slicedWork: [UInt64: SlicedWork] = [:]
    var nextWorkID: UInt64 = 1
    /// How long a slice of a long answer may hold the broker loop (docs/management.md).
    public var sliceTime: Duration = .milliseconds(4)

    public init(broker: Broker, nodeName: String) {
        self.broker = broker
        self.nodeName = nodeName
    }

    /// Answers a request, body included, all slices at once (tests).
    public func handle(_ request: ManagementRequest, node: NodeStatus) -> ManagementResponse {
        var r = respond(request, node: node)
        while let id = r.continuation { r = resume(id) }
        return r.finish()
    }

    /// Answers a request, leaving sorting, paging and serializing to `finish()`, which the
    /// node's HTTP shell calls off the broker loop.
    public func respond(_ request: ManagementRequest, node: NodeStatus) -> ManagementResponse {
        do {
            let segments = try Self.segments(request.path)
            guard segments.first == "api" else { throw APIError.notFound }
            let caller = try authenticate(request)
            let response = try route(Array(segments.dropFirst()), request, caller, node)
            if let id = response.continuation { slicedWork[id]?.what = "\(request.method) \(request.path)" }
            return response
        } catch {
            return errorResponse(error, "\(request.method) \(request.path)")
        }
    }

    func errorResponse(_ error: any Error, _ what: String) -> ManagementResponse {
        switch error {
        case let e as APIError: return e.response
        case let e as AMQPError: return Self.apiError(e).response
        case let e as AdminError: return APIError.badRequest(e.description).response
        default:
            broker.logger.error("management API: \(what) failed: \(error)")
            return APIError(status: 500, error: "internal_error", reason: "\(error)").response
        }
    }

    /// AMQP errors from the broker's operations, as RabbitMQ's API reports them.
    static func apiError(_ e: AMQPError) -> APIError {
        // RabbitMQ's API gives the text without the AMQP reply name in front.
        var text = e.text
        if let dash = text.range(of: " - "), text[..<dash.lowerBound].allSatisfy({ $0.isUppercase || $0 == "_" }) {
            text = String(text[dash.upperBound...])
        }
        switch e.code {
        case .notFound: return .notFound
        case .accessRefused: return .forbidden(text)
        default: return .badRequest(text)
        }
    }

    /// Splits a raw path into percent-decoded segments (`/api/queues/%2F/q` -> api, queues, /, q).
    static func segments(_ path: String) throws(APIError) -> [String] {
        var out: [String] = []
        for raw in path.split(separator: "/", omittingEmptySubsequences: true) {
            guard let s = String(raw).removingPercentEncoding else { throw .badRequest("bad path encoding") }
            out.append(s)
        }
        return out
    }

    // MARK: authentication

    struct Caller {
        let user: User
        var isAdministrator: Bool { user.hasTag("administrator") }
        var isMonitor: Bool { isAdministrator || user.hasTag("monitoring") }
        var isPolicymaker: Bool { isAdministrator || user.hasTag("policymaker") }
        var isManagement: Bool { isMonitor || isPolicymaker || user.hasTag("management") }
    }

    enum Need { case management, monitoring, policymaker, administrator }

    /// HTTP basic auth against the broker's users; the user must have a management tag at all.
    func authenticate(_ request: ManagementRequest) throws(APIError) -> Caller {
        let challenge = [("WWW-Authenticate", "Basic realm=\"Warren Management\"")]
        guard let header = request.authorization, header.lowercased().hasPrefix("basic "),
            let decoded = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let pair = String(data: decoded, encoding: .utf8), let colon = pair.firstIndex(of: ":")
        else {
            throw APIError(status: 401, error: "", reason: "", headers: challenge, emptyBody: true)
        }
        let name = String(pair[..<colon])
        let password = String(pair[pair.index(after: colon)...])
        guard let user = broker.users[name], user.authenticate(password: password) else {
            broker.logger.warning("management API: login failed", metadata: ["user": "\(name)"])
            throw .loginFailed()
        }
        if broker.configuration.loopbackUsers.contains(name) && !request.peerIsLoopback {
            throw .loginFailed("User can only log in via localhost")
        }
        let caller = Caller(user: user)
        guard caller.isManagement else { throw .forbidden("Not management user") }
        return caller
    }

    func require(_ need: Need, _ caller: Caller) throws(APIError) {
        switch need {
        case .management: return
        case .monitoring: if !caller.isMonitor { throw .forbidden("Not monitor user") }
        case .policymaker: if !caller.isPolicymaker { throw .forbidden("Not policymaker user") }
        case .administrator: if !caller.isAdministrator { throw .forbidden("Not administrator user") }
        }
    }

    /// Whether the caller sees a vhost's objects: monitors see all, others where they have
    /// permissions.
    func canSee(_ vhost: String, _ caller: Caller) -> Bool {
        caller.isMonitor || broker.canAccess(vhost: vhost, user: caller.user.name)
    }

    /// A vhost that must exist (404) and be visible to the caller (403).
    func visibleVHost(_ name: String, _ caller: Caller) throws(APIError) -> VirtualHost {
        guard let v = broker.vhosts[name] else { throw .notFound }
        guard canSee(name, caller) else { throw .forbidden("User not authorised to access virtual host") }
        return v
    }

    /// A vhost the caller acts in: it must have permissions there, unless it is an
    /// administrator (who may act anywhere, as with rabbitmqctl; warrenctl goes through here).
    func actingVHost(_ name: String, _ caller: Caller) throws(APIError) -> VirtualHost {
        guard let v = broker.vhosts[name] else { throw .notFound }
        guard caller.isAdministrator || broker.canAccess(vhost: name, user: caller.user.name) else {
            throw .forbidden("User not authorised to access virtual host")
        }
        return v
    }

    /// A permission check as the AMQP methods make it; administrators pass (see `actingVHost`).
    func checkAccess(_ kind: AccessKind, _ resource: Resource, _ caller: Caller, _ vhost: VirtualHost) throws(AMQPError) {
        if caller.isAdministrator { return }
        try broker.checkAccess(kind, resource, user: caller.user.name, vhost: vhost.name)
    }

    /// The vhosts the caller may list objects of, in name order.
    func visibleVHosts(_ caller: Caller) -> [VirtualHost] {
        broker.vhosts.values.filter { canSee($0.name, caller) }.sorted { $0.name < $1.name }
    }

    // MARK: rates

    /// Samples the counters behind every `*_details.rate` at once (tests); the node spreads a
    /// round over several turns of its loop with `startRateRound` and `rateStep`.
    public func sampleRates(now: Int64) {
        startRateRound(now: now)
        while !rateStep(queues: .max) {}
    }

    /// Begins a sampling round (every 5 s): the queues to read, a step at a time.
    public func startRateRound(now: Int64) {
        rateRound = RateRound(now: now, stats: broker.stats, pending: broker.vhosts.values.flatMap { Array($0.queues.values) })
    }

    /// Samples up to `queues` more queues; true when the round is done.
    public func rateStep(queues: Int) -> Bool {
        // Taken out while stepping: popping from a copy that `rateRound` still shares would
        // copy the whole pending array every step (found in a profile with 100,000 queues).
        guard var round = rateRound.take() else { return true }
        var n = queues
        while n > 0, let q = round.pending.popLast() {
            n -= 1
            guard !q.isDeleted else { continue }
            round.ready += q.messageCount
            round.unacked += q.unackedCount
            rates.record(q.serial, Self.queueCounters(q), now: round.now)
        }
        guard round.pending.isEmpty else {
            rateRound = round
            return false
        }
        rates.record(RateSampler.global, Self.globalCounters(round.stats, ready: round.ready, unacked: round.unacked), now: round.now)
        rates.endRound()
        return true
    }

    struct RateRound {
        let now: Int64
        let stats: BrokerStats
        var pending: [MessageQueue]
        var ready = 0
        var unacked = 0
    }
}
