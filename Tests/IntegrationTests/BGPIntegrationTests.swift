import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `bgp` against a real BGP daemon (BIRD 2, Debian's bird2): penha on node a of the lab puts
/// its VIP in kernel table 201, a BIRD beside it imports that table and announces it to a
/// BIRD on the client namespace `c`, which stands for the router and installs what it learns
/// in its kernel. The router's kernel is what the test reads: a route there is an announcement
/// that went all the way. Root only, like every NetworkLab test.
final class BGPIntegrationTests: XCTestCase {
    static let vip = "203.0.113.10"
    /// A BGP session with 1 s connect retry comes up in a few seconds; bounded generously.
    static let sessionUp = 20.0
    /// A route change travels netlink -> BIRD (async netlink, no scan wait) -> BGP UPDATE ->
    /// the router's kernel in well under a second; the health checks' 1 s interval and the
    /// announcer's 1 s tick come on top.
    static let routeChange = 5.0

    /// The node's BIRD: learns penha's routes from table 201 (`learn`: they are not BIRD's
    /// own), exports only those, over a session with short timers.
    static let nodeBird = """
        router id 192.0.2.1;
        protocol device { }
        protocol kernel penha {
            kernel table 201;
            learn;
            ipv4 { import all; export none; };
        }
        protocol bgp uplink {
            local 192.0.2.1 as 65001;
            neighbor 192.0.2.100 as 65000;
            hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 2;
            ipv4 { import none; export where proto = "penha"; };
        }
        """

    /// The router's BIRD: takes what node a announces and installs it in its kernel.
    static let routerBird = """
        router id 192.0.2.100;
        protocol device { }
        protocol kernel { ipv4 { import none; export all; }; }
        protocol bgp node_a {
            local 192.0.2.100 as 65000;
            neighbor 192.0.2.1 as 65001;
            hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 2;
            ipv4 { import all; export none; };
        }
        """

    /// Whether the router's kernel has the VIP's route from BGP.
    private func routerHasRoute(_ lab: NetworkLab) throws -> Bool {
        try NetworkLab.command(["ip", "-n", lab.namespace("c"), "route", "show", "\(Self.vip)/32"]).contains("proto bird")
    }

    /// Waits (bounded) until the router has (or has not) the route; the seconds it took, nil if it never did.
    private func waitForRoute(_ lab: NetworkLab, _ present: Bool, timeout: Double) throws -> Double? {
        let start = Date()
        repeat {
            if try routerHasRoute(lab) == present { return Date().timeIntervalSince(start) }
            usleep(20_000)
        } while Date().timeIntervalSince(start) < timeout
        return nil
    }

    private func bgpStatus(_ penha: Penha) -> [String: Any] {
        guard let result = try? runPenha(["status", "-C", penha.control, "--json"]), result.status == 0,
              let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        else { return [:] }
        return object["bgp"] as? [String: Any] ?? [:]
    }

    private func diagnostics(_ lab: NetworkLab, _ penha: Penha, _ birds: [Bird]) -> String {
        let table = (try? NetworkLab.command(["ip", "-n", lab.namespace("a"), "route", "show", "table", "201"])) ?? "?"
        return "\n--- node a table 201:\n\(table)--- penha bgp status: \(bgpStatus(penha))\n--- penha stderr:\n\(penha.stderr)"
            + birds.map { "\n--- bird \($0.namespace):\n\($0.log)" }.joined()
    }

    /// The router learns the VIP while penha serves, and loses it on `bgp withdraw` (until
    /// `bgp announce`), when fewer servers than `track_servers` are up, and when penha stops:
    /// before it drains its connections, not after.
    func testTheRouterLearnsTheVIPOnlyWhilePenhaServes() throws {
        let lab = try NetworkLab()
        let node = lab.namespace("a")
        // The VIP is the node's own (on lo), as anycast nodes hold it: the announcement is what moves.
        try NetworkLab.command(["ip", "-n", node, "addr", "add", "\(Self.vip)/32", "dev", "lo"])
        let holder = try NamespaceProcess(namespace: node, ["python3", "-c", NetworkLab.holdingBackend])
        defer { holder.stop() }
        let routerBird = try Bird(namespace: lab.namespace("c"), configuration: Self.routerBird)
        defer { routerBird.stop() }
        let nodeBird = try Bird(namespace: node, configuration: Self.nodeBird)
        defer { nodeBird.stop() }
        let penha = try Penha(["-O", "bgp table 201 vip \(Self.vip) track_servers 2",
                               "-O", "healthcheck tcp interval 200ms timeout 100ms rise 1 fall 1", "-O", "drain 30"],
                              listen: "\(Self.vip):80", servers: ["127.0.0.1:8080", "127.0.0.1:8081"], namespace: node)
        defer { penha.stop() }
        let birds = [nodeBird, routerBird]

        XCTAssertNotNil(try waitForRoute(lab, true, timeout: Self.sessionUp), "the router learns the VIP" + diagnostics(lab, penha, birds))
        XCTAssertNotNil(try lab.ask(Self.vip), "a client reaches penha through the router" + diagnostics(lab, penha, birds))
        XCTAssertEqual(bgpStatus(penha)["announced"] as? Bool, true)
        XCTAssertEqual(bgpStatus(penha)["reason"] as? String, "serving")

        // By hand: the route is gone from the node's table when the answer comes.
        let withdrawn = try runPenha(["ctl", penha.control, "bgp", "withdraw"])
        XCTAssertEqual(withdrawn.status, 0, withdrawn.stderr)
        XCTAssertEqual(try NetworkLab.command(["ip", "-n", node, "route", "show", "table", "201"]), "", "deleted before the answer")
        let byHand = try waitForRoute(lab, false, timeout: Self.routeChange)
        XCTAssertNotNil(byHand, "bgp withdraw" + diagnostics(lab, penha, birds))
        XCTAssertNil(try lab.ask(Self.vip), "no route to the VIP from the router")
        XCTAssertEqual(bgpStatus(penha)["reason"] as? String, "operator")
        XCTAssertEqual(try runPenha(["ctl", penha.control, "bgp", "announce"]).status, 0)
        XCTAssertNotNil(try waitForRoute(lab, true, timeout: Self.routeChange), "bgp announce" + diagnostics(lab, penha, birds))

        // Servers down: server 1's checks fail (nothing listens on 8089), 1 up < track_servers 2.
        XCTAssertEqual(try penha.command("server 1 port 8089"), [])
        let serversDown = try waitForRoute(lab, false, timeout: Self.routeChange)
        XCTAssertNotNil(serversDown, "servers down" + diagnostics(lab, penha, birds))
        XCTAssertEqual(bgpStatus(penha)["reason"] as? String, "servers_down")
        XCTAssertEqual(try penha.command("server 1 port 8081"), [])
        XCTAssertNotNil(try waitForRoute(lab, true, timeout: Self.routeChange), "servers back" + diagnostics(lab, penha, birds))

        // A connection from the node itself (through lo, which the route does not concern)
        // keeps penha draining; the route must go while it does.
        let client = try NamespaceProcess(namespace: node, ["python3", "-c", """
            import socket, time
            for _ in range(20):
                connection = socket.create_connection(("\(Self.vip)", 80), 2)
                if connection.recv(64).startswith(b"held"):
                    print("held", flush=True)
                    time.sleep(60)
                connection.close()
            """])
        defer { client.stop() }
        XCTAssertTrue(waitFor(timeout: 10) { client.output.contains("held") }, "a held connection: \(client.output)")
        let stopped = Date()
        kill(penha.process.processIdentifier, SIGTERM)
        let onStop = try waitForRoute(lab, false, timeout: Self.routeChange)
        XCTAssertNotNil(onStop, "SIGTERM" + diagnostics(lab, penha, birds))
        XCTAssertTrue(penha.process.isRunning, "the route went while penha drained, not after it exited" + diagnostics(lab, penha, birds))
        // A client the routers still send here just after the withdraw is served, not refused.
        let late = try NetworkLab.command(["ip", "netns", "exec", lab.namespace("a"), "python3", "-c",
                                           "import socket; s = socket.create_connection(('\(Self.vip)', 80), 1); print('accepted')"])
        XCTAssertTrue(late.contains("accepted"), "the listener stays for the withdraw's grace: \(late)")
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("draining 1 connections") }, penha.stderr)
        let withdrawLine = try XCTUnwrap(penha.stderr.range(of: "bgp withdrawn (stopping"), penha.stderr)
        let drainLine = try XCTUnwrap(penha.stderr.range(of: "draining 1 connections"), penha.stderr)
        XCTAssertLessThan(withdrawLine.lowerBound, drainLine.lowerBound, "withdrawn before the drain")
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertEqual(penha.waitForExit(timeout: 10), 0, penha.stderr)
        print(String(format: "bgp: the router lost the route %.2f s after 'bgp withdraw' answered, %.2f s after server 1's "
                     + "port changed (checks every 200 ms), %.2f s after SIGTERM (%.2f s since)",
                     byHand ?? -1, serversDown ?? -1, onStop ?? -1, Date().timeIntervalSince(stopped)))
    }

    /// `penha upgrade` of a node that announces (issue 20): its route in table 201 and its
    /// ECMP second chance's filter stay through the handover, never deleted (watched with `ip
    /// monitor` and `tc monitor`), and are the new process's: its `bgp withdraw` deletes the route.
    func testAnUpgradeKeepsTheRouteAndTheFilterForTheNewProcess() throws {
        let lab = try NetworkLab()
        let node = lab.namespace("a")
        try NetworkLab.command(["ip", "-n", node, "addr", "add", "\(Self.vip)/32", "dev", "lo"])
        try lab.pinNeighbour(on: "a", "192.0.2.2", to: "b")
        let options = ["-O", "bgp table 201 vip \(Self.vip) interface eth0 second_chance 192.0.2.2", "-O", "drain 5"]
        let old = try Penha(options, listen: "\(Self.vip):80", servers: ["127.0.0.1:8081"], namespace: node)
        let route = { try NetworkLab.command(["ip", "-n", node, "route", "show", "table", "201"]) }
        let filters = { try NetworkLab.command(["tc", "-n", node, "filter", "show", "dev", "eth0", "ingress"]) }
        let announced = waitFor(timeout: 5) {
            (try? route())?.contains("\(Self.vip) dev lo proto 200") == true && (try? filters())?.contains("penha_ecmp") == true
        }
        XCTAssertTrue(announced, old.stderr)
        let routeWatch = try BackgroundCommand(["stdbuf", "-oL", "ip", "-n", node, "monitor", "route"], seconds: 10)
        let filterWatch = try BackgroundCommand(["stdbuf", "-oL", "tc", "-n", node, "monitor"], seconds: 10)
        usleep(300_000)
        let new = try Penha(options + ["-C", old.control, "--takeover", old.control], listen: "\(Self.vip):80",
                            servers: ["127.0.0.1:8081"], namespace: node)
        defer { new.stop() }
        XCTAssertEqual(old.waitForExit(timeout: 5), 0, old.stderr)
        // The new process's first steps (one a second) and the old one's exit are past.
        usleep(2_500_000)
        routeWatch.interrupt()
        filterWatch.interrupt()
        let (routeEvents, filterEvents) = (try routeWatch.finish(), try filterWatch.finish())
        XCTAssertFalse(routeEvents.contains("Deleted"), "the route was never deleted: \(routeEvents)")
        XCTAssertFalse(filterEvents.contains("deleted"), "the filter was never removed: \(filterEvents)")
        XCTAssertTrue(try route().contains("\(Self.vip) dev lo proto 200"), new.stderr)
        XCTAssertTrue(try filters().contains("penha_ecmp"), new.stderr)
        let withdrawn = try runPenha(["ctl", new.control, "bgp", "withdraw"])
        XCTAssertEqual(withdrawn.status, 0, withdrawn.stderr)
        XCTAssertEqual(try route(), "", "the new process's withdraw deletes the route it adopted")
    }

    /// The operator's `bgp withdraw` holds through `penha upgrade`: the route is not added
    /// back, not even for a moment, until `bgp announce` on the new process.
    func testAnUpgradeKeepsTheOperatorsWithdraw() throws {
        let lab = try NetworkLab()
        let node = lab.namespace("a")
        try NetworkLab.command(["ip", "-n", node, "addr", "add", "\(Self.vip)/32", "dev", "lo"])
        let options = ["-O", "bgp table 201 vip \(Self.vip)"]
        let old = try Penha(options, listen: "\(Self.vip):80", servers: ["127.0.0.1:8081"], namespace: node)
        let route = { try NetworkLab.command(["ip", "-n", node, "route", "show", "table", "201"]) }
        XCTAssertTrue(waitFor(timeout: 5) { (try? route())?.contains("\(Self.vip) dev lo proto 200") == true }, old.stderr)
        XCTAssertEqual(try runPenha(["ctl", old.control, "bgp", "withdraw"]).status, 0)
        XCTAssertEqual(try route(), "")
        let routeWatch = try BackgroundCommand(["stdbuf", "-oL", "ip", "-n", node, "monitor", "route"], seconds: 10)
        usleep(300_000)
        let new = try Penha(options + ["-C", old.control, "--takeover", old.control], listen: "\(Self.vip):80",
                            servers: ["127.0.0.1:8081"], namespace: node)
        defer { new.stop() }
        XCTAssertEqual(old.waitForExit(timeout: 5), 0, old.stderr)
        usleep(2_500_000)
        routeWatch.interrupt()
        let events = try routeWatch.finish()
        XCTAssertFalse(events.contains(Self.vip), "the route was never added back: \(events)")
        XCTAssertEqual(try route(), "", new.stderr)
        XCTAssertTrue(try new.command("status").contains { $0.contains("reason operator") }, "the hold is the new process's")
        XCTAssertEqual(try runPenha(["ctl", new.control, "bgp", "announce"]).status, 0)
        XCTAssertTrue(waitFor(timeout: 5) { (try? route())?.contains("\(Self.vip) dev lo proto 200") == true }, new.stderr)
    }
}

/// A program run inside a namespace for the length of a test; its output kept. Sendable:
/// the output grows on the pipe's reading thread, behind a lock.
final class NamespaceProcess: Sendable {
    let process = Process()
    private let pipe = Pipe()
    private let collected = Mutex("")

    init(namespace: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", namespace] + arguments
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            self?.collected.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
    }

    var output: String { collected.withLock { $0 } }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
    }

    deinit { stop() }
}

/// BIRD 2 in a namespace, in the foreground, with a configuration, control socket and log of
/// its own in a fresh directory (the package's service and /etc/bird play no part).
final class Bird {
    let namespace: String
    private let directory: String
    private let program: NamespaceProcess

    init(namespace: String, configuration: String) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/bird") else {
            throw TestFailure("BIRD is not installed (apt-get install bird2)")
        }
        self.namespace = namespace
        directory = temporaryPath("bird")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/bird.conf"
        try ("log stderr all;\n" + configuration + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        program = try NamespaceProcess(namespace: namespace, ["/usr/sbin/bird", "-f", "-c", path, "-s", "\(directory)/bird.ctl",
                                                              "-P", "\(directory)/bird.pid"])
    }

    var log: String { program.output }

    func stop() {
        program.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }
}
