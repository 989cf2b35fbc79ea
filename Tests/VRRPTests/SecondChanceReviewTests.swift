import Foundation
import XCTest
@testable import VRRP
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// Hostile review of the second chance's programs: the largest a configuration can ask for
/// goes through this kernel's verifier (`penha check` loads only the smallest).
final class SecondChanceReviewTests: XCTestCase {
    func testTheLargestProgramsPassTheVerifier() throws {
        if geteuid() != 0, ProcessInfo.processInfo.environment["PENHA_REQUIRE_NETNS"] == "1" {
            return XCTFail("PENHA_REQUIRE_NETNS=1 but not running as root")
        }
        guard geteuid() == 0 else { throw XCTSkip("loading eBPF programs needs root; CI runs it with PENHA_REQUIRE_NETNS=1") }
        let own = try XCTUnwrap(HardwareAddress(bytes: [2, 0, 0, 0, 0, 1]))
        let prefixes = (0..<64).map { VirtualAddress(address: IPAddress(ipv4: 0xCB00_7100 + UInt32($0)), prefixLength: $0 % 2 == 0 ? 32 : 24) }
        let peers = (0..<16).compactMap { HardwareAddress(bytes: [2, 0, 0, 0, 1, UInt8($0)]) }
        let vips = (0..<255).map { IPAddress(ipv4: 0xC633_6400 + UInt32($0)) }
        let peer = try XCTUnwrap(peers.first)
        for program in [SecondChanceProgram.spread(prefixes: prefixes, peers: peers, own: own, interfaceIndex: 1),
                        .redirect(virtualAddresses: vips, peer: peer, own: own, interfaceIndex: 1),
                        .redirect(virtualAddresses: vips, peer: peer, own: own, interfaceIndex: 1, silencingARP: true),
                        .arpSilence(virtualAddresses: vips)] {
            XCTAssertNoThrow(close(try TCIngressFilter.load(program)), program.name)
        }
    }
}
