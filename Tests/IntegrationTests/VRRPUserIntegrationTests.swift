import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `-u USER` with vrrp: penha drops root but keeps CAP_NET_RAW and CAP_NET_ADMIN, which is
/// all VRRP needs (root only; see NetworkLab).
final class VRRPUserIntegrationTests: XCTestCase {
    func testAsNobodyPenhaStillTakesAndReleasesTheVIP() throws {
        let lab = try NetworkLab()
        let vrrp = "vrrp interface eth0 vrid 51 priority 200 vip 192.0.2.10/24 advert 100ms"
        let penha = try Penha(["-u", "nobody", "-O", vrrp], listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"],
                              namespace: lab.namespace("a"))
        defer { penha.stop() }
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("-> MASTER") }, penha.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { (try? lab.addresses(on: "a").contains("192.0.2.10/24")) == true }, penha.stderr)
        let status = try String(contentsOfFile: "/proc/\(penha.process.processIdentifier)/status", encoding: .utf8)
        let field = { (name: String) in status.split(separator: "\n").first { $0.hasPrefix("\(name):") }.map(String.init) ?? "" }
        XCTAssertTrue(field("Uid").contains("\t65534\t"), field("Uid"))
        // CAP_NET_ADMIN (12) and CAP_NET_RAW (13), nothing else.
        XCTAssertEqual(field("CapEff"), "CapEff:\t0000000000003000")
        XCTAssertEqual(field("CapPrm"), "CapPrm:\t0000000000003000")
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertEqual(penha.waitForExit(timeout: 10), 0, penha.stderr)
        XCTAssertFalse(try lab.addresses(on: "a").contains("192.0.2.10/24"), "the VIP is removed as nobody too")
    }
}
