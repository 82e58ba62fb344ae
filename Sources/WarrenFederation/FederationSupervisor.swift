public import Logging
public import NIOCore
import NIOConcurrencyHelpers
public import WarrenCore

/// Starts, stops and feeds a node's federation links. Lives on the broker's loop: every second
/// it compares the links the policies and parameters ask for with those running here; every
/// 200 ms it passes each exchange link its exchange's bindings (when they changed) and each
/// queue link whether its queue has consumers waiting. The links themselves run on a loop of
/// their own (`linkLoop`), never on the broker's.
///
/// In a cluster each link runs on exactly one node: a queue link on the node that serves its
/// queue (it must see the queue's consumers), an exchange link on the node that rendezvous
/// hashing of its id picks among the members that are up, so links spread over the nodes and
/// only the links of a node that leaves move.
public final class FederationSupervisor {
    let broker: Broker
    let linkLoop: any EventLoop
    let brokerLoop: any EventLoop
    let logger: Logger
    let localPort: Int
    let secret: [UInt8]
    private var links: [String: FederationLink] = [:]
    private var bindingVersions: [String: UInt64] = [:]
    private var reconcileTask: RepeatedTask?
    private var pollTask: RepeatedTask?

    public init(broker: Broker, brokerLoop: any EventLoop, linkLoop: any EventLoop, localPort: Int, logger: Logger) {
        self.broker = broker
        self.brokerLoop = brokerLoop
        self.linkLoop = linkLoop
        self.localPort = localPort
        self.logger = logger
        var rng = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        self.secret = secret
        broker.internalLoginSecret = secret
        broker.restartFederationLink = { [unowned self] id in restart(id: id) }
    }

    /// Starts the timers (on the broker loop).
    public func start() {
        let me = NIOLoopBound(self, eventLoop: brokerLoop)
        reconcileTask = brokerLoop.scheduleRepeatedTask(initialDelay: .milliseconds(200), delay: .seconds(1)) { _ in me.value.reconcile() }
        pollTask = brokerLoop.scheduleRepeatedTask(initialDelay: .milliseconds(300), delay: .milliseconds(200)) { _ in me.value.poll() }
    }

    /// Stops every link (the node is shutting down: nothing is cleaned up upstream).
    public func stop() {
        reconcileTask?.cancel()
        pollTask?.cancel()
        for l in links.values { l.stop(cleanup: false) }
        links.removeAll()
    }

    /// Restarts a running link now (`restart_federation_link`). False: no such link here.
    public func restart(id: String) -> Bool {
        guard let l = links[id] else { return false }
        l.restart()
        return true
    }

    func reconcile() {
        let specs = broker.federationLinkSpecs()
        guard !specs.isEmpty || !links.isEmpty else { return }
        var byId: [String: FederationLinkSpec] = [:]
        for s in specs where runsHere(s) { byId[s.id] = s }
        let anywhere = Set(specs.map(\.id))
        for (id, link) in links where byId[id] != link.spec {
            // Gone, or changed (a new link takes its place below). Cleanup upstream only when
            // nothing asks for the link any more anywhere (not when it moves to another node).
            link.stop(cleanup: !anywhere.contains(id))
            links[id] = nil
            bindingVersions[id] = nil
            broker.federationLinks[id] = nil
            logger.info("federation link stopped", metadata: ["link": "\(id)", "upstream": "\(link.spec.upstream.name)"])
        }
        for (id, spec) in byId where links[id] == nil {
            let link = FederationLink(
                spec: spec, loop: linkLoop, environment: environment(for: spec),
                bindings: spec.kind == .exchange ? bindingKeys(spec) : [], demand: demand(spec))
            links[id] = link
            broker.federationLinks[id] = FederationLinkStatus(spec: spec, state: .starting, since: broker.clock.nowMilliseconds(), node: broker.nodeName)
            link.start()
        }
    }

    func poll() {
        for (id, link) in links {
            let spec = link.spec
            switch spec.kind {
            case .exchange:
                guard let (version, keys) = broker.federatedBindingKeys(vhost: spec.vhost, exchange: spec.name), bindingVersions[id] != version else { continue }
                bindingVersions[id] = version
                link.control.withLockedValue { $0.bindings = keys }
            case .queue:
                let d = demand(spec)
                link.control.withLockedValue { $0.demand = d }
            }
        }
    }

    private func bindingKeys(_ spec: FederationLinkSpec) -> Set<FederationBindingKey> {
        guard let (version, keys) = broker.federatedBindingKeys(vhost: spec.vhost, exchange: spec.name) else { return [] }
        bindingVersions[spec.id] = version
        return keys
    }

    private func demand(_ spec: FederationLinkSpec) -> Bool {
        spec.kind == .queue && broker.federatedQueueWantsMessages(vhost: spec.vhost, queue: spec.name, backlog: 0)
    }

    /// Whether this node runs the link (see the type's comment).
    func runsHere(_ spec: FederationLinkSpec) -> Bool {
        guard broker.clusterNodes.count > 1 else { return true }
        switch spec.kind {
        case .queue:
            return broker.vhosts[spec.vhost]?.queues[spec.name]?.homeNode == broker.nodeName
        case .exchange:
            let up = broker.clusterNodes.keys.filter { $0 == broker.nodeName || broker.clusterQueues?.isUp($0) == true }
            return Self.owner(of: spec.id, among: up) == broker.nodeName
        }
    }

    /// Rendezvous hashing: the node with the highest hash of (link, node).
    static func owner(of id: String, among nodes: some Collection<String>) -> String? {
        func score(_ node: String) -> UInt64 {
            var h: UInt64 = 14_695_981_039_346_656_037
            for b in "\(id)\u{0}\(node)".utf8 { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
            return h
        }
        return nodes.max { (score($0), $0) < (score($1), $1) }
    }

    private func environment(for spec: FederationLinkSpec) -> LinkEnvironment {
        let broker = NIOLoopBound(self.broker, eventLoop: brokerLoop)
        let loop = brokerLoop
        let id = spec.id
        var log = logger
        log[metadataKey: "subsystem"] = "federation"
        return LinkEnvironment(
            localPort: localPort, secret: secret, clusterName: self.broker.clusterName, logger: log,
            report: { state, error, uri, localConnection in
                loop.execute {
                    let b = broker.value
                    guard var s = b.federationLinks[id] else { return }
                    if s.state != state || s.error != error { s.since = b.clock.nowMilliseconds() }
                    s.state = state
                    s.error = error
                    if let uri { s.uri = uri }
                    if let localConnection { s.localConnection = localConnection }
                    b.federationLinks[id] = s
                }
            })
    }
}
