// swift-tools-version:6.0
import PackageDescription

// The folders show the layers and the targets enforce them: the pure cores (BalancerCore,
// VRRPCore) cannot import sockets, NIOPosix or the C shims, because they do not depend on
// them; the I/O around them is thin adapters. `.ci/check-layers` checks the imports too.

let package = Package(
    name: "penha",
    products: [
        .executable(name: "penha", targets: ["penha"]),
        .library(name: "Balancer", targets: ["Balancer", "BalancerCore"]),
        .library(name: "VRRP", targets: ["VRRP", "VRRPCore"]),
        // The pure cores alone: what Fuzz/ builds with sanitizers, without NIOPosix or the C shims.
        .library(name: "BalancerCore", targets: ["BalancerCore"]),
        .library(name: "VRRPCore", targets: ["VRRPCore"]),
        // What the tests and the fuzz targets share (a seeded generator, files in memory).
        .library(name: "TestSupport", targets: ["TestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // libnl-route-3 moves the virtual addresses (rtnetlink).
        .systemLibrary(
            name: "CNetlinkRoute",
            pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
        ),
        // libbpf loads the second chance's eBPF programs and attaches them at tc ingress.
        .systemLibrary(name: "CBPF", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev"])]),
        // OpenSSL: TLS termination (-E, -K, ...).
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // recvmsg ancillary data and packet sockets, which Swift's Glibc module does not reach.
        .target(name: "CVRRPSockets"),
        // epoll and eventfd for the relay engine, which Swift's Glibc module does not reach.
        .target(name: "CEngine"),
        // prctl and capset for -u with vrrp, which Swift's Glibc module does not reach either.
        .target(name: "CCapabilities"),
        // fork, fork and exec for the upgrade's successor: nothing but async-signal-safe calls
        // between fork and exec, which Swift cannot promise.
        .target(name: "CProcess"),
        // VRRP's pure core: the advert codec and checksum, the state machine, the instance's configuration.
        .target(name: "VRRPCore", path: "Sources/VRRP/Core"),
        // VRRP's effects: sockets, the interface, netlink addresses, ARP / NA, the instance thread,
        // the second chance's programs.
        .target(name: "VRRP", dependencies: ["VRRPCore", "CNetlinkRoute", "CVRRPSockets", "CBPF"], path: "Sources/VRRP",
                exclude: ["Core"]),
        // The balancer's pure core: servers, clients, selection and failover, access lists,
        // commands and configuration, the status model, the HTTP rewriter. NIOCore for its
        // value types (SocketAddress, ByteBuffer, NIODeadline) only.
        .target(
            name: "BalancerCore",
            dependencies: ["VRRPCore", .product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/Balancer/Core"
        ),
        // The status model as Prometheus metrics: pure too, apart so that the core needs no
        // third-party package.
        .target(
            name: "BalancerMetrics",
            dependencies: ["BalancerCore", "VRRPCore", .product(name: "Prometheus", package: "swift-prometheus")],
            path: "Sources/Balancer/Metrics"
        ),
        // The engine's pure core: one connection's life as a state machine (events in, actions
        // out), with no sockets and no clock.
        .target(
            name: "EngineCore",
            dependencies: ["BalancerCore", .product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/Balancer/Engine/Core"
        ),
        // The TCP data path: penha's own event loops over epoll, asking BalancerCore where each
        // connection goes and EngineCore what each event means; TLS on memory BIOs. NIOCore for
        // its value types only.
        .target(
            name: "Engine",
            dependencies: ["BalancerCore", "EngineCore", "VRRPCore", "CEngine", "COpenSSL",
                           .product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/Balancer/Engine",
            exclude: ["Core"]
        ),
        // The I/O around it: the control plane (Control), UDP, wiring the engine in.
        .target(
            name: "Balancer",
            dependencies: [
                "BalancerCore",
                "Engine",
                "BalancerMetrics",
                "VRRP",
                "VRRPCore",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Balancer",
            exclude: ["Core", "Metrics", "Engine"]
        ),
        // The command line's table and parser: plain values, tested apart from the program.
        .target(name: "PenhaCommandLine", path: "Sources/penha/CommandLine"),
        .executableTarget(
            name: "penha",
            dependencies: [
                "Balancer",
                "CCapabilities",
                "CProcess",
                "BalancerCore",
                "VRRP",
                "VRRPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                "PenhaCommandLine",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["CommandLine"]
        ),
        // What the test targets and Fuzz/ share, in one place.
        .target(name: "TestSupport", dependencies: ["BalancerCore"], path: "Tests/TestSupport"),
        .testTarget(
            name: "BalancerTests",
            dependencies: ["Balancer", "BalancerCore", "BalancerMetrics", "Engine", "EngineCore", "VRRPCore", "COpenSSL", "TestSupport",
                           .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(name: "VRRPTests", dependencies: ["VRRP", "VRRPCore", "TestSupport"]),
        .testTarget(name: "PenhaCommandLineTests", dependencies: ["PenhaCommandLine", "CProcess"]),
        // Runs the real penha binary; depending on it makes `swift test` build it first.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "penha",
                "PenhaCommandLine",
                "COpenSSL",
                "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
