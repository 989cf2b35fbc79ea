@testable import BalancerCore
import BalancerMetrics
import XCTest
import VRRPCore

/// The VRRP and TLS series of a scrape, which the integration test (standalone, no TLS)
/// does not reach: rendered from a status model made here.
final class MetricsExpositionTests: XCTestCase {
    private func instance(vrid: Int, state: VRRPState) -> StatusReport.VRRPInstance {
        StatusReport.VRRPInstance(
            vrid: vrid, state: state, interface: "eth0", version: 3, priority: 150, effectivePriority: 140,
            advertMilliseconds: 100, master: nil, lastChange: 0, lastChangeReason: "", sent: 12, received: 3, malformed: 1,
            dropped: [.ttl: 4, .checksum: 0], virtualAddresses: [])
    }

    private func lines(_ vrrp: [StatusReport.VRRPInstance]) -> Set<String> {
        let report = StatusReport(role: "MASTER", listen: "127.0.0.1:80", uptimeSeconds: 5, connections: 0, totalConnections: 0,
                                  refusedClients: 0, tlsHandshakes: .init(completed: 10, failed: 2), servers: [], vrrp: vrrp)
        return Set(String(decoding: MetricsExposition.render(report), as: UTF8.self).split(separator: "\n").map(String.init))
    }

    func testVRRPInstancesShowTheirStateCountersAndDropsByReason() {
        let text = lines([instance(vrid: 51, state: .master), instance(vrid: 52, state: .backup)])
        let expected = [
            #"penha_vrrp_master{vrid="51",interface="eth0"} 1.0"#,
            #"penha_vrrp_master{vrid="52",interface="eth0"} 0.0"#,
            #"penha_vrrp_state{vrid="51",interface="eth0",state="MASTER"} 1.0"#,
            #"penha_vrrp_state{vrid="51",interface="eth0",state="BACKUP"} 0.0"#,
            #"penha_vrrp_state{vrid="52",interface="eth0",state="BACKUP"} 1.0"#,
            #"penha_vrrp_adverts_sent_total{vrid="51",interface="eth0"} 12"#,
            #"penha_vrrp_adverts_received_total{vrid="51",interface="eth0"} 3"#,
            #"penha_vrrp_drops_total{vrid="51",interface="eth0",reason="ttl"} 4"#,
            #"penha_vrrp_drops_total{vrid="51",interface="eth0",reason="malformed"} 1"#,
            "# TYPE penha_vrrp_drops_total counter",
            "# TYPE penha_vrrp_state gauge",
            "penha_tls_handshakes_total 10",
            "penha_tls_handshake_failures_total 2",
        ]
        for line in expected { XCTAssertTrue(text.contains(line), "no '\(line)' in\n\(text.sorted().joined(separator: "\n"))") }
    }

    /// Each state, INIT included, is the one series at 1, under the name `status` gives it;
    /// every other state's series is 0 and no other name appears.
    func testEveryVRRPStateIsExportedByItsStatusName() {
        for state in VRRPState.allCases {
            let series = lines([instance(vrid: 51, state: state)]).filter { $0.hasPrefix("penha_vrrp_state{") }
            XCTAssertEqual(series, Set(VRRPState.allCases.map {
                #"penha_vrrp_state{vrid="51",interface="eth0",state="\#($0.rawValue)"} \#($0 == state ? "1.0" : "0.0")"#
            }), "\(state)")
        }
    }

    /// `bgp`: whether the routes are announced, and a series per reason so that a change shows as 0 -> 1.
    func testTheBGPAnnouncementAndItsReason() {
        var report = StatusReport(role: "STANDALONE", listen: "203.0.113.10:80", uptimeSeconds: 5, connections: 0,
                                  totalConnections: 0, refusedClients: 0, tlsHandshakes: nil, servers: [], vrrp: [])
        report.bgp = StatusReport.BGP(table: 201, announced: false, reason: .serversDown, availableServers: 0, minimumServers: 2,
                                      routes: [], error: "netlink: add route 203.0.113.10/32 table 201: Operation not permitted")
        let text = Set(String(decoding: MetricsExposition.render(report), as: UTF8.self).split(separator: "\n").map(String.init))
        let expected = [
            #"penha_bgp_announced{table="201"} 0.0"#,
            #"penha_bgp_reason{table="201",reason="servers_down"} 1.0"#,
            #"penha_bgp_reason{table="201",reason="serving"} 0.0"#,
            #"penha_bgp_reason{table="201",reason="operator"} 0.0"#,
            #"penha_bgp_routes{table="201"} 0.0"#,
            #"penha_bgp_route_error{table="201"} 1.0"#,
        ]
        for line in expected { XCTAssertTrue(text.contains(line), "no '\(line)' in\n\(text.sorted().joined(separator: "\n"))") }
        XCTAssertFalse(text.contains { $0.hasPrefix("penha_bgp_second_chance_peers{") }, "without second_chance, no series")
        report.bgp?.secondChancePeers = 2
        let withPeers = String(decoding: MetricsExposition.render(report), as: UTF8.self)
        XCTAssertTrue(withPeers.contains(#"penha_bgp_second_chance_peers{table="201"} 2.0"#), withPeers)
    }
}
