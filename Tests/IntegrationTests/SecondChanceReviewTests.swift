import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Hostile review of the VRRP second chance in the namespace lab (root only; see NetworkLab).
final class SecondChanceReviewTests: XCTestCase {
    /// `second_chance` naming this node's own hardware address (one line written for both
    /// nodes of a pair) is said to be wrong, and no redirect goes in: a redirect to itself sent
    /// the strays where nobody has their connections (out of the port to its own address),
    /// and the old master's clients hung instead of being reset.
    func testASecondChanceToThisNodeItselfIsRefusedWithAClearError() throws {
        let lab = try NetworkLab()
        let own = try NetworkLab.command(["ip", "netns", "exec", lab.namespace("a"), "cat", "/sys/class/net/eth0/address"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let a = try Penha(["-O", "drain 20", "-O", "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 100ms priority 200 "
                           + "second_chance \(own)"], listen: "192.0.2.10:80", servers: ["127.0.0.1:9000"],
                          namespace: lab.namespace("a"))
        defer { a.stop() }
        XCTAssertTrue(waitFor(timeout: 5) { a.stderr.contains("-> MASTER") }, a.stderr)
        XCTAssertTrue(waitFor(timeout: 2) { a.stderr.contains("is this node's own hardware address") }, a.stderr)
        XCTAssertFalse(a.stderr.contains("passing strays for 192.0.2.10 on to \(own)"), a.stderr)
        let filters = try NetworkLab.command(["tc", "-n", lab.namespace("a"), "filter", "show", "dev", "eth0", "ingress"])
        XCTAssertFalse(filters.contains("penha_redirect"), filters)
    }
}
