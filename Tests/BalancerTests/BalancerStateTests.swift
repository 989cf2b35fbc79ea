import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

final class BalancerStateTests: XCTestCase {
    private func place(_ state: inout BalancerState, _ key: ClientKey, now: NIODeadline) -> (BalancerState.Placement, Target?) {
        var placement = state.accept(client: key, now: now)
        let target = state.nextTarget(&placement, now: now)
        if let target { state.connected(placement, to: target, client: "test", now: now) }
        return (placement, target)
    }

    func testClientGoesBackToItsServer() {
        var state = makeState(3)
        let (_, first) = place(&state, client(1), now: at(0))
        let (_, other) = place(&state, client(2), now: at(0))
        let (_, again) = place(&state, client(1), now: at(1))
        XCTAssertEqual(first, .server(0))
        XCTAssertEqual(other, .server(1))
        XCTAssertEqual(again, .server(0))
    }

    func testFailedConnectBlacklistsAndFailsOverToTheNextServer() {
        var state = makeState(3)
        var placement = state.accept(client: client(1), now: at(0))
        XCTAssertEqual(state.nextTarget(&placement, now: at(0)), .server(0))
        state.connectFailed(.server(0), now: at(0))
        XCTAssertEqual(state.nextTarget(&placement, now: at(0)), .server(1))
        state.connected(placement, to: .server(1), client: "test", now: at(0))
        XCTAssertTrue(state.servers.servers[0].isBlacklisted(now: at(29)))
        XCTAssertFalse(state.servers.servers[0].isBlacklisted(now: at(30)))
        // The client is now tracked to server 1.
        let (_, again) = place(&state, client(1), now: at(1))
        XCTAssertEqual(again, .server(1))
    }

    func testEveryServerFailingEndsAtTheEmergencyServerAndThenNothing() {
        var state = makeState(2)
        var placement = state.accept(client: client(1), now: at(0))
        var tried: [Target] = []
        while let target = state.nextTarget(&placement, now: at(0)) {
            tried.append(target)
            state.connectFailed(target, now: at(0))
        }
        XCTAssertEqual(tried, [.server(0), .server(1), .emergency])
    }

    func testEmergencyServerIsNotRememberedForTheClient() {
        var state = makeState(1)
        state.servers.blacklist(.server(0), until: at(10))
        let (_, first) = place(&state, client(1), now: at(0))
        XCTAssertEqual(first, .emergency)
        XCTAssertNil(state.clients.trackedServer(of: client(1), now: at(0), tracking: nil))
        let (_, later) = place(&state, client(1), now: at(11))
        XCTAssertEqual(later, .server(0))
    }

    /// accept reads the tracked server from the slot connect returns (one lookup): a slot
    /// whose tracking time ran out must give no server, not the one it held.
    func testAClientWhoseTrackingExpiredIsPlacedAfreshNotSentBack() {
        var state = makeState(3)
        state.configuration.trackingSeconds = 10
        XCTAssertEqual(place(&state, client(1), now: at(0)).1, .server(0))
        XCTAssertEqual(place(&state, client(1), now: at(10)).1, .server(0), "tracked up to the tracking time")
        XCTAssertEqual(place(&state, client(1), now: at(21)).1, .server(1), "expired: round robin goes on")
        XCTAssertEqual(place(&state, client(1), now: at(22)).1, .server(1), "and the new choice is tracked")
    }

    func testTrackedTooFullServerFailsOverToTheNextOne() {
        var state = makeState(3) { _, server in server.maxConnections = 1; server.hardLimit = 1 }
        let (_, first) = place(&state, client(1), now: at(0))   // server 0 now at its soft and hard limit
        XCTAssertEqual(first, .server(0))
        let (_, again) = place(&state, client(1), now: at(1))
        XCTAssertEqual(again, .server(1), "over its hard limit, the tracked server is skipped for the next one")
    }

    func testReturningClientMayExceedTheSoftLimitUpToTheHardLimit() {
        var state = makeState(2) { index, server in
            if index == 0 { server.maxConnections = 1; server.hardLimit = 2 }
        }
        let (_, first) = place(&state, client(1), now: at(0))
        XCTAssertEqual(first, .server(0))
        let (_, newcomer) = place(&state, client(2), now: at(0))
        XCTAssertEqual(newcomer, .server(1), "a new client does not go over the soft limit")
        let (_, returning) = place(&state, client(1), now: at(1))
        XCTAssertEqual(returning, .server(0), "a returning client goes over the soft limit")
        XCTAssertEqual(state.servers.servers[0].connections, 2)
        let (_, third) = place(&state, client(1), now: at(2))
        XCTAssertEqual(third, .server(1), "but not over the hard limit")
    }

    func testStubbornDoesNotFailOver() {
        var selection = Selection()
        selection.stubborn = true
        var state = makeState(3, selection: selection)
        var placement = state.accept(client: client(1), now: at(0))
        XCTAssertEqual(state.nextTarget(&placement, now: at(0)), .server(0))
        state.connectFailed(.server(0), now: at(0))
        XCTAssertNil(state.nextTarget(&placement, now: at(0)))
    }

    func testHashFailsOverFromAnUnavailableHashedServer() {
        var selection = Selection()
        selection.hash = true
        selection.roundRobin = true
        var state = makeState(3, selection: selection)
        let hashed = Selector.hashIndex(of: client(9), count: 3)
        state.connectFailed(.server(hashed), now: at(0))
        var placement = state.accept(client: client(9), now: at(1))
        XCTAssertEqual(state.nextTarget(&placement, now: at(1)), .server((hashed + 1) % 3))
    }

    func testCountersFollowTheConnection() {
        var state = makeState(2)
        let (placement, target) = place(&state, client(1), now: at(0))
        XCTAssertEqual(state.servers.servers[0].connections, 1)
        XCTAssertEqual(state.activeConnections, 1)
        state.relayed(placement, target: target!, toServer: 60, toClient: 1500)
        XCTAssertEqual([state.servers.servers[0].sent, state.servers.servers[0].received], [60, 1500],
                       "bytes count while the connection is still open")
        state.relayed(placement, target: target!, toServer: 40, toClient: 500)
        state.finished(placement, connection: 0, target: target!)
        let server = state.servers.servers[0]
        XCTAssertEqual([server.connections, Int(server.totalConnections), Int(server.sent), Int(server.received)], [0, 1, 100, 2000])
        XCTAssertEqual(state.activeConnections, 0)
        XCTAssertEqual(state.totalConnections, 1)
        let entry = state.clients.entry(slot: placement.clientSlot)!
        XCTAssertEqual([entry.sent, entry.received], [2000, 100], "client counters are from the client's side")
    }

    // MARK: Access lists (pen's client_acl, -B and server N acl)

    private func rule(_ line: String) throws -> (list: Int, rule: AccessRule) {
        try AccessRule.parse(words: line.split(separator: " ").map(String.init))
    }

    func testAClientRefusedByClientACLGoesOnlyToTheAbuseServer() throws {
        var configuration = makeState(2).configuration
        configuration.abuse = ServerSpec(host: "127.0.0.1", port: 9998)
        var state = makeState(configuration)
        let (list, deny) = try rule("2 deny 127.0.0.1")
        state.configuration.accessLists.append(deny, to: list)
        state.configuration.clientACL = 2
        var refused = state.accept(client: client(1), now: at(0))
        XCTAssertTrue(refused.isRefused)
        XCTAssertEqual(state.nextTarget(&refused, now: at(0)), .abuse)
        state.connectFailed(.abuse, now: at(0))
        XCTAssertNil(state.nextTarget(&refused, now: at(0)), "a failed abuse server is not followed by the servers")
        XCTAssertEqual(state.refusedClients, 1)
        let (admitted, target) = place(&state, client(2), now: at(0))
        XCTAssertFalse(admitted.isRefused)
        XCTAssertEqual(target, .server(0), "other clients are balanced as before")
        state.configuration.clientACL = 0
        XCTAssertFalse(state.accept(client: client(1), now: at(1)).isRefused, "list 0 is empty, so it permits")
    }

    func testWithoutAnAbuseServerARefusedClientIsClosed() throws {
        var state = makeState(2)
        let (list, deny) = try rule("0 deny 127.0.0.1")
        state.configuration.accessLists.append(deny, to: list)
        let (_, target) = place(&state, client(1), now: at(0))
        XCTAssertNil(target)
        XCTAssertEqual(state.activeConnections, 0)
        XCTAssertEqual(state.servers.servers.map(\.connections), [0, 0])
    }

    func testAServersACLKeepsRefusedClientsAwayFromIt() throws {
        var selection = Selection()
        selection.roundRobin = true
        var state = makeState(2, selection: selection) { index, server in server.acl = index == 0 ? 1 : 0 }
        let (list, deny) = try rule("1 deny 127.0.0.1")
        state.configuration.accessLists.append(deny, to: list)
        var targets: [Target?] = []
        for key in [client(1), client(1), client(2), client(1), client(2), client(2), client(2)] {
            let (placement, target) = place(&state, key, now: at(0))
            targets.append(target)
            if let target { state.finished(placement, connection: 0, target: target) }
        }
        // As pen's round robin: a refused server is passed over for that client only, and the
        // next client starts after the server the last one actually got.
        XCTAssertEqual(targets, [.server(1), .server(1), .server(0), .server(1), .server(0), .server(1), .server(0)])
    }

    func testAStubbornClientWhoseServerRefusesItIsClosed() throws {
        var selection = Selection()
        selection.stubborn = true
        var state = makeState(2, selection: selection) { _, server in server.acl = 1 }
        let (list, deny) = try rule("1 deny 127.0.0.1")
        state.configuration.accessLists.append(deny, to: list)
        var placement = state.accept(client: client(1), now: at(0))
        XCTAssertNil(state.nextTarget(&placement, now: at(0)))
    }
}
