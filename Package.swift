// swift-tools-version:5.10
import PackageDescription

let package = Package(
    name: "penha",
    products: [
        .executable(name: "penha", targets: ["penha"]),
        .library(name: "Balancer", targets: ["Balancer"]),
        .library(name: "VRRP", targets: ["VRRP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        // libnl-route-3 moves the virtual addresses (rtnetlink).
        .systemLibrary(
            name: "CNetlinkRoute",
            pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
        ),
        // OpenSSL: TLS termination (-E, -K, ...).
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // recvmsg ancillary data and packet sockets, which Swift's Glibc module does not reach.
        .target(name: "CVRRPSockets"),
        // VRRP: the codec and the state machine are pure; sockets and netlink are thin adapters.
        .target(name: "VRRP", dependencies: ["CNetlinkRoute", "CVRRPSockets"]),
        .target(
            name: "Balancer",
            dependencies: [
                "VRRP",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "penha",
            dependencies: [
                "Balancer",
                "VRRP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "BalancerTests",
            dependencies: ["Balancer", "COpenSSL", .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(name: "VRRPTests", dependencies: ["VRRP"]),
        // Runs the real penha binary; depending on it makes `swift test` build it first.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "penha",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
