import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Four penha nodes behind a router that spreads the VIP's flows over them (ECMP), root only:
/// the router namespace `r` routes the client `c` (198.51.100.2, and 198.51.100.10 on, one
/// source address per connection) to 203.0.113.10 by a multipath route over the nodes
/// n1-n4 (192.0.2.1-4 on a bridge in `r`: one link), each of which holds the VIP on `lo` and
/// runs penha in front of an echo server. The route is set by hand: the announcement by BGP
/// is BGPIntegrationTests'. Every namespace and what runs in it is deleted when the test ends.
final class ECMPLab {
    let name: String
    private(set) var namespaces: [String] = []
    static let vip = "203.0.113.10"
    static let firstSource = "198.51.100.10"

    init(sources: Int) throws {
        try NetworkLab.requireRoot()
        name = "e\(getpid() % 100000)\(String(UInt8.random(in: 0...255), radix: 16))"
        do {
            try build(sources: sources)
        } catch {
            tearDown()
            throw error
        }
    }

    deinit { tearDown() }

    func namespace(_ part: String) -> String { "\(name)-\(part)" }

    /// `nN` for node N.
    func node(_ number: Int) -> String { namespace("n\(number)") }

    private func build(sources: Int) throws {
        for part in ["r", "c"] + (1...4).map({ "n\($0)" }) {
            try NetworkLab.command(["ip", "netns", "add", namespace(part)])
            namespaces.append(namespace(part))
            try NetworkLab.command(["ip", "-n", namespace(part), "link", "set", "lo", "up"])
        }
        let (router, client) = (namespace("r"), namespace("c"))
        try NetworkLab.command(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                                "net.ipv4.fib_multipath_hash_policy=1"])
        try link(router, "client0", to: client, address: "198.51.100.2/24")
        try NetworkLab.command(["ip", "-n", router, "addr", "add", "198.51.100.1/24", "dev", "client0"])
        for index in 0..<sources {
            try NetworkLab.command(["ip", "-n", client, "addr", "add", "198.51.100.\(10 + index)/24", "dev", "eth0"])
        }
        try NetworkLab.command(["ip", "-n", client, "route", "add", "default", "via", "198.51.100.1"])
        try NetworkLab.command(["ip", "-n", router, "link", "add", "br0", "type", "bridge"])
        try NetworkLab.command(["ip", "-n", router, "addr", "add", "192.0.2.254/24", "dev", "br0"])
        try NetworkLab.command(["ip", "-n", router, "link", "set", "br0", "up"])
        for number in 1...4 {
            try link(router, "node\(number)", to: node(number), address: "192.0.2.\(number)/24", bridge: "br0")
            try NetworkLab.command(["ip", "-n", node(number), "addr", "add", "\(Self.vip)/32", "dev", "lo"])
            try NetworkLab.command(["ip", "-n", node(number), "route", "add", "default", "via", "192.0.2.254"])
            try NetworkLab.command(["ip", "-n", router, "nexthop", "add", "id", "\(number)", "via", "192.0.2.\(number)", "dev", "br0"])
        }
    }

    /// A veth pair: `outer` in `router` (on `bridge` if given), eth0 with `address` in `inner`.
    private func link(_ router: String, _ outer: String, to inner: String, address: String, bridge: String? = nil) throws {
        // Names are global until moved: short and unique to this lab.
        let temporary = "\(name)\(outer.suffix(1))\(outer.count)"
        try NetworkLab.command(["ip", "link", "add", temporary, "type", "veth", "peer", "name", "\(temporary)x"])
        try NetworkLab.command(["ip", "link", "set", temporary, "netns", inner])
        try NetworkLab.command(["ip", "link", "set", "\(temporary)x", "netns", router])
        try NetworkLab.command(["ip", "-n", inner, "link", "set", temporary, "name", "eth0"])
        try NetworkLab.command(["ip", "-n", router, "link", "set", "\(temporary)x", "name", outer])
        try NetworkLab.command(["ip", "-n", inner, "addr", "add", address, "dev", "eth0"])
        try NetworkLab.command(["ip", "-n", inner, "link", "set", "eth0", "up"])
        if let bridge { try NetworkLab.command(["ip", "-n", router, "link", "set", outer, "master", bridge]) }
        try NetworkLab.command(["ip", "-n", router, "link", "set", outer, "up"])
    }

    /// How the router spreads the flows.
    enum Spread {
        /// A plain multipath route: Linux's hash-threshold, where a change of nexthops moves
        /// the boundaries between them, so flows of nodes that stay move too.
        case hashThreshold
        /// `ip nexthop ... type resilient`: only the buckets that must move do, and only once
        /// they have been idle for `idle` seconds.
        case resilient(idle: Int)
    }

    /// The router sends the VIP's flows to `nodes`.
    func route(over nodes: [Int], _ spread: Spread) throws {
        let router = namespace("r")
        switch spread {
        case .hashThreshold:
            try NetworkLab.command(["ip", "-n", router, "route", "replace", "\(Self.vip)/32"]
                                   + nodes.flatMap { ["nexthop", "via", "192.0.2.\($0)"] })
        case .resilient(let idle):
            try NetworkLab.command(["ip", "-n", router, "nexthop", "replace", "id", "10", "group",
                                    nodes.map(String.init).joined(separator: "/"), "type", "resilient", "buckets", "128",
                                    "idle_timer", "\(idle)"])
            try NetworkLab.command(["ip", "-n", router, "route", "replace", "\(Self.vip)/32", "nhid", "10"])
        }
    }

    /// The connections to the VIP a node holds.
    /// Each node's permanent neighbour entries for the other nodes, as an operator sets them:
    /// the second chance takes a peer's hardware address from nothing else.
    func pinPeers() throws {
        for number in 1...4 {
            let hardware = try NetworkLab.command(["ip", "netns", "exec", node(number), "cat", "/sys/class/net/eth0/address"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            for other in 1...4 where other != number {
                try NetworkLab.command(["ip", "-n", node(other), "neigh", "replace", "192.0.2.\(number)", "lladdr", hardware,
                                        "nud", "permanent", "dev", "eth0"])
            }
        }
    }

    func connections(on number: Int) -> Int {
        let listing = (try? NetworkLab.command(["ip", "netns", "exec", node(number), "ss", "-Htn", "state", "established",
                                                "( sport = :80 )"])) ?? ""
        return listing.split(separator: "\n").count
    }

    func filters(on number: Int) -> String {
        (try? NetworkLab.command(["tc", "-n", node(number), "filter", "show", "dev", "eth0", "ingress"])) ?? "?"
    }

    /// Kills what still runs in the namespaces (the echo servers), then deletes them.
    private func tearDown() {
        for namespace in namespaces {
            let pids = (try? NetworkLab.command(["ip", "netns", "pids", namespace])) ?? ""
            for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            _ = try? NetworkLab.command(["ip", "netns", "del", namespace])
        }
        namespaces = []
    }
}

/// Issue 21 part 4: a node joins (the router's route gains a nexthop) and one leaves (its
/// nexthop goes while it drains) under 30 long-lived, byte-checked connections; with
/// `second_chance` every one survives, without it the router's rehash resets some.
final class ECMPIntegrationTests: XCTestCase {
    static let streams = 30
    static let streamSeconds = 9.0
    /// After the streams start: the join, then the leave.
    static let joinAt = 2.5
    static let leaveAt = 5.0
    static let peers = "interface eth0 second_chance 192.0.2.1 192.0.2.2 192.0.2.3 192.0.2.4"

    private struct Run {
        let outcome: StreamOutcome
        let leaver: Penha
        let nodes: [Penha]
        /// Connections per node before the join.
        let spread: [Int]
        var resetsOnJoin: Int { outcome.resets(splitAt: ECMPIntegrationTests.leaveAt - 0.1).before }
        var resetsOnLeave: Int { outcome.resets(splitAt: ECMPIntegrationTests.leaveAt - 0.1).after }
    }

    /// Nodes 1-3 serve, node 4 is up but not routed to; the streams start; node 4 joins, then
    /// node 3 leaves (its nexthop removed, SIGTERM: it drains).
    private func joinAndLeave(_ lab: ECMPLab, secondChance: Bool, _ spread: ECMPLab.Spread) throws -> Run {
        let echo = try (1...4).map { number in
            try NamespaceProcess(namespace: lab.node(number), ["python3", "-c", SecondChanceIntegrationTests.echoProgram])
        }
        defer { echo.forEach { $0.stop() } }
        for number in 1...4 {
            let ready = waitFor(timeout: 5) {
                (try? NetworkLab.command(["ip", "netns", "exec", lab.node(number), "python3", "-c",
                                          "import socket; socket.create_connection(('127.0.0.1', 9000), 1)"])) != nil
            }
            XCTAssertTrue(ready, "the echo server on node \(number) listens")
        }
        if secondChance { try lab.pinPeers() }
        let bgp = "bgp table 201 vip \(ECMPLab.vip)" + (secondChance ? " \(Self.peers)" : "")
        let nodes = try (1...4).map { number in
            try Penha(["-O", "drain 20", "-O", bgp], listen: "\(ECMPLab.vip):80", servers: ["127.0.0.1:9000"],
                      namespace: lab.node(number))
        }
        if secondChance {
            // Each node knows its three peers' hardware addresses (it reads them once a second).
            let ready = waitFor(timeout: 10) { nodes.allSatisfy { $0.stderr.contains("go on to 3 peers") } }
            XCTAssertTrue(ready, nodes.map(\.stderr).joined(separator: "\n---\n"))
            XCTAssertTrue(try nodes[0].command("status").contains { $0.hasSuffix(" second_chance_peers 3") }, "status shows the peers")
        }
        try lab.route(over: [1, 2, 3], spread)
        let streams = try BackgroundCommand(["ip", "netns", "exec", lab.namespace("c"), "python3", "-c",
                                             SecondChanceIntegrationTests.streamProgram, ECMPLab.vip, "80", "\(Self.streams)",
                                             "\(Self.streamSeconds)", ECMPLab.firstSource], seconds: Self.streamSeconds + 10)
        usleep(UInt32(Self.joinAt * 1_000_000))
        let before = (1...4).map { lab.connections(on: $0) }
        try lab.route(over: [1, 2, 3, 4], spread)
        usleep(UInt32((Self.leaveAt - Self.joinAt) * 1_000_000))
        try lab.route(over: [1, 2, 4], spread)
        kill(nodes[2].process.processIdentifier, SIGTERM)
        let outcome = try StreamOutcome(try streams.finish())
        let run = Run(outcome: outcome, leaver: nodes[2], nodes: nodes, spread: before)
        print("ECMP \(spread), second chance \(secondChance ? "on" : "off"): connections per node \(before); "
              + "\(outcome.alive) of \(Self.streams) alive, \(outcome.bytes) bytes checked, resets on the join "
              + "\(run.resetsOnJoin), on the leave \(run.resetsOnLeave); \(outcome.broken.prefix(2))")
        return run
    }

    private func assertEveryConnectionSurvives(_ run: Run, _ lab: ECMPLab, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(run.spread.prefix(3).filter { $0 > 0 }.count, 3, "the router spreads the flows: \(run.spread)", file: file, line: line)
        XCTAssertEqual(run.spread[3], 0, "node 4 has no flow before it joins", file: file, line: line)
        XCTAssertEqual(run.outcome.alive, Self.streams, "\(run.outcome.broken)", file: file, line: line)
        XCTAssertEqual(run.outcome.resets, 0, file: file, line: line)
        // A line of about 70 bytes every 100 ms or so on each connection, all of them checked.
        XCTAssertGreaterThan(run.outcome.bytes, Self.streams * 60 * 70, file: file, line: line)
        XCTAssertEqual(run.leaver.waitForExit(timeout: 5), 0, "the leaver exits once its drain is over: \(run.leaver.stderr)",
                       file: file, line: line)
        XCTAssertFalse(lab.filters(on: 3).contains("penha"), "no filter left behind", file: file, line: line)
        XCTAssertTrue(lab.filters(on: 1).contains("penha_ecmp"), lab.filters(on: 1), file: file, line: line)
    }

    func testEveryConnectionOfTheNodesStillUpSurvivesAJoinAndALeave() throws {
        let lab = try ECMPLab(sources: Self.streams)
        let run = try joinAndLeave(lab, secondChance: true, .hashThreshold)
        assertEveryConnectionSurvives(run, lab)
    }

    /// The same without `second_chance`: the rehash resets connections of nodes that stay up.
    func testWithoutTheSecondChanceAJoinAndALeaveResetConnections() throws {
        let lab = try ECMPLab(sources: Self.streams)
        let run = try joinAndLeave(lab, secondChance: false, .hashThreshold)
        XCTAssertGreaterThan(run.resetsOnJoin, 0, "\(run.outcome.broken)")
        XCTAssertLessThan(run.outcome.alive, Self.streams)
    }

    /// Over a resilient nexthop group whose buckets move at once (idle_timer 0), as well.
    func testOverAResilientGroupEveryConnectionSurvivesToo() throws {
        let lab = try ECMPLab(sources: Self.streams)
        let run = try joinAndLeave(lab, secondChance: true, .resilient(idle: 0))
        assertEveryConnectionSurvives(run, lab)
    }

    /// Where a resilient group helps, and where it does not: with its default idle_timer (120
    /// s) no busy bucket moves when a node joins, so no flow does (and the new node gets only
    /// new ones); when a node leaves, its flows must move, and without the second chance they
    /// are reset although the leaver still holds them.
    func testAResilientGroupMovesNoBusyFlowOnAJoinButTheLeaversFlowsMove() throws {
        let lab = try ECMPLab(sources: Self.streams)
        let run = try joinAndLeave(lab, secondChance: false, .resilient(idle: 120))
        XCTAssertEqual(run.resetsOnJoin, 0, "\(run.outcome.broken)")
        XCTAssertGreaterThan(run.resetsOnLeave, 0, "\(run.outcome.broken)")
    }
}
