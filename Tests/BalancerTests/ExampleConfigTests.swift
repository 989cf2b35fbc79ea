import Foundation
import XCTest
@testable import Balancer
@testable import BalancerCore
import VRRPCore

/// deploy/examples must stay valid penha configuration, and a working pair.
final class ExampleConfigTests: XCTestCase {
    private func instance(in file: String) throws -> (VRRPInstanceConfiguration, [ConfigLine]) {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let lines = try ConfigFile.read(root.appendingPathComponent("deploy/examples/\(file)").path)
        let instances = lines.compactMap { line -> VRRPInstanceConfiguration? in
            if case .vrrp(let instance) = line.command { return instance }
            return nil
        }
        XCTAssertEqual(instances.count, 1, file)
        return (try XCTUnwrap(instances.first), lines)
    }

    func testTheTwoHostExamplesParseAndMakeAPair() throws {
        let (a, linesA) = try instance(in: "node-a.conf")
        let (b, linesB) = try instance(in: "node-b.conf")
        XCTAssertEqual(a.vrid, b.vrid)
        XCTAssertEqual(a.virtualAddresses, b.virtualAddresses)
        XCTAssertEqual(a.advertisementInterval, b.advertisementInterval)
        XCTAssertEqual(a.version, b.version)
        XCTAssertGreaterThan(a.priority, b.priority, "host A is the preferred master")
        XCTAssertLessThan(a.effectivePriority(availableServers: 0), b.priority, "A without servers hands the VIP to B")
        XCTAssertEqual(linesA.hostsToResolve, linesB.hostsToResolve, "both balance across the same servers")
        XCTAssertFalse(linesA.hostsToResolve.isEmpty)
    }
}
