import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

/// Commands applied to a running balancer's configuration and state, with no sockets.
final class RuntimeTests: XCTestCase {
    private func makeRuntime() throws -> Runtime {
        let configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80),
                                          servers: [ServerSpec(host: "127.0.0.1", port: 9000), ServerSpec(host: "127.0.0.1", port: 9001)])
        return Runtime(configuration: configuration, state: try configuration.makeState())
    }

    private func facts(now: NIODeadline = at(10), exitEnabled: Bool = false, configFile: String? = nil) -> Runtime.Facts {
        Runtime.Facts(now: now, started: at(0), vrrp: [], listen: "127.0.0.1:80", control: .unix(path: "/run/penha/penha.sock"),
                      pid: 42, exitEnabled: exitEnabled, configFile: configFile)
    }

    @discardableResult
    private func run(_ runtime: inout Runtime, _ lines: String..., facts: Runtime.Facts? = nil,
                     resolved: [String: SocketAddress] = [:]) throws -> Runtime.Outcome {
        try runtime.execute(try lines.map { ConfigLine(try Command.parse($0)) }, facts: facts ?? self.facts(), resolved: resolved)
    }

    func testSettingsAnswerTheirValueAndReachTheState() throws {
        var runtime = try makeRuntime()
        XCTAssertEqual(try run(&runtime, "blacklist").lines, ["30"])
        XCTAssertEqual(try run(&runtime, "blacklist 5", "tracking 60", "clients_max 4", "roundrobin", "prio").lines, ["5", "60", "4"])
        XCTAssertEqual(runtime.state.blacklistTime, .seconds(5))
        XCTAssertEqual(runtime.state.configuration.trackingTime, .seconds(60))
        XCTAssertEqual(runtime.state.clients.capacity, 4)
        XCTAssertTrue(runtime.state.configuration.selection.roundRobin && runtime.state.configuration.selection.priority)
        XCTAssertEqual(try run(&runtime, "mode").lines, ["no hash roundrobin no stubborn no weight prio"])
        XCTAssertEqual(try run(&runtime, "conn_max 7", "timeout 4", "idle_timeout 9", "debug 1", "tcp_nodelay").lines, ["7", "4", "9", "1"])
        XCTAssertEqual([runtime.configuration.connectionsMax, runtime.configuration.connectTimeoutSeconds,
                        runtime.configuration.idleTimeoutSeconds, runtime.configuration.debugLevel], [7, 4, 9, 1])
        XCTAssertTrue(runtime.configuration.tcpNoDelay)
    }

    /// What is read only when the listener is bound, or cannot work with -U, is refused at
    /// run time with the reason, not answered as if it had applied.
    func testChangesThatCannotApplyWhileRunningAreRefusedAndChangeNothing() throws {
        var runtime = try makeRuntime()
        XCTAssertThrowsError(try run(&runtime, "freebind")) { XCTAssertTrue("\($0)".contains("freebind is set when the listener is bound"), "\($0)") }
        XCTAssertThrowsError(try run(&runtime, "listen 127.0.0.1:81")) { XCTAssertTrue("\($0)".contains("the listen address is set at start"), "\($0)") }
        runtime.configuration.listenOnCommandLine = true
        XCTAssertThrowsError(try run(&runtime, "listen 127.0.0.1:81"), "given on the command line too")
        XCTAssertNoThrow(try run(&runtime, "listen 127.0.0.1:80"), "restating it is fine")
        runtime.configuration.udp = true
        XCTAssertThrowsError(try run(&runtime, "blacklist 7", "accept_proxy")) { XCTAssertTrue("\($0)".contains("with -U"), "\($0)") }
        XCTAssertThrowsError(try run(&runtime, "server 1 proxy_protocol v1")) { XCTAssertTrue("\($0)".contains("server 1 proxy_protocol"), "\($0)") }
        XCTAssertFalse(runtime.configuration.freeBind || runtime.configuration.acceptProxy)
        XCTAssertEqual(runtime.configuration.blacklistSeconds, 30, "the batch changed nothing")
        XCTAssertEqual(runtime.configuration.servers[1].proxyProtocol, .off)
    }

    func testServersInPensFormatAndChangesKeepCounters() throws {
        var runtime = try makeRuntime()
        runtime.state.servers.servers[0].sent = 11
        try run(&runtime, "server 0 port 9100 max 3 hard 4 weight 2 prio 1")
        XCTAssertEqual(try run(&runtime, "servers").lines, [
            "0 addr 127.0.0.1 port 9100 conn 0 max 3 hard 4 weight 2 prio 1 sx 11 rx 0",
            "1 addr 127.0.0.1 port 9001 conn 0 max 0 hard 0 weight 1 prio 0 sx 0 rx 0",
        ])
        XCTAssertEqual(runtime.state.servers.servers[0].address, try SocketAddress(ipAddress: "127.0.0.1", port: 9100))
        XCTAssertEqual(runtime.configuration.servers[0], ServerSpec(host: "127.0.0.1", port: 9100, maxConnections: 3,
                                                                      hardLimit: 4, weight: 2, priority: 1))
    }

    /// A server's settings have one home, the configuration: `server 1 weight 3` is what the
    /// placement and `servers` read, and so is a later change of the configuration made any
    /// other way; there is no running copy to carry it over or to fall out of step (issue 22).
    func testAServersSettingsHaveOneHomeThatPlacementAndServersRead() throws {
        var runtime = try makeRuntime()
        try run(&runtime, "weight", "server 1 weight 3")
        var clients = (1...8).map { client(UInt8($0)) }.makeIterator()
        func place(_ count: Int) -> [Target?] {
            (0..<count).map { _ in
                var placement = runtime.state.accept(client: clients.next() ?? .local, now: at(1))
                return runtime.state.nextTarget(&placement, now: at(1))
            }
        }
        XCTAssertEqual(place(4), [.server(0), .server(1), .server(1), .server(1)], "3:1 by weight")
        XCTAssertEqual(try run(&runtime, "servers").lines[1], "1 addr 127.0.0.1 port 9001 conn 3 max 0 hard 0 weight 3 prio 0 sx 0 rx 0")
        runtime.configuration.servers[1].weight = 0
        XCTAssertEqual(place(2), [.server(0), .server(0)], "weight 0: never chosen by weight")
        XCTAssertEqual(try run(&runtime, "servers").lines[1], "1 addr 127.0.0.1 port 9001 conn 3 max 0 hard 0 weight 0 prio 0 sx 0 rx 0")
    }

    func testAnAddressChangeUsesTheResolvedAddressAndANewServerIsAdded() throws {
        var runtime = try makeRuntime()
        let resolved = ["www": try SocketAddress(ipAddress: "10.0.0.7", port: 0)]
        try run(&runtime, "server 1 address www", "server 2 address www port 8080", resolved: resolved)
        XCTAssertEqual(runtime.state.servers.servers.map(\.address),
                       [try SocketAddress(ipAddress: "127.0.0.1", port: 9000), try SocketAddress(ipAddress: "10.0.0.7", port: 9001),
                        try SocketAddress(ipAddress: "10.0.0.7", port: 8080)])
        XCTAssertEqual(runtime.configuration.servers.map(\.host), ["127.0.0.1", "www", "www"])
        XCTAssertEqual(try run(&runtime, "server 3 address www", resolved: resolved).lines, [])
        XCTAssertEqual(runtime.state.servers.servers[3].address.port, 80, "a new server's port defaults to the listen port")
    }

    func testAFailingLineLeavesEverythingAsItWas() throws {
        var runtime = try makeRuntime()
        let before = runtime.configuration
        let lines = [ConfigLine(.setting(.blacklist, 1), origin: "f:1"),
                     ConfigLine(.server(ServerChange(index: 0, address: "unresolvable")), origin: "f:2")]
        XCTAssertThrowsError(try runtime.execute(lines, facts: facts(), resolved: [:])) { error in
            XCTAssertEqual("\(error)", "f:2: cannot resolve server host 'unresolvable'")
        }
        XCTAssertEqual(runtime.configuration, before)
        XCTAssertEqual(runtime.state.blacklistTime, .seconds(30))
        for (line, reason) in [("server 5 address a", "next new server is 2"), ("server 2 port 80", "needs an address"),
                               ("timeout 0", "at least 1"), ("clients_max 0", "at least 1"), ("source nowhere", "not an IP"),
                               ("connection 0", "no connection 0"), ("close 3", "no connection 3"),
                               ("write", "-F"), ("exit", "not enabled")] {
            XCTAssertThrowsError(try run(&runtime, line), line) { error in
                XCTAssertTrue("\(error)".contains(reason), "'\(line)' gave '\(error)'")
            }
        }
    }

    func testBlacklistFromTheControlSocketAndTakingItBack() throws {
        var runtime = try makeRuntime()
        try run(&runtime, "server 1 blacklist 20", facts: facts(now: at(10)))
        XCTAssertTrue(runtime.state.servers.servers[1].isBlacklisted(now: at(29)))
        XCTAssertFalse(runtime.state.servers.servers[1].isBlacklisted(now: at(30)))
        let status = try run(&runtime, "status", facts: facts(now: at(15))).lines
        XCTAssertEqual(status, [
            "role STANDALONE", "listen 127.0.0.1:80", "uptime 15", "connections 0 total 0 refused 0",
            "server 0 address 127.0.0.1 port 9000 state up blacklist_left 0 connections 0 total 0 max 0 sent 0 received 0"
                + " check disabled check_successes 0 check_failures 0 check_changed -",
            "server 1 address 127.0.0.1 port 9001 state blacklisted blacklist_left 15 connections 0 total 0 max 0 sent 0 received 0"
                + " check disabled check_successes 0 check_failures 0 check_changed -",
        ])
        try run(&runtime, "server 1 blacklist 0", facts: facts(now: at(16)))
        XCTAssertFalse(runtime.state.servers.servers[1].isBlacklisted(now: at(16)))
    }

    func testQuestionsAboutTheProcessConnectionsAndClients() throws {
        var runtime = try makeRuntime()
        XCTAssertEqual(try run(&runtime, "pid", "listen", "control", "log", "web_stats").lines,
                       ["42", "127.0.0.1:80", "/run/penha/penha.sock"])
        var placement = runtime.state.accept(client: client(5), now: at(2))
        let target = try XCTUnwrap(runtime.state.nextTarget(&placement, now: at(2)))
        let number = runtime.state.connected(placement, to: target, client: "127.0.0.5:4000", now: at(2))
        XCTAssertEqual(try run(&runtime, "connection \(number)").lines, ["connection \(number) client 127.0.0.5:4000 server 0 age 8"])
        XCTAssertEqual(try run(&runtime, "close \(number)").effects, [.closeConnection(number)])
        XCTAssertEqual(try run(&runtime, "recent").lines, ["127.0.0.5 connects 1 sx 0 rx 0"])
        XCTAssertEqual(try run(&runtime, "recent 5").lines, [], "seen 8 seconds ago")
        XCTAssertEqual(try run(&runtime, "log /tmp/l").effects, [.reopenLog])
        XCTAssertEqual(try run(&runtime, "log").lines, ["/tmp/l"])
        XCTAssertEqual(try run(&runtime, "exit", facts: facts(exitEnabled: true)).effects, [.exit])
    }

    func testReloadIsAnActionForTheControlSocketNotALineOfTheFile() throws {
        var runtime = try makeRuntime()
        XCTAssertEqual(try run(&runtime, "reload").effects, [.reload])
        XCTAssertThrowsError(try ConfigFile.parse("reload\n", name: "f").map { try runtime.configuration.apply($0.command) }) {
            XCTAssertEqual("\($0)", "'reload' is a question or an action for the control socket, not a setting")
        }
    }

    func testWriteProducesAFileThatRecreatesTheConfiguration() throws {
        var runtime = try makeRuntime()
        try run(&runtime, "hash", "blacklist 9", "server 1 weight 4 prio 2", "source 127.0.0.2", "log /tmp/l", "idle_timeout 3",
                "acl 1 permit 192.0.2.0 255.255.255.0", "acl 1 deny 2001:db8::/32", "acl 4 deny 198.51.100.7",
                "client_acl 1", "control_acl 4", "server 0 acl 4")
        let outcome = try run(&runtime, "write", facts: facts(configFile: "/etc/penha.conf"))
        guard case .write(let path, let contents) = try XCTUnwrap(outcome.effects.first) else { return XCTFail("\(outcome)") }
        XCTAssertEqual(path, "/etc/penha.conf")
        var recreated = Configuration(listen: runtime.configuration.listen, servers: [])
        for line in try ConfigFile.parse(contents, name: "written") { try recreated.apply(line.command) }
        XCTAssertEqual(recreated, runtime.configuration)
    }

    /// The placement reads `tracking` and `client_acl` where it decides: a line changes the
    /// next client's placement, with nothing copied over.
    func testTrackingAndClientACLGivenAtRunTimeDecideTheNextPlacement() throws {
        var runtime = try makeRuntime()
        func place(_ key: ClientKey, at seconds: Double) -> Target? {
            var placement = runtime.state.accept(client: key, now: at(seconds))
            let target = runtime.state.nextTarget(&placement, now: at(seconds))
            if let target { runtime.state.connected(placement, to: target, client: "test", now: at(seconds)) }
            return target
        }
        XCTAssertEqual(place(client(1), at: 0), .server(0))
        XCTAssertEqual(place(client(2), at: 0), .server(1))
        XCTAssertEqual(place(client(1), at: 100), .server(0), "tracked forever without tracking")
        try run(&runtime, "tracking 10")
        XCTAssertEqual(place(client(3), at: 105), .server(0))
        XCTAssertEqual(place(client(1), at: 111), .server(1), "forgotten after 10 s: round robin goes on")
        try run(&runtime, "acl 4 deny 127.0.0.1", "client_acl 4")
        var refused = runtime.state.accept(client: client(1), now: at(112))
        XCTAssertTrue(refused.isRefused)
        XCTAssertNil(runtime.state.nextTarget(&refused, now: at(112)), "no abuse server: closed")
    }

    func testClientTableResizeKeepsTheMostRecentClients() {
        var table = ClientTable(capacity: 3)
        for last in 1...3 { table.setServer(Int(last), slot: table.connect(client(UInt8(last)), now: at(Double(last)), tracking: nil), key: client(UInt8(last))) }
        let smaller = table.resized(to: 2)
        XCTAssertEqual(smaller.capacity, 2)
        XCTAssertEqual(smaller.byRecentUse.map(\.entry.key), [client(3), client(2)])
        XCTAssertEqual(smaller.trackedServer(of: client(3), now: at(4), tracking: nil), 3)
        XCTAssertEqual(client(5).description, "127.0.0.5")
        XCTAssertEqual(ClientKey(high: 0x2001_0DB8_0000_0000, low: 1).description, "2001:db8::1")
    }

    func testAccessListsReachTheStateAndRefuseBadListNumbers() throws {
        var runtime = try makeRuntime()
        XCTAssertEqual(try run(&runtime, "client_acl", "control_acl").lines, ["0", "0"], "pen checks list 0 by default")
        try run(&runtime, "acl 3 deny 127.0.0.1", "client_acl 3", "server 1 acl 3")
        XCTAssertTrue(runtime.state.accept(client: client(1), now: at(1)).isRefused)
        XCTAssertEqual(runtime.state.configuration.servers.map(\.acl), [0, 3])
        try run(&runtime, "no acl 3")
        XCTAssertFalse(runtime.state.accept(client: client(1), now: at(1)).isRefused, "an emptied list permits")
        for line in ["client_acl 10", "control_acl 12"] {
            XCTAssertThrowsError(try run(&runtime, line), line) { error in
                XCTAssertTrue("\(error)".contains("must name an access list, 0-9"), "\(error)")
            }
        }
        XCTAssertEqual(runtime.configuration.clientACL, 3, "a refused line changes nothing")
    }
}
