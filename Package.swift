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
        // VRRP: packet codec and state machine are pure; no dependencies.
        .target(name: "VRRP"),
        .target(
            name: "Balancer",
            dependencies: [
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
        .testTarget(name: "BalancerTests", dependencies: ["Balancer"]),
        .testTarget(name: "VRRPTests", dependencies: ["VRRP"]),
        // Runs the real penha binary; depending on it makes `swift test` build it first.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "penha",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
