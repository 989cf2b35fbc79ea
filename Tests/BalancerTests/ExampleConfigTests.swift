import Foundation
import XCTest
@testable import Balancer
@testable import BalancerCore
import VRRPCore

/// deploy/examples must stay valid penha configuration, and a working pair.
final class ExampleConfigTests: XCTestCase {
    private func instance(in file: String) throws -> (VRRPInstanceConfiguration, [ConfigLine]) {
        let (instances, lines) = try Self.instances(in: file)
        XCTAssertEqual(instances.count, 1, file)
        return (try XCTUnwrap(instances.first), lines)
    }

    /// The `vrrp` commands of an example file, and all its lines; the lab tests use them too.
    static func instances(in file: String) throws -> ([VRRPInstanceConfiguration], [ConfigLine]) {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let lines = try ConfigFile.read(root.appendingPathComponent("deploy/examples/\(file)").path)
        let instances = lines.compactMap { $0.command.payload(as: VRRPInstanceConfiguration.self) }
        return (instances, lines)
    }

    /// The ECMP lab's node (deploy/lab/lab.sh ecmp-up): it listens on the VIP it announces,
    /// passes strays on to the three nodes, and allows what the lab's loads open.
    func testTheECMPNodeExampleAnnouncesItsListenAddressWithASecondChance() throws {
        let (_, lines) = try Self.instances(in: "ecmp-node.conf")
        let configuration = try Configuration(listen: .inet(host: "127.0.0.1", port: 1), servers: []).applying(lines)
        let bgp = try XCTUnwrap(configuration.bgp)
        guard case .inet(let host, _) = configuration.listen else { return XCTFail("listens on an IP address") }
        XCTAssertEqual(bgp.prefixes.map { "\($0.address)" }, [host], "it announces the address it listens on")
        XCTAssertEqual(bgp.secondChance?.peers.count, 3, "every node of the lab, itself included (each skips its own)")
        XCTAssertGreaterThanOrEqual(configuration.connectionsMax, 1000, "the lab's 1,000 connections fit")
        XCTAssertFalse(configuration.servers.isEmpty)
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

    /// Two virtual routers, the same on both hosts but for the priorities: each host is the
    /// preferred master of one VIP, and either one without servers hands its VIP to the other.
    func testTheActiveActiveExamplesMakeEachHostTheMasterOfOneVIP() throws {
        let (a, linesA) = try Self.instances(in: "active-active-a.conf")
        let (b, linesB) = try Self.instances(in: "active-active-b.conf")
        XCTAssertEqual(a.count, 2)
        XCTAssertEqual(a.map(\.vrid), b.map(\.vrid))
        XCTAssertEqual(Set(a.map(\.vrid)).count, 2, "two virtual routers")
        XCTAssertEqual(Set(a.flatMap(\.virtualAddresses)).count, 2, "one VIP each")
        var preferred: [String] = []
        for (onA, onB) in zip(a, b) {
            XCTAssertEqual(onA.virtualAddresses, onB.virtualAddresses)
            XCTAssertEqual(onA.advertisementInterval, onB.advertisementInterval)
            XCTAssertEqual(onA.version, onB.version)
            XCTAssertNotEqual(onA.priority, onB.priority)
            let (master, backup) = onA.priority > onB.priority ? (onA, onB) : (onB, onA)
            preferred.append(onA.priority > onB.priority ? "a" : "b")
            XCTAssertLessThan(master.effectivePriority(availableServers: 0), backup.priority, "vrid \(master.vrid) without servers hands over")
        }
        XCTAssertEqual(preferred.sorted(), ["a", "b"], "each host is the preferred master of one VIP")
        XCTAssertEqual(linesA.hostsToResolve, linesB.hostsToResolve, "both balance across the same servers")
    }

    /// Two services on one VIP (penha@web, penha@tls): one instance runs VRRP for the address it
    /// listens on; the other has no vrrp line and listens on that VIP with freebind, on another port.
    func testTheTwoServiceExamplesShareOneVIP() throws {
        let (web, webLines) = try instance(in: "web.conf")
        let (none, tlsLines) = try Self.instances(in: "tls.conf")
        XCTAssertEqual(none, [], "one instance moves the VIP")
        let listen = { (lines: [ConfigLine]) -> Endpoint? in
            lines.compactMap { line -> Endpoint? in
                if let listen = line.command.payload(as: ListenAddress.self) { return listen.address }
                return nil
            }.last
        }
        guard case .inet(let webHost, let webPort) = listen(webLines), case .inet(let tlsHost, let tlsPort) = listen(tlsLines) else {
            return XCTFail("both files carry their listen address")
        }
        XCTAssertTrue(web.virtualAddresses.map { "\($0)" }.contains { $0.hasPrefix(webHost + "/") }, "web listens on its VIP")
        XCTAssertEqual(tlsHost, webHost, "tls listens on the same VIP")
        XCTAssertTrue(tlsLines.contains { $0.command == .flag(.freeBind, true) }, "bound before this host holds the VIP")
        XCTAssertNotEqual(webPort, tlsPort)
    }
}
