@testable import BalancerCore
import NIOCore
import XCTest

/// The drain decision: relay on while connections are open and time is left; exit when the
/// last one ends, at the bound, or at a second SIGTERM.
final class DrainTests: XCTestCase {
    private let start = at(0)

    func testItWaitsForTheConnectionsUntilTheBound() {
        let drain = Drain(seconds: 30, now: start)
        XCTAssertEqual(drain.decide(now: at(0), connections: 3), .wait)
        XCTAssertEqual(drain.decide(now: at(29.9), connections: 1), .wait)
        XCTAssertEqual(drain.decide(now: at(12), connections: 0), .exit(closing: 0), "the last one ended")
        XCTAssertEqual(drain.decide(now: at(30), connections: 2), .exit(closing: 2), "the bound: what is left is closed")
    }

    func testASecondSIGTERMOrDrainZeroEndsItAtOnce() {
        var drain = Drain(seconds: 30, now: start)
        drain.interrupt()
        XCTAssertEqual(drain.decide(now: at(1), connections: 4), .exit(closing: 4))
        XCTAssertEqual(Drain(seconds: 0, now: start).decide(now: start, connections: 4), .exit(closing: 4))
    }

    func testDrainGivenWhileItRunsCountsFromItsStart() {
        var drain = Drain(seconds: 30, now: start)
        drain.bound(seconds: 0)
        XCTAssertEqual(drain.decide(now: at(2), connections: 4), .exit(closing: 4), "drain 0 ends it at once")
        drain.bound(seconds: 600)
        XCTAssertEqual(drain.decide(now: at(100), connections: 1), .wait, "a longer bound lets it run on")
        XCTAssertEqual(drain.report(now: at(100), connections: 1).secondsLeft, 500)
        drain.bound(seconds: 60)
        XCTAssertEqual(drain.decide(now: at(100), connections: 1), .exit(closing: 1), "a bound already passed ends it")
    }

    func testTheReportCountsTheConnectionsAndTheSecondsLeftRoundedUp() {
        let drain = Drain(seconds: 30, now: start)
        XCTAssertEqual(drain.report(now: at(0), connections: 5), StatusReport.Draining(connections: 5, secondsLeft: 30))
        XCTAssertEqual(drain.report(now: at(10.2), connections: 2).secondsLeft, 20)
        XCTAssertEqual(drain.report(now: at(31), connections: 1).secondsLeft, 0)
        XCTAssertEqual(drain.report(now: at(0), connections: 5).text, "draining 5 connections, 30 s left")
    }

    func testTheSettingIsBoundedAnsweredAndWritten() throws {
        XCTAssertEqual(try Command.parse("drain 120"), .setting(.drain, 120))
        XCTAssertThrowsError(try Command.parse("drain 3601")) { XCTAssertEqual("\($0)", "drain must be at most 3600, not 3601") }
        let configuration = try Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [ServerSpec(host: "127.0.0.1", port: 9000)])
            .applying([ConfigLine(.parse("drain 5"))])
        XCTAssertEqual(configuration.drainSeconds, 5)
        XCTAssertEqual(Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: []).drainSeconds, Drain.defaultSeconds)
    }

    func testTheStatusCarriesItOnTheWireInJSONAndInTheMetricsNames() throws {
        var report = StatusReport(role: "STANDALONE", listen: "127.0.0.1:80", uptimeSeconds: 5, connections: 2, totalConnections: 9,
                                  refusedClients: 0, tlsHandshakes: nil, servers: [], vrrp: [])
        XCTAssertFalse(report.lines.contains { $0.hasPrefix("draining") })
        report.draining = StatusReport.Draining(connections: 2, secondsLeft: 17)
        XCTAssertTrue(report.lines.contains("draining 2 seconds_left 17"), "\(report.lines)")
        XCTAssertEqual(try StatusReport(lines: report.lines), report)
    }
}
