import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore
import VRRPCore

/// `vrrp` and `no vrrp` at runtime, on the control socket and in a reload: the configuration
/// changes and the executor makes the instances follow it (BalancerService.adoptVRRP).
final class RuntimeVRRPTests: XCTestCase {
    private static let first = "vrrp interface eth0 vrid 51 priority 200 vip 192.0.2.10/24 advert 100ms"
    private static let second = "vrrp interface eth0 vrid 52 priority 100 vip 192.0.2.11/24 advert 100ms"

    private let facts = Runtime.Facts(now: at(10), started: at(0), vrrp: [], listen: "192.0.2.10:80", control: nil,
                                      pid: 1, exitEnabled: false, configFile: "penha.conf")

    private func started(with lines: String...) throws -> Runtime {
        let configuration = try Configuration(listen: .inet(host: "192.0.2.10", port: 80),
                                              servers: [ServerSpec(host: "127.0.0.1", port: 8080)])
            .applying(lines.map { ConfigLine(try Command.parse($0)) })
        return Runtime(configuration: configuration, state: try configuration.makeState())
    }

    private func run(_ runtime: inout Runtime, _ lines: String...) throws {
        _ = try runtime.execute(lines.map { ConfigLine(try Command.parse($0)) }, facts: facts, resolved: [:])
    }

    private func priorities(_ runtime: Runtime) -> [UInt8: UInt8] {
        Dictionary(uniqueKeysWithValues: runtime.configuration.vrrpInstances.map { ($0.vrid, $0.priority) })
    }

    func testTheSameVridChangesThatInstanceAndANewOneIsAdded() throws {
        var runtime = try started(with: Self.first)
        try run(&runtime, Self.first.replacingOccurrences(of: "priority 200", with: "priority 50"))
        XCTAssertEqual(priorities(runtime), [51: 50])
        try run(&runtime, Self.second)
        XCTAssertEqual(runtime.configuration.vrrpInstances.map(\.vrid), [51, 52])
        XCTAssertTrue(runtime.configurationFile(listen: "192.0.2.10:80").contains("vrid 52 priority 100"), "write keeps it")
    }

    func testNoVrrpRemovesTheInstanceAndAnUnknownOneIsAnError() throws {
        var runtime = try started(with: Self.first, Self.second)
        try run(&runtime, "no vrrp vrid 51")
        XCTAssertEqual(runtime.configuration.vrrpInstances.map(\.vrid), [52])
        XCTAssertThrowsError(try run(&runtime, "no vrrp vrid 51")) { error in
            XCTAssertEqual("\(error)", "no vrrp instance with vrid 51")
        }
        XCTAssertThrowsError(try run(&runtime, "no vrrp vrid 52 interface eth1"))
        try run(&runtime, "no vrrp vrid 52 interface eth0")
        XCTAssertTrue(runtime.configuration.vrrpInstances.isEmpty)
    }

    func testNoVrrpParsesOnlyItsOwnForm() throws {
        XCTAssertEqual(try Command.parse("no vrrp vrid 7"), .removeVRRP(vrid: 7, interface: nil))
        XCTAssertEqual(try Command.parse("no vrrp vrid 7 interface eth1").text, "no vrrp vrid 7 interface eth1")
        for bad in ["no vrrp", "no vrrp vrid 0", "no vrrp vrid 256", "no vrrp vrid x", "no vrrp vrid 7 interface",
                    "no vrrp vrid 7 dev eth1", "no vrrp 7"] {
            XCTAssertThrowsError(try Command.parse(bad), bad) { error in
                XCTAssertTrue("\(error)".hasPrefix("'no vrrp' needs 'vrid N'"), "\(bad): \(error)")
            }
        }
    }

    /// A reload whose vrrp lines changed makes them the running ones; one with the same lines
    /// leaves the instances equal, so the executor has nothing to change (keepalived#754).
    func testAReloadChangesAddsAndRemovesInstances() throws {
        var runtime = try started(with: Self.first)
        let commandLine = try started().configuration
        let unchanged = try commandLine.applying([ConfigLine(try Command.parse(Self.first))])
        XCTAssertEqual(try runtime.converge(to: unchanged, facts: facts, resolved: [:]), [])
        XCTAssertEqual(runtime.configuration.vrrpInstances, unchanged.vrrpInstances)

        let lowered = Self.first.replacingOccurrences(of: "priority 200", with: "priority 50")
        let changed = try commandLine.applying([ConfigLine(try Command.parse(lowered)), ConfigLine(try Command.parse(Self.second))])
        let lines = try runtime.converge(to: changed, facts: facts, resolved: [:])
        XCTAssertEqual(priorities(runtime), [51: 50, 52: 100])
        XCTAssertEqual(lines.filter { $0.hasPrefix("vrrp") }.count, 2, "\(lines)")

        XCTAssertEqual(try runtime.converge(to: commandLine, facts: facts, resolved: [:]), [])
        XCTAssertTrue(runtime.configuration.vrrpInstances.isEmpty)
    }

    func testChangesInPlaceOnlyForTheSameRouterVersionAndAddresses() throws {
        func instance(_ text: String) throws -> VRRPInstanceConfiguration {
            guard let instance = try Command.parse(text).payload(as: VRRPInstanceConfiguration.self) else { throw TestError() }
            return instance
        }
        let running = try instance(Self.first)
        XCTAssertTrue(running.changesInPlace(to: try instance(Self.first + " priority 10 preempt off track_servers 1")))
        XCTAssertFalse(running.changesInPlace(to: try instance(Self.first + " vip 192.0.2.12/24")))
        XCTAssertFalse(running.changesInPlace(to: try instance(Self.first.replacingOccurrences(of: "100ms", with: "1s") + " version 2")))
        XCTAssertFalse(running.changesInPlace(to: try instance(Self.second)))
    }

    private struct TestError: Error {}
}
