import Foundation
import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore
import VRRPCore

/// The status model and its wire format: what `status` writes, `penha status` reads back.
final class StatusReportTests: XCTestCase {
    private func report() -> StatusReport {
        let dropped = Dictionary(uniqueKeysWithValues: VRRPDropReason.allCases.enumerated().map { ($1, UInt64($0)) })
        let instance = StatusReport.VRRPInstance(
            vrid: 7, state: .master, interface: "eth0", version: 3, priority: 150, effectivePriority: 140,
            advertMilliseconds: 100, master: "192.0.2.1", lastChange: 1_796_148_213, lastChangeSecondsAgo: 42,
            lastChangeReason: "master down timer expired (no advert for 0.36 s)", sent: 12, received: 3, malformed: 1,
            dropped: dropped,
            virtualAddresses: [.init(address: "192.0.2.100/24", onInterface: true), .init(address: "2001:db8::100/64", onInterface: false)])
        var other = instance
        other.vrid = 8
        other.master = nil
        other.lastChange = 0
        other.lastChangeSecondsAgo = nil
        other.lastChangeReason = ""
        other.virtualAddresses = []
        return StatusReport(
            role: "MASTER", listen: "[2001:db8::1]:80", uptimeSeconds: 3600, connections: 4, totalConnections: 99,
            refusedClients: 2, tlsHandshakes: .init(completed: 10, failed: 1),
            servers: [.init(index: 0, address: "127.0.0.1", port: 8080, state: .up, blacklistSecondsLeft: 0, connections: 3,
                            totalConnections: 90, maxConnections: 10, sent: 1234, received: 5678, check: .up,
                            checkResult: "HTTP 200", checkSuccesses: 12, checkFailures: 0, checkChangedSecondsAgo: 30),
                      .init(index: 1, address: "2001:db8::2", port: 80, state: .blacklisted, blacklistSecondsLeft: 17,
                            connections: 0, totalConnections: 9, maxConnections: 0, sent: 0, received: 0, check: .disabled,
                            checkResult: nil, checkSuccesses: 0, checkFailures: 0, checkChangedSecondsAgo: nil),
                      .init(index: 2, address: "127.0.0.2", port: 80, state: .down, blacklistSecondsLeft: 0,
                            connections: 1, totalConnections: 2, maxConnections: 0, sent: 3, received: 4, check: .down,
                            checkResult: "timeout after 1s", checkSuccesses: 0, checkFailures: 4, checkChangedSecondsAgo: 2)],
            vrrp: [instance, other],
            sync: .init(listen: "192.0.2.1:7000", sending: true, rejected: 3, peers: [
                .init(address: "192.0.2.2:7000", connected: true, sent: 200, received: 4, fullCopies: 2,
                      lastFullCopySecondsAgo: 12, dropped: 1),
                .init(address: "[2001:db8::2]:7000", connected: false, sent: 0, received: 0, fullCopies: 0,
                      lastFullCopySecondsAgo: nil, dropped: 0),
            ]))
    }

    func testTheLinesReadBackToTheSameReport() throws {
        let original = report()
        XCTAssertEqual(try StatusReport(lines: original.lines), original)
        var plain = original
        plain.tlsHandshakes = nil
        plain.vrrp = []
        plain.sync = nil
        plain.servers[1].state = .full
        plain.servers[0].checkResult = nil
        XCTAssertEqual(try StatusReport(lines: plain.lines), plain)
    }

    func testTheSyncStateIsTwoKindsOfLines() throws {
        let lines = report().lines
        XCTAssertEqual(lines.filter { $0.hasPrefix("sync") }, [
            "sync 192.0.2.1:7000 sending yes rejected 3",
            "sync_peer 192.0.2.2:7000 connected yes sent 200 received 4 full_copies 2 last_full_copy 12 dropped 1",
            "sync_peer [2001:db8::2]:7000 connected no sent 0 received 0 full_copies 0 last_full_copy - dropped 0",
        ])
        XCTAssertThrowsError(try StatusReport(lines: ["role X", "listen a", "uptime 1", "connections 0 total 0 refused 0",
                                                      "sync_peer 192.0.2.2:7000 connected yes"])) {
            XCTAssertTrue("\($0)".contains("before its sync line"), "\($0)")
        }
        let json = try JSONDecoder().decode(StatusReport.self, from: JSONEncoder().encode(report()))
        XCTAssertEqual(json.sync, report().sync)
    }

    func testTheWireFormatIsPenhasStatusLines() {
        let lines = report().lines
        XCTAssertEqual(Array(lines.prefix(5)), [
            "role MASTER", "listen [2001:db8::1]:80", "uptime 3600", "connections 4 total 99 refused 2",
            "server 0 address 127.0.0.1 port 8080 state up blacklist_left 0 connections 3 total 90 max 10 sent 1234 received 5678 "
                + "check up check_successes 12 check_failures 0 check_changed 30",
        ])
        XCTAssertEqual(lines[5], "check_result 0 HTTP 200", "free text on a line of its own")
        XCTAssertTrue(lines.contains { $0.hasPrefix("server 1 ") && $0.hasSuffix(" check disabled check_successes 0 check_failures 0 check_changed -") })
        XCTAssertFalse(lines.contains { $0.hasPrefix("check_result 1 ") })
        XCTAssertTrue(lines.contains { $0.hasPrefix("server 2 address 127.0.0.2 port 80 state down ") })
        XCTAssertTrue(lines.contains("check_result 2 timeout after 1s"))
        XCTAssertTrue(lines.contains("tls handshakes 10 failed 1"))
        XCTAssertTrue(lines.contains("vip 7 address 192.0.2.100/24 on_interface yes"))
        XCTAssertTrue(lines.contains("vrrp_reason 7 master down timer expired (no advert for 0.36 s)"))
        XCTAssertTrue(lines.contains { $0.hasPrefix("vrrp 7 ") && $0.contains(" last_change 1796148213 last_change_ago 42 sent 12 ") })
        XCTAssertTrue(lines.contains { $0.hasPrefix("vrrp 8 state MASTER interface eth0 version 3 priority 150 effective 140 advert_ms 100 master - last_change 0 ") })
    }

    func testWhatRuntimeAnswersIsWhatTheReaderReads() throws {
        let configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80),
                                          servers: [ServerSpec(host: "127.0.0.1", port: 9000), ServerSpec(host: "::1", port: 9001)])
        var runtime = Runtime(configuration: configuration, state: try configuration.makeState())
        runtime.state.servers.servers[1].blacklistedUntil = at(40)
        runtime.configuration.healthCheck = HealthCheckSettings(probe: .tcp, rise: 1, fall: 1)
        var random = SystemRandomNumberGenerator()
        var now = 0.0
        while runtime.state.servers.servers[0].health.lastResult == nil, now < 3 {
            for job in runtime.state.startDueChecks(now: at(now), random: &random) where job.index == 0 {
                _ = runtime.state.recordCheck(job, .failed("connection refused"), now: at(now))
            }
            now += 0.01
        }
        let facts = Runtime.Facts(now: at(10), started: at(0), vrrp: report().vrrp, listen: "127.0.0.1:80", control: nil,
                                  pid: 1, exitEnabled: false, configFile: nil, tlsHandshakes: (5, 6))
        let answer = try runtime.execute([ConfigLine(.query(.status))], facts: facts, resolved: [:]).lines
        let read = try StatusReport(lines: answer)
        XCTAssertEqual(read, runtime.statusReport(facts: facts))
        XCTAssertEqual(read.servers.map(\.state), [.down, .blacklisted])
        XCTAssertEqual(read.servers.map(\.check), [.down, .up])
        XCTAssertEqual(read.servers[0].checkResult, "connection refused")
        XCTAssertEqual(read.servers[1].blacklistSecondsLeft, 30)
        XCTAssertEqual(read.role, "MASTER")
    }

    func testJSONKeepsItsFieldNames() throws {
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(report())) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["role", "listen", "uptimeSeconds", "connections", "totalConnections", "refusedClients",
                                          "tlsHandshakes", "servers", "vrrp", "sync"])
        let sync = try XCTUnwrap(object["sync"] as? [String: Any])
        XCTAssertEqual(Set(sync.keys), ["listen", "sending", "rejected", "peers"])
        let peer = try XCTUnwrap((sync["peers"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(peer.keys), ["address", "connected", "sent", "received", "fullCopies", "lastFullCopySecondsAgo", "dropped"])
        let server = try XCTUnwrap((object["servers"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(server.keys), ["index", "address", "port", "state", "blacklistSecondsLeft", "connections",
                                          "totalConnections", "maxConnections", "sent", "received", "check", "checkResult",
                                          "checkSuccesses", "checkFailures", "checkChangedSecondsAgo"])
        XCTAssertEqual(server["check"] as? String, "up")
        XCTAssertEqual(server["checkResult"] as? String, "HTTP 200")
        XCTAssertEqual(server["state"] as? String, "up")
        let instance = try XCTUnwrap((object["vrrp"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(instance.keys), ["vrid", "state", "interface", "version", "priority", "effectivePriority",
                                            "advertMilliseconds", "master", "lastChange", "lastChangeSecondsAgo", "lastChangeReason",
                                            "sent", "received",
                                            "malformed", "dropped", "virtualAddresses"])
        // The drop counters keep the names scripts read (`dropped.addressFamily`), not the enum's encoding.
        let dropped = try XCTUnwrap(instance["dropped"] as? [String: UInt64])
        XCTAssertEqual(dropped, Dictionary(uniqueKeysWithValues: VRRPDropReason.allCases.enumerated().map { ($1.statusName, UInt64($0)) }))
        XCTAssertEqual(try JSONDecoder().decode(StatusReport.self, from: JSONEncoder().encode(report())), report())
    }

    func testTheLastChangeIsCountedByTheReportingClock() throws {
        var status = VRRPInstanceStatus(state: .master, interface: "eth0", vrid: 7, version: 3, configuredPriority: 150,
                                        effectivePriority: 150, advertisementInterval: 100)
        XCTAssertNil(StatusReport.VRRPInstance(status, now: 1_000).lastChangeSecondsAgo, "no transition yet")
        XCTAssertEqual(StatusReport.VRRPInstance(status, now: 1_000).lastChange, 0)
        status.lastTransitionTime = 958
        XCTAssertEqual(StatusReport.VRRPInstance(status, now: 1_000).lastChangeSecondsAgo, 42)
        XCTAssertEqual(StatusReport.VRRPInstance(status, now: 1_000).lastChange, 958, "the epoch time stays beside it")
        XCTAssertEqual(StatusReport.VRRPInstance(status, now: 900).lastChangeSecondsAgo, 0, "a clock set back since")
    }

    func testAnOlderPenhasVRRPLineWithoutLastChangeAgoStillReads() throws {
        let lines = report().lines.map { $0.replacingOccurrences(of: " last_change_ago 42", with: "") }
        XCTAssertNotEqual(lines, report().lines)
        var expected = report()
        expected.vrrp[0].lastChangeSecondsAgo = nil
        XCTAssertEqual(try StatusReport(lines: lines), expected)
        let unreadable = report().lines.map { $0.replacingOccurrences(of: " last_change_ago 42", with: " last_change_ago x") }
        XCTAssertThrowsError(try StatusReport(lines: unreadable)) { XCTAssertTrue("\($0)".contains("last_change_ago"), "\($0)") }
    }

    func testAKnownLineWithoutItsFieldsIsAnErrorAndUnknownLinesAreSkipped() throws {
        var lines = report().lines
        lines.append("health 0 state up")
        XCTAssertEqual(try StatusReport(lines: lines), report(), "a newer penha's extra line is skipped")
        lines[4] = "server 0 address 127.0.0.1 state up"
        XCTAssertThrowsError(try StatusReport(lines: lines)) { XCTAssertTrue("\($0)".contains("no 'port'"), "\($0)") }
        XCTAssertThrowsError(try StatusReport(lines: ["role MASTER"])) { XCTAssertTrue("\($0)".contains("no 'listen' line"), "\($0)") }
        XCTAssertThrowsError(try StatusReport(lines: report().lines.map { $0.replacingOccurrences(of: "uptime 3600", with: "uptime x") }))
    }
}
