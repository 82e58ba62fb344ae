import Foundation
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import NIOPosix
public import ServiceLifecycle
import UnixSignals
import AMQPServer
public import WarrenManagement
public import WarrenCore
public import WarrenStore
import WarrenLog
public import WarrenCluster
import WarrenFederation
public import WarrenTLS

/// The composition root of a node: one event loop for the broker and its store, the services,
/// and their graceful shutdown on SIGTERM/SIGINT.
public final class WarrenNode: Sendable {
    public let configuration: NodeConfiguration
    public let logger: Logger
    public let dataDirectory: DataDirectory
    let group: MultiThreadedEventLoopGroup
    let clusterGroup: MultiThreadedEventLoopGroup
    /// Federation links' connections (their own loop: the broker's serves clients).
    let federationGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let federation = NIOLockedValueBox<NIOLoopBound<FederationSupervisor>?>(nil)
    /// This node's part of the cluster (its own loop).
    public let cluster: ClusterNode
    public let broker: NIOLoopBound<Broker>
    public let store: NIOLoopBound<FileMessageStore>
    private let tickTask: RepeatedTask
    private let monitorTask: RepeatedTask
    /// The alarm limits in force; start from the configuration, changeable at runtime (as
    /// `rabbitmqctl set_disk_free_limit` / `set_vm_memory_high_watermark`).
    private let resourceLimits: NIOLockedValueBox<ResourceLimits>
    /// The monitor's latest reading (memory, disk), which the management API reports too.
    let lastReadings: NIOLockedValueBox<ResourceReadings?> = NIOLockedValueBox(nil)
    /// The AMQPS listener's TLS contexts (reloaded on SIGHUP), when TLS is configured.
    public let tlsContexts: TLSContextBox?
    /// The management API's core, on the broker loop.
    public let management: NIOLoopBound<ManagementAPI>
    private let rateTask: RepeatedTask
    private let lagTask: RepeatedTask
    let prometheus = PrometheusExporter()
    /// The listeners running now, as the overview shows them.
    let listeners = NIOLockedValueBox<[NodeStatus.Listener]>([])
    let managementPort = NIOLockedValueBox(0)
    /// This node's own alarms and connection count as last measured (for the gossip).
    let localAlarms = NIOLockedValueBox<Set<String>>([])
    let connectionCount = NIOLockedValueBox(0)
    /// `stop_app` / `start_app`.
    public let appSwitch = AppSwitch()

    /// Opens the data directory, recovers the store (refusing to start on corruption, with a
    /// message that says what to do), rebuilds the broker from it and imports the definitions
    /// file, if any.
    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.dataDirectory = try DataDirectory(path: configuration.resolvedDataDirectory())
        // Certificate problems stop the start with the file that is wrong.
        self.tlsContexts = try configuration.tlsSettings().map { try TLSContextBox(settings: $0) }
        // One loop owns the broker and every connection (docs/architecture.md explains why);
        // the cluster has a loop of its own, so that heartbeats never wait behind clients.
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.clusterGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let clusterLoop = clusterGroup.next()
        let brokerConfig = configuration.broker
        var brokerLogger = logger
        brokerLogger[metadataKey: "subsystem"] = "amqp"
        var storeLogger = logger
        storeLogger[metadataKey: "subsystem"] = "store"
        var clusterLogger = logger
        clusterLogger[metadataKey: "subsystem"] = "cluster"
        let definitions = configuration.loadDefinitions
        let storeDirectory = (dataDirectory.path as NSString).appendingPathComponent("store")
        let nodeName = configuration.nodeName
        let settings = try configuration.clusterSettings(dataDirectory: dataDirectory)
        let (broker, store, management) = try loop.submit { [brokerLogger, storeLogger] in
            var config = brokerConfig
            config.seedDefaults = false
            config.nodeName = nodeName
            config.clusterName = settings.clusterName ?? nodeName
            let broker = Broker(configuration: config, logger: brokerLogger)
            let store = try FileMessageStore(directory: storeDirectory, logger: storeLogger) { task in loop.execute(task) }
            store.onFatal = { error in
                // Crash-only: after a failed write or fsync nothing more can be promised, and
                // recovery at the next start is what makes the state right again.
                storeLogger.critical(
                    "store failed, stopping the node: \(error.description). Free space or mend the disk, then start the node again: what it confirmed is recovered from the store"
                )
                exit(70)
            }
            broker.attach(store: store)
            let management = ManagementAPI(broker: broker, nodeName: nodeName)
            return (NIOLoopBound(broker, eventLoop: loop), NIOLoopBound(store, eventLoop: loop), NIOLoopBound(management, eventLoop: loop))
        }.wait()

        // The definitions live in the cluster's metadata log; the store keeps messages, and which
        // storage belongs to which durable queue.
        let cluster = ClusterNode(
            settings: settings, broker: try loop.submit { broker.value }.wait(), brokerLoop: loop, clusterLoop: clusterLoop,
            dataDirectory: dataDirectory.path, logger: clusterLogger)
        let fresh = try clusterLoop.submit { try cluster.openLog() }.wait()
        do {
            _ = try cluster.listen().wait()
        } catch {
            throw StartError(
                "cannot start the cluster listener on \(settings.bindHost):\(settings.port): \(error); choose another port with --cluster-port (0 picks a free one; RabbitMQ's distribution port is 25672 too)")
        }
        let founder = cluster.isFounder
        let initialState: [UInt8]? = try loop.submit { () throws -> [UInt8]? in
            let b = broker.value
            let s = store.value
            b.definitionsInStore = false
            s.snapshotProvider = { [unowned b] in b.storageClaimsSnapshot() }
            let legacy = !s.isFresh && !Broker.isClaimsMetadata(s.recoveredMetadata)
            guard fresh && founder else {
                if fresh && legacy {
                    storeLogger.warning("this node's earlier definitions are replaced by the cluster's it joins; queues the cluster lacks lose their messages")
                }
                b.recoverStorage(metadata: s.recoveredMetadata, queues: s.recoveredQueues)
                return nil
            }
            // A new cluster starts from this node's state: what an earlier Warren journaled in its
            // store, or a definitions file, or RabbitMQ's first-boot defaults.
            if legacy {
                b.definitionsInStore = true
                b.recover(metadata: s.recoveredMetadata, queues: s.recoveredQueues)
                b.definitionsInStore = false
                s.requestCheckpoint()
            } else {
                b.recoverStorage(metadata: s.recoveredMetadata, queues: s.recoveredQueues)
                if let definitions { try b.importDefinitions(file: definitions) } else { b.seedDefaults() }
            }
            b.setClusterNodes([nodeName: cluster.address])
            b.setGlobalParameter(name: Broker.replicationFeature, value: .bool(true))
            return Array(b.stateSnapshot().jsonText.utf8)
        }.wait()
        // Before the metadata replays: its quorum queues open their groups as they are made.
        try loop.submit { Self.enableReplicatedQueues(broker.value, cluster: cluster, brokerLoop: loop, timeoutSeconds: configuration.metadataTimeoutSeconds) }.wait()
        let started = try clusterLoop.submit { cluster.start(initialState: initialState) }.wait()
        self.cluster = cluster
        try loop.submit {
            let b = broker.value
            b.metadataLog = cluster.metadata
            b.onClusterChange = { [unowned b] in
                let nodes = b.clusterNodes
                let name = b.clusterName
                clusterLoop.execute { cluster.registryChanged(nodes, name: name) }
            }
            b.onClusterChange?()
            cluster.metadata.start()
            Self.connectQueues(b, cluster: cluster, brokerLoop: loop, silenceLimit: configuration.queueLinkTimeoutSeconds)
        }.wait()
        try Self.waitUntilServing(cluster, started: started, brokerLoop: loop, logger: clusterLogger)
        try loop.submit { [brokerLogger] in
            let b = broker.value
            // Its definitions are replayed: other nodes' queue traffic may come.
            b.clusterQueues?.serving = true
            switch started {
            case .restarted:
                // This node's transient and exclusive queues of before are gone; its proposals
                // wait until the cluster has recorded that.
                cluster.metadata.proposeRestart()
            case .founded, .joining:
                cluster.metadata.openGate()
            }
            if b.clusterNodes[nodeName] != cluster.address {
                b.metadataLog.propose(.registerNode(name: nodeName, address: cluster.address)) { _ in }
            }
            if b.globalParameters[Broker.replicationFeature] == nil {
                b.metadataLog.propose(.setGlobalParameter(name: Broker.replicationFeature, value: .bool(true))) { _ in }
            }
            // Groups of queues deleted while this node was away (their deletion came in a
            // snapshot) leave the WAL.
            clusterLoop.execute { cluster.removeOrphanGroups() }
            if started != .founded, let definitions {
                do {
                    let data = try Data(contentsOf: URL(fileURLWithPath: definitions))
                    guard let doc = JSONValue(jsonText: String(decoding: data, as: UTF8.self)) else { throw AdminError("not valid JSON") }
                    b.metadataLog.propose(.importDefinitions(try b.preparedForImport(doc))) { outcome in
                        if case .done = outcome { return }
                        brokerLogger.error("definitions file not imported", metadata: ["file": "\(definitions)", "outcome": "\(outcome)"])
                    }
                } catch {
                    brokerLogger.error("definitions file not imported: \(error)", metadata: ["file": "\(definitions)"])
                }
            }
        }.wait()
        self.broker = broker
        self.store = store
        self.management = management
        // Rates for the management API, on RabbitMQ's 5 s statistics beat.
        // How late the broker loop runs a 100 ms timer is how long it was busy with one thing:
        // every AMQP client of the node waited that long. Said in the log, for operators (and
        // for Scripts/bench-management, which reads it).
        let lag = LoopLagMonitor(logger: logger)
        self.lagTask = loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in lag.tick() }
        // A round reads every queue: a few thousand per turn of the loop.
        self.rateTask = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(5)) { _ in
            management.value.startRateRound(now: broker.value.clock.nowMilliseconds())
            LoopSlices.run(on: loop) { management.value.rateStep(queues: 2000) }
        }
        // Message TTL and queue expiry: expired heads and unused queues go within 50 ms; the
        // store syncs what nobody waited for, checkpoints and compacts on the same beat.
        self.tickTask = loop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { _ in
            broker.value.tick()
            store.value.tick()
        }
        let limits = NIOLockedValueBox(configuration.resources)
        self.resourceLimits = limits
        let dataPath = dataDirectory.path
        let readings = lastReadings
        let alarms = localAlarms
        let connections = connectionCount
        self.monitorTask = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { _ in
            let r = ResourceReadings.read(dataDirectory: dataPath)
            readings.withLockedValue { $0 = r }
            broker.value.apply(resources: r, limits: limits.withLockedValue { $0 })
            alarms.withLockedValue { $0 = broker.value.localAlarms }
            connections.withLockedValue { $0 = broker.value.connections.count }
        }
        startGossip()
        followRemoteAlarms()
        answerOtherNodes()
    }

    /// Changes the alarm limits and re-evaluates them at once.
    public func setResourceLimits(_ limits: ResourceLimits) async throws {
        resourceLimits.withLockedValue { $0 = limits }
        let dataPath = dataDirectory.path
        try await withBroker { $0.apply(resources: ResourceReadings.read(dataDirectory: dataPath), limits: limits) }
    }

    public var currentResourceLimits: ResourceLimits { resourceLimits.withLockedValue { $0 } }

    /// The services this node runs, in start order.
    public func services(
        onAMQPListening: @escaping @Sendable (SocketAddress) -> Void = { _ in },
        onAMQPSListening: @escaping @Sendable (SocketAddress) -> Void = { _ in },
        onManagementListening: @escaping @Sendable (SocketAddress) -> Void = { _ in },
        onPrometheusListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) -> [any Service] {
        var amqp = AMQPServerConfiguration(
            host: configuration.bindAddress, port: configuration.amqpPort,
            handshakeTimeout: .seconds(Int64(configuration.handshakeTimeoutSeconds)))
        amqp.maxConnections = configuration.maxConnections
        let shutdown = TimeAmount.seconds(Int64(configuration.shutdownTimeoutSeconds))
        var list: [any Service] = []
        let listeners = self.listeners
        func noting(_ name: String, _ then: @escaping @Sendable (SocketAddress) -> Void) -> @Sendable (SocketAddress) -> Void {
            { address in
                listeners.withLockedValue { list in
                    list.removeAll { $0.protocolName == name }
                    list.append(NodeStatus.Listener(protocolName: name, ip: address.ipAddress ?? "", port: address.port ?? 0))
                }
                then(address)
            }
        }
        if configuration.plainListener {
            list.append(
                AMQPService(configuration: amqp, broker: broker, shutdownTimeout: shutdown, logger: logger, appSwitch: appSwitch, onListening: noting("amqp") { [self] address in
                    startFederation(localPort: address.port ?? configuration.amqpPort)
                    onAMQPListening(address)
                }))
        }
        if let tls = tlsContexts {
            var amqps = amqp
            amqps.port = configuration.amqpsPort
            amqps.tls = AMQPTLSOptions(contexts: tls, handshakeTimeout: .seconds(Int64(configuration.tlsHandshakeTimeoutSeconds)))
            list.append(
                AMQPService(configuration: amqps, broker: broker, shutdownTimeout: shutdown, logger: logger, appSwitch: appSwitch, onListening: noting("amqp/ssl", onAMQPSListening)))
            list.append(TLSReloadService(contexts: tls, logger: logger))
        }
        if configuration.management {
            let port = managementPort
            list.append(
                HTTPShell.application(
                    name: "management", host: configuration.bindAddress, port: configuration.managementPort,
                    maxBodySize: configuration.managementMaxBodySize, logger: logger,
                    onListening: noting("http") { address in
                        port.withLockedValue { $0 = address.port ?? 0 }
                        onManagementListening(address)
                    }, answer: { [self] in try await answerManagement($0) }))
        }
        if configuration.prometheus {
            list.append(
                HTTPShell.application(
                    name: "prometheus", host: configuration.bindAddress, port: configuration.prometheusPort, maxBodySize: 64 * 1024, logger: logger,
                    onListening: noting("http/prometheus", onPrometheusListening), answer: { [self] in try await answerPrometheus($0) }))
        }
        return list
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully.
    public func run() async throws {
        logger.notice("data directory: \(dataDirectory.path)")
        let group = ServiceGroup(
            services: services(), gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        try await group.run()
        try await shutdownEventLoops()
        logger.notice("node stopped")
    }

    /// Closes the store (everything synced, a final checkpoint) and stops the event loop, once
    /// the services have stopped.
    public func shutdownEventLoops() async throws {
        tickTask.cancel()
        monitorTask.cancel()
        rateTask.cancel()
        lagTask.cancel()
        let cluster = self.cluster
        if let f = federation.withLockedValue({ $0 }) { try await f.eventLoop.submit { f.value.stop() }.get() }
        try await broker.eventLoop.submit { cluster.metadata.stop() }.get()
        try await cluster.loop.submit { cluster.stop() }.get()
        let store = self.store
        try await store.eventLoop.submit { store.value.close() }.get()
        try await group.shutdownGracefully()
        try await clusterGroup.shutdownGracefully()
        try await federationGroup.shutdownGracefully()
        dataDirectory.release()
    }

    /// Runs `body` with the broker on its event loop (the admin interface's way in).
    public func withBroker<T: Sendable>(_ body: @escaping @Sendable (Broker) throws -> T) async throws -> T {
        let broker = self.broker
        return try await broker.eventLoop.submit { try body(broker.value) }.get()
    }
}

extension WarrenNode {
    /// The node as the management API reports it, measured now.
    func nodeStatus() -> NodeStatus {
        NodeStatusReader.read(
            name: configuration.nodeName,
            readings: lastReadings.withLockedValue { $0 } ?? ResourceReadings.read(dataDirectory: dataDirectory.path),
            limits: currentResourceLimits, listeners: listeners.withLockedValue { $0 },
            managementPort: managementPort.withLockedValue { $0 })
    }

    /// `/api/...` goes to the API core on the broker loop; other paths are the web UI's files.
    func answerManagement(_ request: ManagementRequest) async throws -> ManagementResponse {
        try await respondAcrossCluster(request).finish()
    }

    /// The answer before sorting, paging and serializing (`finish()`), with what other members
    /// add to the views that span the cluster.
    func respondAcrossCluster(_ request: ManagementRequest) async throws -> ManagementResponse {
        guard request.path == "/api" || request.path.hasPrefix("/api/") else {
            return UIAssets.response(for: request.path) ?? ManagementResponse(status: 404, contentType: "text/plain", body: Array("Not Found".utf8))
        }
        if case .queue(let vhost, let name) = request.clusterScope, let home = await homeNode(vhost: vhost, queue: name), home != configuration.nodeName {
            // Its home node has its messages, consumers and counts.
            if let answer = await askMembers(request, only: home).first, let r = JSONValue(jsonText: answer).flatMap(ManagementResponse.init(forwarded:)) {
                return r
            }
            if request.method != "GET" {
                return .json(.object(["error": .string("bad_request"), "reason": .string("home node '\(home)' of queue '\(name)' in vhost '\(vhost)' is down or inaccessible")]), status: 400)
            }
        }
        var nodeNow = nodeStatus()
        nodeNow.cluster = await clusterStatus()
        let status = nodeNow
        let management = self.management
        // Parsing and, below, sorting and serializing happen here, off the broker loop; the
        // loop does the API's own work, a slice per turn for long answers.
        var request = request
        request.parseBody()
        // Each slice of a long answer is its own task on the loop, with the loop's sockets
        // served between them (see `LoopSlices`).
        let loop = management.eventLoop
        let promise = loop.makePromise(of: ManagementResponse.self)
        loop.execute { [request] in
            var response = management.value.respond(request, node: status)
            LoopSlices.run(on: loop) {
                guard let id = response.continuation else {
                    promise.succeed(response)
                    return true
                }
                response = management.value.resume(id)
                return false
            }
        }
        var response = try await promise.futureResult.get()
        if let action = response.nodeAction { return await perform(action, status: status) }
        switch request.clusterScope {
        case .local, .queue: break
        case .queues:
            // Each queue as its home node lists it (the others' copies lack its counts).
            var theirs: [JSONValue] = []
            for (node, answer) in await askMembersNamed(request) {
                theirs += (JSONValue(jsonText: answer)?.arrayValue ?? []).filter { $0["node"]?.stringValue == node }
            }
            response = response.replacingHomed(theirs, me: configuration.nodeName)
        case .list:
            // Connections and channels of every member, sorted and paged together.
            for answer in await askMembers(request) {
                if let items = JSONValue(jsonText: answer)?.arrayValue { response = response.merging(items) }
            }
        case .find:
            // A connection of another node: the node that has it answers (or closes it).
            if response.status == 404 {
                for answer in await askMembers(request) {
                    if let r = JSONValue(jsonText: answer).flatMap(ManagementResponse.init(forwarded:)), r.status != 404 { return r }
                }
            }
        }
        return response
    }

    /// The other running members' answers to a request forwarded to them (JSON text each;
    /// members that do not answer within 5 s are left out).
    func askMembers(_ request: ManagementRequest, only: String? = nil) async -> [String] {
        await askMembersNamed(request, only: only).map(\.1)
    }

    /// The same, with the node each answer came from.
    func askMembersNamed(_ request: ManagementRequest, only: String? = nil) async -> [(String, String)] {
        let cluster = self.cluster
        let me = configuration.nodeName
        let text = request.forwarded.jsonText
        let members = (try? await cluster.loop.submit {
            cluster.registry.keys.filter { $0 != me && (only == nil || $0 == only) && cluster.transport.isConnected($0) }
        }.get()) ?? []
        return await withTaskGroup(of: (String, String?).self) { group in
            for name in members {
                group.addTask {
                    let answer = await withCheckedContinuation { (k: CheckedContinuation<String?, Never>) in
                        cluster.loop.execute { cluster.ask(name, text, timeout: .seconds(5)) { k.resume(returning: $0) } }
                    }
                    return (name, answer)
                }
            }
            var out: [(String, String)] = []
            for await (name, a) in group { if let a { out.append((name, a)) } }
            return out.sorted { $0.0 < $1.0 }
        }
    }

    /// The home node of a queue, if it exists.
    func homeNode(vhost: String, queue: String) async -> String? {
        let broker = self.broker
        return try? await broker.eventLoop.submit { broker.value.vhosts[vhost]?.queues[queue]?.homeNode }.get() ?? nil
    }

    /// Another member's forwarded request: answered for this node alone (a list's raw items,
    /// or the finished response).
    func answerForwarded(_ json: String) async -> (Bool, String) {
        guard let j = JSONValue(jsonText: json), let request = ManagementRequest(forwarded: j) else { return (false, "bad request") }
        guard let response = try? await respondAcrossCluster(request) else { return (false, "failed") }
        if request.method == "GET", let items = response.listItems { return (true, JSONValue.array(items).jsonText) }
        return (true, response.finish().forwardedJSON.jsonText)
    }

    /// `/metrics` (node-wide) and `/metrics/per-object` (also per queue), in Prometheus' text
    /// format.
    func answerPrometheus(_ request: ManagementRequest) async throws -> ManagementResponse {
        let perObject = request.path == "/metrics/per-object"
        guard request.method == "GET", perObject || request.path == "/metrics" else {
            return ManagementResponse(status: 404, contentType: "text/plain", body: Array("Not Found".utf8))
        }
        let status = nodeStatus()
        let broker = self.broker
        let loop = broker.eventLoop
        // A few thousand queues per turn of the broker loop (100,000 queues would hold it).
        let promise = loop.makePromise(of: MetricsSnapshot.self)
        loop.execute {
            let taker = MetricsSnapshotTaker(broker.value, perObject: perObject)
            LoopSlices.run(on: loop) {
                guard taker.step(queues: 2000) else { return false }
                promise.succeed(taker.snapshot)
                return true
            }
        }
        let snapshot = try await promise.futureResult.get()
        let text = prometheus.scrape(snapshot, node: status, cluster: configuration.broker.clusterName, perObjectSeries: perObject)
        return ManagementResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(text.utf8))
    }
}

/// A node that cannot start, and why (said in one line, with the setting to change).
public struct StartError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
