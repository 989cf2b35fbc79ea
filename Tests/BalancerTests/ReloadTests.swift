import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

/// SIGHUP with -F: the running configuration becomes the command line's with the file
/// applied, whatever the previous file or the control socket had set.
final class ReloadTests: XCTestCase {
    private let commandLine = Configuration(listen: .inet(host: "127.0.0.1", port: 80),
                                            servers: [ServerSpec(host: "127.0.0.1", port: 9000)])

    private let facts = Runtime.Facts(now: at(10), started: at(0), vrrp: [], listen: "127.0.0.1:80", control: nil,
                                      pid: 1, exitEnabled: false, configFile: "penha.conf")

    private func target(_ file: String) throws -> Configuration {
        try commandLine.applying(ConfigFile.parse(file, name: "penha.conf"))
    }

    private func resolved(_ hosts: String...) throws -> [String: SocketAddress] {
        Dictionary(uniqueKeysWithValues: try hosts.map { ($0, try SocketAddress(ipAddress: $0, port: 0)) })
    }

    private func started(with file: String) throws -> Runtime {
        let configuration = try target(file)
        return Runtime(configuration: configuration, state: try configuration.makeState())
    }

    func testSettingsTheFileNoLongerSaysReturnToTheCommandLine() throws {
        var runtime = try started(with: "roundrobin\nweight\nblacklist 5\nclients_max 10\n")
        let changes = try runtime.converge(to: try target("blacklist 7\n"), facts: facts, resolved: [:])
        XCTAssertEqual(runtime.configuration, try target("blacklist 7\n"))
        XCTAssertFalse(runtime.state.configuration.selection.roundRobin || runtime.state.configuration.selection.weight)
        XCTAssertEqual(runtime.state.blacklistTime, .seconds(7))
        XCTAssertEqual(runtime.state.clients.capacity, 2048)
        XCTAssertEqual(Set(changes), ["blacklist 7", "clients_max 2048", "no roundrobin", "no weight"])
    }

    /// Where round-robin is, is the selection's running state, not configuration: a reload
    /// that keeps the flags goes on from there.
    func testAReloadGoesOnWhereRoundRobinWas() throws {
        let file = "roundrobin\nserver 1 address 127.0.0.1 port 9001\nserver 2 address 127.0.0.1 port 9002\n"
        var runtime = try started(with: file)
        var placement = runtime.state.accept(client: client(1), now: at(1))
        XCTAssertEqual(runtime.state.nextTarget(&placement, now: at(1)), .server(0))
        XCTAssertEqual(try runtime.converge(to: try target(file), facts: facts, resolved: [:]), [])
        placement = runtime.state.accept(client: client(2), now: at(2))
        XCTAssertEqual(runtime.state.nextTarget(&placement, now: at(2)), .server(1))
    }

    func testServersAbsentFromTheFileAreRemovedAndTheOthersKeepTheirCounters() throws {
        var runtime = try started(with: "server 1 address 127.0.0.2 port 9001\nserver 2 address 127.0.0.3 port 9002\n")
        runtime.state.servers.servers[1].totalConnections = 5
        let connected = runtime.state.accept(client: client(1), now: at(1))
        var placement = connected
        let target = try XCTUnwrap(runtime.state.nextTarget(&placement, now: at(1)))
        let number = runtime.state.connected(placement, to: target, client: "c", now: at(1))
        let changes = try runtime.converge(to: try self.target("server 1 address 127.0.0.2 port 9001\n"), facts: facts,
                                           resolved: try resolved("127.0.0.1", "127.0.0.2"))
        XCTAssertEqual(runtime.state.servers.servers.map(\.address.port), [9000, 9001])
        XCTAssertEqual(runtime.state.servers.servers[1].totalConnections, 5, "a kept server keeps its counters")
        XCTAssertEqual(changes, ["server 2 removed: no new clients, its connections finish"])
        // A connection in flight finishes whatever server it was on.
        runtime.state.finished(placement, connection: number, target: target)
        XCTAssertEqual(runtime.state.activeConnections, 0)
    }

    /// A reload that changes a kept server's settings changes its configuration, their one
    /// home; of what running adds, only what follows from them moves: the address takes a new
    /// port, and the checks start again for a new address. Counters and standing stay.
    func testAReloadThatChangesAServersSettingsKeepsItsCounters() throws {
        var runtime = try started(with: "server 1 address 127.0.0.2 port 9001\n")
        for index in 0...1 {
            runtime.state.servers.servers[index].totalConnections = UInt64(5 + index)
            runtime.state.servers.servers[index].sent = UInt64(7 + index)
            _ = runtime.state.servers.servers[index].health.record(.failed("refused"), rise: 1, fall: 1, now: at(5))
        }
        _ = try runtime.converge(to: try target("server 0 max 9 weight 2\nserver 1 address 127.0.0.2 port 9005 prio 4\n"),
                                 facts: facts, resolved: [:])
        XCTAssertEqual(runtime.state.servers.servers.map(\.totalConnections), [5, 6])
        XCTAssertEqual(runtime.state.servers.servers.map(\.address),
                       [try SocketAddress(ipAddress: "127.0.0.1", port: 9000), try SocketAddress(ipAddress: "127.0.0.2", port: 9005)])
        XCTAssertEqual(runtime.state.servers.servers.map(\.health.isDown), [true, false], "checks start again for a new address only")
        XCTAssertEqual(try runtime.answer(.servers, facts: facts), [
            "0 addr 127.0.0.1 port 9000 conn 0 max 9 hard 0 weight 2 prio 0 sx 7 rx 0",
            "1 addr 127.0.0.2 port 9005 conn 0 max 0 hard 0 weight 1 prio 4 sx 8 rx 0",
        ])
    }

    /// A server a reload removed and a later reload added again at its number is another
    /// server: the old one's connections, ending, leave its count (and bytes) alone. They took
    /// from it before (found in review: `status` showed 0 while it had a client).
    func testTheEndsOfARemovedServersConnectionsLeaveTheServerAddedAtItsNumberAlone() throws {
        let withServer1 = "server 1 address 127.0.0.2 port 9001\n"
        var runtime = try started(with: withServer1)
        let resolved = try resolved("127.0.0.1", "127.0.0.2", "127.0.0.3")
        func placeOnServer1() throws -> (BalancerState.Placement, Int)? {
            for last in UInt8(1)...UInt8(64) {
                var placement = runtime.state.accept(client: client(last), now: at(1))
                let target = try XCTUnwrap(runtime.state.nextTarget(&placement, now: at(1)))
                let number = runtime.state.connected(placement, to: target, client: "c", now: at(1))
                if target == .server(1) { return (placement, number) }
                runtime.state.finished(placement, connection: number, target: target)
            }
            return nil
        }
        let (old, oldNumber) = try XCTUnwrap(placeOnServer1(), "a client goes to server 1")
        _ = try runtime.converge(to: try target(""), facts: facts, resolved: resolved)
        _ = try runtime.converge(to: try target("server 1 address 127.0.0.3 port 9002\n"), facts: facts, resolved: resolved)
        XCTAssertNotNil(try placeOnServer1(), "a client goes to the new server 1")
        XCTAssertEqual(runtime.state.servers.servers[1].connections, 1)
        runtime.state.finished(old, connection: oldNumber, target: .server(1))
        XCTAssertEqual(runtime.state.servers.servers[1].connections, 1, "the new server 1 still has its client")
    }

    func testAServerTheControlSocketMovedGoesBackToTheFilesAddress() throws {
        var runtime = try started(with: "")
        _ = try runtime.execute([ConfigLine(try Command.parse("server 0 address 127.0.0.9 port 9100"))], facts: facts,
                                resolved: try resolved("127.0.0.9"))
        _ = try runtime.converge(to: try target(""), facts: facts, resolved: try resolved("127.0.0.1"))
        XCTAssertEqual(runtime.state.servers.servers[0].address, try SocketAddress(ipAddress: "127.0.0.1", port: 9000))
    }

    func testAFailedReloadChangesNothing() throws {
        var runtime = try started(with: "blacklist 5\n")
        let before = runtime.configuration
        XCTAssertThrowsError(try runtime.converge(to: try target("server 0 address www\nblacklist 9\n"), facts: facts, resolved: [:]))
        XCTAssertEqual(runtime.configuration, before)
        XCTAssertEqual(runtime.state.blacklistTime, .seconds(5))
    }

    func testAnUnchangedFileChangesNothing() throws {
        var runtime = try started(with: "roundrobin\nserver 1 address 127.0.0.2 port 9001\n")
        XCTAssertEqual(try runtime.converge(to: try target("roundrobin\nserver 1 address 127.0.0.2 port 9001\n"), facts: facts,
                                            resolved: [:]), [])
    }
}
