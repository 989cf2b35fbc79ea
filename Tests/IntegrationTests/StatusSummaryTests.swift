@testable import BalancerCore
import Foundation
import XCTest

@testable import penha

/// `penha status`'s text for people. penha no longer links Foundation (its ICU data was most of
/// the binary): the numbers must still read as Foundation's `String(format:)` wrote them.
final class StatusSummaryTests: XCTestCase {
    func testByteCountsHaveFoundationsDecimals() {
        var random = SystemRandomNumberGenerator()
        // What `bytes` passes: a count over 1024, 1024², ... 1024⁵ (P, up to 16384.0).
        let values = [0, 1, 1.04, 1.05, 1.25, 1.75, 9.95, 9.96, 1023.94, 1023.96, 16384, Double(UInt64.max) / Double(1 << 50)]
            + (0..<5000).map { _ in
                let unit = Int.random(in: 1...5, using: &random)
                let count = UInt64.random(in: 0...(unit == 5 ? UInt64.max : 1 << (10 * unit + 10)), using: &random)
                return Double(count) / Double(1 << (10 * unit))
            }
        for value in values {
            XCTAssertEqual(StatusReport.oneDecimal(value), String(format: "%.1f", value), "\(value)")
        }
    }

    func testDurationsHaveFoundationsDigits() {
        var random = SystemRandomNumberGenerator()
        for seconds in [0, 9, 10, 59, 60, 3599, 3600, 86399, 86400, 90061, 10 * 86400 + 1]
            + (0..<2000).map({ _ in Int.random(in: 0...400 * 86400, using: &random) }) {
            let clock = String(format: "%02dh%02dm%02ds", seconds / 3600 % 24, seconds / 60 % 60, seconds % 60)
            XCTAssertEqual(StatusReport.duration(seconds), seconds >= 86400 ? "\(seconds / 86400)d \(clock)" : clock)
        }
    }

    func testAVRRPInstanceShowsItsLastChangeByThePenhasClock() {
        let instance = StatusReport.VRRPInstance(
            vrid: 51, state: .master, interface: "eth0", version: 3, priority: 200, effectivePriority: 200,
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

    /// `--json` without Foundation: the bytes Foundation's JSONEncoder wrote (sorted keys, `/`
    /// as is, absent optionals left out), for a report with every part and awkward text.
    func testJSONIsWhatFoundationsEncoderWrote() throws {
        let server = StatusReport.Server(
            index: 0, address: "2001:db8::1", port: 80, state: .blacklisted, blacklistSecondsLeft: 3, connections: 1,
            totalConnections: UInt64.max, maxConnections: 0, sent: 5, received: 6, check: .down,
            checkResult: "HTTP 503 \"down\" \\ /health\n\t\u{01}\u{7F} é", checkSuccesses: 0, checkFailures: 2,
            checkChangedSecondsAgo: nil)
        let instance = StatusReport.VRRPInstance(
            vrid: 51, state: .backup, interface: "eth0", version: 3, priority: 100, effectivePriority: 90,
            advertMilliseconds: 1000, master: nil, lastChange: 0, lastChangeSecondsAgo: nil, lastChangeReason: "",
            sent: 0, received: 1, malformed: 2, dropped: [.ttl: 3, .authentication: 4], virtualAddresses: [.init(address: "192.0.2.10/24", onInterface: false)])
        var report = StatusReport(role: "BACKUP", listen: "/run/penha/a.sock", uptimeSeconds: 1, connections: -1,
                                  totalConnections: 0, refusedClients: 7, tlsHandshakes: .init(completed: 1, failed: 2),
                                  servers: [server, server], vrrp: [instance])
        report.sync = .init(listen: "[::]:7000", sending: true, rejected: 1, peers: [
            .init(address: "192.0.2.2", connected: false, sent: 1, received: 2, fullCopies: 3, lastFullCopySecondsAgo: 4, dropped: 5),
        ])
        report.draining = .init(connections: 2, secondsLeft: 9)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for sample in [report, StatusReport(role: "STANDALONE", listen: "", uptimeSeconds: 0, connections: 0, totalConnections: 0,
                                            refusedClients: 0, tlsHandshakes: nil, servers: [], vrrp: [])] {
            XCTAssertEqual(try JSONText.encode(sample), String(decoding: try encoder.encode(sample), as: UTF8.self))
        }
    }
}
