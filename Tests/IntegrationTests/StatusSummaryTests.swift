@testable import BalancerCore
import XCTest

@testable import penha

/// `penha status`'s text for people.
final class StatusSummaryTests: XCTestCase {
    func testAVRRPInstanceShowsItsLastChangeByThePenhasClock() {
        let instance = StatusReport.VRRPInstance(
            vrid: 51, state: "MASTER", interface: "eth0", version: 3, priority: 200, effectivePriority: 200,
            advertMilliseconds: 100, master: "192.0.2.1", lastChange: 1_000, lastChangeSecondsAgo: 3723,
            lastChangeReason: "master down timer expired", sent: 14, received: 0, malformed: 0, dropped: [:],
            virtualAddresses: [.init(address: "192.0.2.10/24", onInterface: true)])
        var report = StatusReport(role: "MASTER", listen: "192.0.2.10:80", uptimeSeconds: 90061, connections: 1,
                                  totalConnections: 2, refusedClients: 0, tlsHandshakes: nil, servers: [], vrrp: [instance])
        XCTAssertEqual(report.summary.split(separator: "\n", omittingEmptySubsequences: false).map(String.init), [
            "penha MASTER, listening on 192.0.2.10:80, up 1d 01h01m01s",
            "connections: 1 now, 2 total",
            "",
            "  # server                 state              conn    total      sent  received",
            "",
            "VRRP vrid 51 on eth0: MASTER, priority 200, v3, advert 100 ms, master 192.0.2.1",
            "  vip 192.0.2.10/24: on eth0",
            "  last change 01h02m03s ago: master down timer expired",
            "  adverts: 14 sent, 0 received",
        ])
        report.vrrp[0].lastChangeSecondsAgo = nil
        XCTAssertFalse(report.summary.contains("last change"), "before the first transition")
    }
}
