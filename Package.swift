// swift-tools-version:6.1
import PackageDescription

// Strict settings for every target: Swift 6 mode is the default for tools 6.x; these add the
// upcoming features the house style asks for (see ../shared/STYLE.md item 12).
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "warren",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "warren", targets: ["warren"]),
        .executable(name: "warren-perf", targets: ["warren-perf"]),
        .executable(name: "warrenctl", targets: ["warrenctl"]),
        .executable(name: "warren-cluster", targets: ["warren-cluster"]),
        .library(name: "AMQPProtocol", targets: ["AMQPProtocol"]),
        .library(name: "AMQPClient", targets: ["AMQPClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        // The management HTTP API and the Prometheus endpoint (default traits off: no
        // swift-configuration, no extra Foundation).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Pure wire codec: ByteBuffer in, values out. No Channel, no EventLoop.
        .target(
            name: "AMQPProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // Broker state and the connection/channel state machines. No sockets, no clocks.
        .target(
            name: "WarrenCore",
            dependencies: [
                "AMQPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // CRC-32C with the SSE4.2 instruction where the CPU has it (the store checksums every
        // record it writes and reads).
        .target(name: "CWarrenCRC"),
        // TLS settings shared by the AMQPS listener (and later cluster and federation links):
        // files to NIOSSLContext, reload, certificate-to-user mapping for SASL EXTERNAL.
        .target(
            name: "WarrenTLS",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        // Raft consensus, pure: no IO, no clocks, no threads, no dependencies.
        .target(name: "Raft", swiftSettings: strict),
        // A deterministic simulator of Raft groups (network faults, crashes, invariant checks).
        .target(name: "RaftTestKit", dependencies: ["Raft"], swiftSettings: strict),
        // Connections inside the process (no sockets), for the microbenchmark and the fuzzer.
        .target(
            name: "WarrenCoreInProcess",
            dependencies: ["WarrenCore", "AMQPProtocol", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // The codec's fuzz target (Scripts/fuzz builds it with libFuzzer; a normal build
        // replays input files through it).
        .executableTarget(
            name: "warren-fuzz",
            dependencies: [
                "AMQPProtocol", "WarrenCore", "WarrenCoreInProcess", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The long simulation mode and the core's benchmarks, in a release build.
        .executableTarget(name: "raft-sim", dependencies: ["Raft", "RaftTestKit"], swiftSettings: strict),
        // What every Warren log is made of: segment files, CRC-checked records, the sync thread
        // (group commit). The message store and the Raft write-ahead log both stand on it.
        .target(
            name: "WarrenLog",
            dependencies: ["CWarrenCRC", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // Durable storage: the shared log with group commit, paging, checkpoints, compaction,
        // recovery. Implements WarrenCore's MessageStore.
        .target(
            name: "WarrenStore",
            dependencies: [
                "WarrenCore", "AMQPProtocol", "CWarrenCRC", "WarrenLog",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The cluster: Raft groups hosted on a loop of their own, one write-ahead log for all of
        // them, the links between nodes (framed, authenticated, optionally TLS).
        .target(
            name: "WarrenCluster",
            dependencies: [
                "Raft", "WarrenLog", "WarrenCore", "AMQPProtocol", "WarrenTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // The thin NIO shell around WarrenCore.
        .target(
            name: "AMQPServer",
            dependencies: [
                "WarrenTLS", .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOTLS", package: "swift-nio"),
                "AMQPProtocol", "WarrenCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // A small async AMQP client used by tests, and later by federation and warren-perf.
        .target(
            name: "AMQPClient",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                "AMQPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // Federation links: AMQP clients of an upstream broker and of their own node, started and
        // fed by a supervisor on the broker loop (docs/federation.md).
        .target(
            name: "WarrenFederation",
            dependencies: [
                "WarrenCore", "AMQPClient", "AMQPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The management API's core: requests in, JSON out, run on the broker's loop. No HTTP
        // server, no sockets (the node's Hummingbird shell feeds it).
        .target(
            name: "WarrenManagement",
            dependencies: [
                "WarrenCore", "AMQPProtocol", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("UI")],
            swiftSettings: strict
        ),
        // The operator CLI: a client of the management API with rabbitmqctl's verbs and output.
        .executableTarget(
            name: "warrenctl",
            dependencies: ["ManagementClient", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // The management API over HTTP, for the command-line tools.
        .target(name: "ManagementClient", swiftSettings: strict),
        // The failure tests' checker: a history of what clients did and saw in, lost /
        // unexpected / duplicated / recovered and availability out. Pure (docs/failure-testing.md).
        .target(name: "WarrenChecker", swiftSettings: strict),
        // The cluster test driver: starts, breaks and heals local clusters, runs fault scenarios
        // with a workload and checks them (docs/cluster-driver.md, docs/failure-testing.md).
        .executableTarget(
            name: "warren-cluster",
            dependencies: [
                "ManagementClient", "WarrenChecker", "AMQPClient", "AMQPProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Configuration and the composition root.
        .target(
            name: "WarrenNode",
            dependencies: [
                "WarrenTLS",
                "AMQPServer", "WarrenCore", "WarrenStore", "WarrenLog", "WarrenManagement", "WarrenCluster", "WarrenFederation",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "warren",
            dependencies: [
                "WarrenNode", "WarrenCore", "WarrenStore", "WarrenLog", "WarrenCluster", "ManagementClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Load generator in the spirit of RabbitMQ's PerfTest; works against any 0-9-1 broker.
        .executableTarget(
            name: "warren-perf",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                "AMQPClient", "AMQPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Counts allocations; linked only into warren-microbench.
        .target(name: "CMallocCounter"),
        // The broker core without sockets: CPU time and allocations per message on the hot path.
        .executableTarget(
            name: "warren-microbench",
            dependencies: [
                "WarrenCore", "WarrenCoreInProcess", "AMQPProtocol", "CMallocCounter",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AMQPProtocolTests",
            dependencies: [
                "AMQPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "WarrenCheckerTests", dependencies: ["WarrenChecker"], swiftSettings: strict),
        .testTarget(
            name: "WarrenCoreTests",
            dependencies: ["WarrenCore", "AMQPProtocol", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "WarrenStoreTests",
            dependencies: [
                "WarrenStore", "WarrenCore", "AMQPProtocol", "CWarrenCRC", "WarrenLog",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ManagementTests",
            dependencies: ["WarrenManagement", "WarrenCore", "AMQPProtocol", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "WarrenCluster", "WarrenLog", "Raft",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "RaftTests",
            dependencies: ["Raft", "RaftTestKit"],
            resources: [.copy("Scenarios")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "WarrenNode", "AMQPClient", "AMQPProtocol", "WarrenCore", "WarrenStore", "WarrenCluster", "warren",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
    ]
)
