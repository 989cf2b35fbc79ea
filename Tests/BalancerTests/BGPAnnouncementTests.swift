import NIOCore
import XCTest
@testable import BalancerCore
import VRRPCore

/// `bgp`: its command, the decision to announce or withdraw, and the route steps, with no
/// sockets and no clock.
final class BGPAnnouncementTests: XCTestCase {
    private func route(_ text: String, table: Int = 201) throws -> BGPRoute {
        BGPRoute(table: table, prefix: try XCTUnwrap(VirtualAddress(text)))
    }

    func testTheCommandParsesWithItsDefaultsAndWritesBackTheSame() throws {
        let command = try Command.parse("bgp table 201 vip 192.0.2.10 vip 2001:db8::10")
        guard let settings = command.payload(as: BGPChange.self)?.settings else { return XCTFail("\(command)") }
        XCTAssertEqual(settings, BGPSettings(table: 201, prefixes: [try XCTUnwrap(VirtualAddress("192.0.2.10/32")),
                                                                   try XCTUnwrap(VirtualAddress("2001:db8::10/128"))]))
        XCTAssertEqual(settings.minimumServers, 1)
        XCTAssertEqual(command.text, "bgp table 201 vip 192.0.2.10/32 vip 2001:db8::10/128 track_servers 1")
        XCTAssertEqual(try Command.parse(command.text), command)
        XCTAssertEqual(try Command.parse("no bgp"), .bgp(nil))
        XCTAssertEqual(try Command.parse("bgp withdraw"), .bgpOperator(.withdraw))
        XCTAssertEqual(try Command.parse("bgp announce").text, "bgp announce")
        XCTAssertEqual(try Command.parse("bgp table 4294967295 vip 198.51.100.0/24 track_servers 65535").text,
                       "bgp table 4294967295 vip 198.51.100.0/24 track_servers 65535")
    }

    func testBadLinesAreRefusedWithTheReason() {
        let refused = [
            ("bgp", "needs 'table N"), ("bgp table 201", "needs 'table N"), ("bgp vip 192.0.2.1", "needs 'table N"),
            ("bgp table 0 vip 192.0.2.1", "at least 1"), ("bgp table 4294967296 vip 192.0.2.1", "at most 4294967295"),
            ("bgp table 254 vip 192.0.2.1", "main 254"), ("bgp table 255 vip 192.0.2.1", "local 255"),
            ("bgp table 253 vip 192.0.2.1", "default 253"), ("bgp table -1 vip 192.0.2.1", "non-negative"),
            ("bgp table 201 table 202 vip 192.0.2.1", "given twice"), ("bgp table 201 vip 192.0.2.1 vip 192.0.2.1/32", "given twice"),
            ("bgp table 201 vip 192.0.2.1/24", "bits set past its length"), ("bgp table 201 vip 2001:db8::1/64", "bits set"),
            ("bgp table 201 vip example.com", "not ADDRESS"), ("bgp table 201 vip 192.0.2.1/33", "not ADDRESS"),
            ("bgp table 201 vip 192.0.2.1 track_servers 0", "at least 1"),
            ("bgp table 201 vip 192.0.2.1 track_servers 65536", "at most 65535"),
            ("bgp table 201 vip 192.0.2.1 track_servers", "needs a value"), ("bgp table 201 vip 192.0.2.1 weight 3", "unknown word"),
            ("bgp withdraw now", "unknown word"), ("no bgp table 201", "'no' takes one of"),
        ]
        for (line, reason) in refused {
            XCTAssertThrowsError(try Command.parse(line), line) { XCTAssertTrue("\($0)".contains(reason), "\(line): \($0)") }
        }
        let prefixes = (0...BGPSettings.maxPrefixes).map { " vip 192.0.2.\($0)" }
        XCTAssertNoThrow(try Command.parse("bgp table 201" + prefixes.dropLast().joined()))
        XCTAssertThrowsError(try Command.parse("bgp table 201" + prefixes.joined())) {
            XCTAssertTrue("\($0)".contains("at most 64 vips"), "\($0)")
        }
    }

    /// `interface IF second_chance PEER ...`: the peers run to the next keyword, `write`
    /// gives the line back, and what cannot work is refused with the reason.
    func testTheSecondChanceTakesItsPeersUpToTheNextWordAndWritesThemBack() throws {
        let line = "bgp table 201 vip 203.0.113.10 second_chance 192.0.2.1 192.0.2.2 02:00:00:00:00:03 interface eth0 track_servers 2"
        let command = try Command.parse(line)
        guard let settings = command.payload(as: BGPChange.self)?.settings, let secondChance = settings.secondChance else { return XCTFail("\(command)") }
        XCTAssertEqual(secondChance.interface, "eth0")
        XCTAssertEqual(secondChance.peers, [.address(try XCTUnwrap(IPAddress("192.0.2.1"))), .address(try XCTUnwrap(IPAddress("192.0.2.2"))),
                                            .hardware(try XCTUnwrap(HardwareAddress("02:00:00:00:00:03")))])
        XCTAssertEqual(settings.minimumServers, 2)
        XCTAssertEqual(command.text, "bgp table 201 vip 203.0.113.10/32 track_servers 2 interface eth0 second_chance 192.0.2.1 192.0.2.2 02:00:00:00:00:03")
        XCTAssertEqual(try Command.parse(command.text), command)
        XCTAssertNil(try BGPSettings.parse(["table", "201", "vip", "203.0.113.10"]).secondChance, "off unless given")
        let refused = [
            ("bgp table 201 vip 203.0.113.10 second_chance 192.0.2.1", "needs 'interface IF'"),
            ("bgp table 201 vip 203.0.113.10 interface eth0", "only for 'second_chance"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 second_chance", "needs a value"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 second_chance vip 203.0.113.11", "at least one PEER"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 second_chance node-b", "not the peer's hardware address"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 second_chance ff:ff:ff:ff:ff:ff", "group address"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 second_chance 192.0.2.1 192.0.2.1", "given twice"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 second_chance 192.0.2.1 second_chance 192.0.2.2", "given twice"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 interface eth1 second_chance 192.0.2.1", "given twice"),
            ("bgp table 201 vip 2001:db8::10 interface eth0 second_chance 192.0.2.1", "IPv4 vips only"),
            ("bgp table 201 vip 203.0.113.10 interface eth0/1 second_chance 192.0.2.1", "not an interface name"),
            ("bgp table 201 vip 203.0.113.10 interface eth0 second_chance" + (1...17).map { " 192.0.2.\($0)" }.joined(), "at most 16"),
        ]
        for (line, reason) in refused {
            XCTAssertThrowsError(try Command.parse(line), line) { XCTAssertTrue("\($0)".contains(reason), "\(line): \($0)") }
        }
    }

    /// Every combination of what decides: announced exactly when listening, not stopping, not
    /// held by the operator and with enough servers; the reason is the strongest that holds.
    func testTheDecisionOverEveryInput() {
        for stopping in [false, true] {
            for listening in [false, true] {
                for held in [false, true] {
                    for minimum in 1...3 {
                        for available in 0...4 {
                            let decision = BGPDecision.decide(stopping: stopping, listening: listening, withdrawnByOperator: held,
                                                              availableServers: available, minimumServers: minimum)
                            let expected: BGPDecision.Reason = stopping ? .stopping : !listening ? .notListening
                                : held ? .withdrawnByOperator : available < minimum ? .serversDown : .serving
                            let inputs = "stopping \(stopping) listening \(listening) held \(held) \(available)/\(minimum)"
                            XCTAssertEqual(decision.reason, expected, inputs)
                            XCTAssertEqual(decision.announces, !stopping && listening && !held && available >= minimum, inputs)
                        }
                    }
                }
            }
        }
    }

    /// Routes a penha that died may have left are deleted by the first plan unless wanted, and
    /// added again when wanted (they may not be there); nothing else is deleted.
    func testTheFirstPlanClearsWhatADeadPenhaMayHaveLeft() throws {
        let left: Set = [try route("192.0.2.10/32"), try route("192.0.2.11/32")]
        let table = BGPRouteTable(unknown: left)
        XCTAssertTrue(table.installed.isEmpty)
        XCTAssertEqual(table.changes(toward: []), [.remove(try route("192.0.2.10/32")), .remove(try route("192.0.2.11/32"))])
        XCTAssertEqual(table.changes(toward: left), [.add(try route("192.0.2.10/32")), .add(try route("192.0.2.11/32"))])
        var cleared = table
        for change in table.changes(toward: []) { cleared.record(change) }
        XCTAssertEqual(cleared.changes(toward: []), [], "deleted once, not again")
        XCTAssertEqual(BGPRouteTable().changes(toward: []), [])
    }

    /// A change the kernel refused is not recorded, so the next plan makes it again; deletions
    /// come first, and a new table moves every route.
    func testAFailedChangeIsPlannedAgainAndDeletionsComeFirst() throws {
        let first = try route("192.0.2.10/32")
        var table = BGPRouteTable()
        XCTAssertEqual(table.changes(toward: [first]), [.add(first)])
        XCTAssertEqual(table.changes(toward: [first]), [.add(first)], "not recorded: planned again")
        table.record(.add(first))
        XCTAssertEqual(table.installed, [first])
        XCTAssertEqual(table.changes(toward: [first]), [])
        let moved = try route("192.0.2.10/32", table: 202)
        XCTAssertEqual(table.changes(toward: [moved]), [.remove(first), .add(moved)])
        XCTAssertEqual(table.changes(toward: []), [.remove(first)])
    }

    private func makeRuntime() throws -> Runtime {
        let configuration = Configuration(listen: .inet(host: "192.0.2.10", port: 80), servers: [ServerSpec(host: "127.0.0.1", port: 9000)])
        return Runtime(configuration: configuration, state: try configuration.makeState())
    }

    private func run(_ runtime: inout Runtime, _ lines: String...) throws -> Runtime.Outcome {
        let facts = Runtime.Facts(now: at(10), started: at(0), vrrp: [], listen: "192.0.2.10:80", control: nil, pid: 1,
                                  exitEnabled: false, configFile: nil)
        return try runtime.execute(try lines.map { ConfigLine(try Command.parse($0)) }, facts: facts, resolved: [:])
    }

    /// The operator's hold needs a `bgp` line, has the announcer act before the answer, lasts
    /// over a change of the settings and is not what `write` saves; `no bgp` removes the settings.
    func testTheOperatorsHoldAndWrite() throws {
        var runtime = try makeRuntime()
        XCTAssertThrowsError(try run(&runtime, "bgp withdraw")) { XCTAssertTrue("\($0)".contains("needs a 'bgp table N"), "\($0)") }
        XCTAssertFalse(runtime.state.bgpWithdrawnByOperator)
        XCTAssertEqual(try run(&runtime, "bgp table 201 vip 192.0.2.10", "bgp withdraw").effects, [.updateBGP, .updateBGP])
        XCTAssertTrue(runtime.state.bgpWithdrawnByOperator)
        _ = try run(&runtime, "bgp table 202 vip 192.0.2.10")
        XCTAssertTrue(runtime.state.bgpWithdrawnByOperator, "a change of the settings keeps the hold")
        let written = runtime.configurationFile(listen: "192.0.2.10:80")
        XCTAssertTrue(written.contains("\nbgp table 202 vip 192.0.2.10/32 track_servers 1\n"), written)
        XCTAssertFalse(written.contains("withdraw"), written)
        XCTAssertEqual(try run(&runtime, "bgp announce").lines, ["bgp announced again when ready and healthy"])
        XCTAssertFalse(runtime.state.bgpWithdrawnByOperator)
        _ = try run(&runtime, "no bgp")
        XCTAssertNil(runtime.configuration.bgp)
        XCTAssertFalse(runtime.configurationFile(listen: "192.0.2.10:80").contains("bgp"))
    }

    func testTheStatusLinesReadBack() throws {
        let bgp = StatusReport.BGP(table: 201, announced: true, reason: .serving, availableServers: 2, minimumServers: 1,
                                   routes: ["192.0.2.10/32 table 201", "2001:db8::10/128 table 201"],
                                   error: "netlink: add route 192.0.2.11/32 table 201: Operation not permitted")
        var report = try StatusReport(lines: ["role STANDALONE", "listen 192.0.2.10:80", "uptime 1", "connections 0 total 0 refused 0"])
        report.bgp = bgp
        XCTAssertEqual(report.lines.suffix(4), [
            "bgp 201 announced yes reason serving available 2 track_servers 1",
            "bgp_route 192.0.2.10/32 table 201", "bgp_route 2001:db8::10/128 table 201",
            "bgp_error netlink: add route 192.0.2.11/32 table 201: Operation not permitted",
        ])
        XCTAssertEqual(try StatusReport(lines: report.lines), report)
        report.bgp = StatusReport.BGP(table: 7, announced: false, reason: .withdrawnByOperator, availableServers: 0,
                                      minimumServers: 3, routes: [], error: nil)
        XCTAssertEqual(try StatusReport(lines: report.lines), report)
        XCTAssertEqual(report.bgp?.text, "bgp withdrawn (operator; 0 servers available, track_servers 3)")
        XCTAssertThrowsError(try StatusReport(lines: ["bgp_route 192.0.2.10/32 table 201"] + report.lines))
        // With second_chance: the peers its filter passes strays on to.
        report.bgp?.secondChancePeers = 3
        XCTAssertEqual(report.lines.last, "bgp 7 announced no reason operator available 0 track_servers 3 second_chance_peers 3")
        XCTAssertEqual(try StatusReport(lines: report.lines), report)
        XCTAssertEqual(report.bgp?.text, "bgp withdrawn (operator; 0 servers available, track_servers 3; second chance to 3 peers)")
    }
}
