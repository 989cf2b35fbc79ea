// swift-tools-version:5.4
// libFuzzer targets for penha's parsers, outside the product package so that the sanitizer
// flags never reach a product build. `Fuzz/run.sh` builds and runs them.
//
// Tools version 5.4 on purpose: from 5.5 on, SwiftPM links an executable's `main` to the
// module's renamed entry point (for testable executables), which would replace libFuzzer's
// `main`. The targets are parsed as libraries, so they have no entry point of their own.
import PackageDescription

let libFuzzerTarget = [SwiftSetting.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "penha-fuzz",
    dependencies: [
        .package(name: "penha", path: ".."),
        // For ByteBuffer, which the X-Forwarded-For rewriter takes and returns.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "FuzzVRRPDecode", dependencies: [.product(name: "VRRPCore", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzCommand", dependencies: [.product(name: "BalancerCore", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzConfigFile", dependencies: [.product(name: "BalancerCore", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzProxyHeader", dependencies: [.product(name: "BalancerCore", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzIncludes",
            dependencies: [.product(name: "BalancerCore", package: "penha"), .product(name: "TestSupport", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzLogLines", dependencies: [.product(name: "BalancerCore", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzSyncSession", dependencies: [.product(name: "BalancerCore", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzHandover", dependencies: [.product(name: "BalancerCore", package: "penha")],
            swiftSettings: libFuzzerTarget),
        .executableTarget(
            name: "FuzzForwardedFor",
            dependencies: [
                .product(name: "BalancerCore", package: "penha"), .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: libFuzzerTarget),
    ]
)
