import NIOCore
import XCTest
@testable import BalancerCore
import EngineCore

/// A connection's move between two penha processes (issue 20), in the pure parts: the old
/// process's machine lets a relaying connection go with what its server is owed, the state
/// of the new one counts it on the server it was on, and its machine carries on relaying
/// from where the directions had got.
final class ConnectionHandoverTests: XCTestCase {
    private typealias Machine = ConnectionStateMachine

    func testARelayingConnectionIsHandedOverOnceWithWhatItsServerIsOwed() {
        var driver = ConnectionDriver(servers: 2)
        driver.logsRequests = true
        driver.relay()
        _ = driver.machine.read(300, .toServer, now: driver.now)
        driver.perform(driver.machine.handedOver())
        XCTAssertEqual(driver.closes.count, 1)
        let close = driver.closes[0]
        XCTAssertEqual(close.reason, .handedOver)
        XCTAssertFalse(close.reset, "its sockets are not the old process's to reset")
        guard case .finished(let report, _, let requestUnlogged) = close.release else { return XCTFail("\(close.release)") }
        XCTAssertEqual(report.toServer, 300, "the bytes read so far are counted where they were read")
        XCTAssertTrue(requestUnlogged, "-l's line is the new process's to write")
        XCTAssertEqual(driver.state.servers.servers[0].connections, 0, "the old process's count given back")
        if case .none = driver.machine.handedOver() {} else { XCTFail("handed over twice") }
    }

    func testOnlyARelayingConnectionIsHandedOver() {
        var driver = ConnectionDriver(servers: 2)
        driver.accept()
        XCTAssertEqual(driver.machine.stage, .connecting)
        if case .none = driver.machine.handedOver() {} else { XCTFail("a connect in progress stays") }
        var fresh = Machine()
        if case .none = fresh.handedOver() {} else { XCTFail("nothing to hand over") }
    }

    func testTheStateCountsAnAdoptedConnectionOnItsServerAndTheClientGoesBackThere() {
        var state = makeState(3)
        guard let (placement, number) = state.adopt(client: client(9), target: .server(2), peer: .text("192.0.2.9:4000"),
                                                    connectedAt: at(1), now: at(5)) else { return XCTFail("not adopted") }
        XCTAssertEqual(state.servers.servers[2].connections, 1)
        XCTAssertEqual(state.activeConnections, 1)
        XCTAssertEqual(state.totalConnections, 0, "counted in the old process's totals, which come apart")
        XCTAssertEqual(state.servers.servers[2].totalConnections, 0)
        XCTAssertEqual(state.connections[number]?.since, at(1), "connected when the old process connected it")
        var next = state.accept(client: client(9), now: at(6))
        XCTAssertEqual(state.nextTarget(&next, now: at(6)), .server(2), "the client table follows the adopted connection")
        state.finished(placement, connection: number, target: .server(2))
        XCTAssertEqual(state.servers.servers[2].connections, 1, "only the count nextTarget just took is left")
        XCTAssertNil(state.adopt(client: client(9), target: .server(3), peer: .text("x"), connectedAt: at(1), now: at(5)),
                     "a server this process does not have")
        XCTAssertNil(state.adopt(client: client(9), target: .abuse, peer: .text("x"), connectedAt: at(1), now: at(5)), "no abuse server here")
    }

    /// Client 1's connection adopted on server `index`, and the lease the engine makes for it.
    private func adopted(_ state: inout BalancerState, on index: Int) -> (Lease, Int)? {
        guard let (placement, number) = state.adopt(client: client(1), target: .server(index), peer: .text("c"), connectedAt: at(0),
                                                    now: at(0)) else { return nil }
        return state.withServer(.server(index)) { spec, server in
            (Lease(placement: placement, target: .server(index), address: server.address, source: nil, host: spec.host,
                   port: spec.port, noDelay: false, proxyProtocol: spec.proxyProtocol), number)
        }
    }

    func testAnAdoptedMachineRelaysFromWhereTheDirectionsHadGot() {
        var state = makeState(2)
        guard let (lease, number) = adopted(&state, on: 1) else { return XCTFail("not adopted") }
        var machine = Machine(adopted: lease, number: number, timeouts: Machine.Timeouts(connectSeconds: 3, idleSeconds: 10),
                              toServer: HandedOverFlow(sourceEnded: true, shutDown: true), toClient: HandedOverFlow(pending: [1]),
                              logsRequest: false, now: 0)
        XCTAssertEqual(machine.stage, .relaying)
        XCTAssertEqual(machine.number, number)
        XCTAssertEqual(machine.lease?.target, .server(1))
        XCTAssertTrue(machine.toServer.shutDown, "the client's end was passed on in the old process")
        XCTAssertFalse(machine.toClient.isEndPending)
        machine.sourceEnded(.toClient, now: 1)
        guard case .close(let close) = machine.outputFlushed(.toClient) else { return XCTFail("both ends passed on: done") }
        XCTAssertEqual(close.reason, .finished)
        var idle = Machine(adopted: lease, number: number, timeouts: Machine.Timeouts(connectSeconds: 3, idleSeconds: 10),
                           toServer: HandedOverFlow(), toClient: HandedOverFlow(), logsRequest: false, now: 5_000_000_000)
        if case .close = idle.tick(now: 14_000_000_000) { XCTFail("idle counted from the adoption, not before") }
        guard case .close(let timedOut) = idle.tick(now: 15_000_000_000) else { return XCTFail("the idle timeout applies") }
        XCTAssertEqual(timedOut.reason, .idleTimeout)
    }

    func testAnAdoptedConnectionWhoseSourcesBothEndedIsDrainBounded() {
        var state = makeState(1)
        guard let (lease, number) = adopted(&state, on: 0) else { return XCTFail("not adopted") }
        var machine = Machine(adopted: lease, number: number, timeouts: Machine.Timeouts(connectSeconds: 3, idleSeconds: 0),
                              toServer: HandedOverFlow(pending: [1], sourceEnded: true), toClient: HandedOverFlow(pending: [2], sourceEnded: true),
                              logsRequest: false, now: 0)
        guard case .close(let close) = machine.tick(now: Machine.drainBound) else { return XCTFail("the drain bound applies") }
        XCTAssertEqual(close.reason, .drainBound)
    }

    func testTheClientTableAndTheCountersMoveAndAddUp() {
        var old = makeState(3)
        for (index, key) in [client(1), client(2), client(3), client(1)].enumerated() {
            var placement = old.accept(client: key, now: at(Double(index)))
            guard let target = old.nextTarget(&placement, now: at(Double(index))) else { return XCTFail("no server") }
            let number = old.connected(placement, to: target, client: "c", now: at(Double(index)))
            old.relayed(placement, target: target, toServer: 100, toClient: 1000)
            old.finished(placement, connection: number, target: target)
        }
        var new = makeState(3)
        // A client the new process has already served since it took the listener.
        var early = new.accept(client: client(2), now: at(10))
        _ = new.nextTarget(&early, now: at(10))
        for clients in old.handedOverClients { new.restore(clients, now: at(10)) }
        new.add(old.handedOverCounters)
        XCTAssertEqual(new.clients.byRecentUse.map(\.entry.key), [client(2), client(1), client(3)],
                       "the order of use carries over; the client seen since stays the newest")
        let entries = Dictionary(uniqueKeysWithValues: new.clients.byRecentUse.map { ($0.entry.key, $0.entry) })
        XCTAssertEqual(entries[client(1)]?.connections, 2)
        XCTAssertEqual(entries[client(1)]?.server, old.clients.trackedServer(of: client(1), now: at(10), tracking: nil))
        XCTAssertEqual(entries[client(2)]?.connections, 2, "the connections of both processes")
        XCTAssertEqual(entries[client(3)]?.sent, 1000)
        XCTAssertEqual(new.totalConnections, 4)
        XCTAssertEqual(new.servers.servers.map(\.totalConnections), old.servers.servers.map(\.totalConnections))
        XCTAssertEqual(new.servers.servers.map(\.received), old.servers.servers.map(\.received))
        XCTAssertEqual(new.servers.servers.map(\.sent).reduce(0, +), 400)
    }
}
