import NIOCore
import TestSupport
import XCTest
@testable import BalancerCore
import EngineCore

/// Plays the engine's part for one connection's machine, against a real (pure) `BalancerState`:
/// performs each action as `EngineThread.perform` does, without sockets, and keeps a ledger
/// of what the machine asked for, so each test can say what happened.
struct ConnectionDriver {
    typealias Machine = ConnectionStateMachine

    var state: BalancerState
    var machine = Machine()
    var now: UInt64 = 1_000_000_000
    var connects: [Target] = []
    var failovers: [(Target, Machine.ConnectError)] = []
    var shutdowns: [Machine.Direction] = []
    var closes: [Machine.Close] = []
    /// The target a count is held on, by this ledger: taken by `.connect`, given back by
    /// `.failover` or the close's release. A second take or a give-back of another fails.
    var held: Target?
    var reportedToServer: UInt64 = 0
    var reportedToClient: UInt64 = 0
    var nextNumber = 1
    var timeouts = Machine.Timeouts(connectSeconds: 3, idleSeconds: 0)
    /// What `connected` passes for `-l`.
    var logsRequests = false

    init(servers: Int = 2, selection: Selection = Selection(), configure: (Int, inout ServerSpec) -> Void = { _, _ in }) {
        var selection = selection
        selection.roundRobin = true
        state = makeState(servers, selection: selection, configure: configure)
    }

    var deadline: NIODeadline { .uptimeNanoseconds(now) }

    mutating func accept(proxyHeader: Bool = false, tls: Bool = false) {
        machine = Machine(acceptedAt: now, expectsProxyHeader: proxyHeader)
        if !proxyHeader { perform(machine.admitted(terminatesTLS: tls, now: now)) }
    }

    /// Accepted and connected to its first server: relaying.
    mutating func relay(tls: Bool = false) {
        accept(tls: tls)
        if tls { perform(machine.handshakeCompleted()) }
        perform(machine.connected(number: nextNumber, logsRequest: logsRequests, now: now))
        nextNumber += 1
    }

    mutating func next(_ placement: inout BalancerState.Placement) -> Lease? {
        guard let target = state.nextTarget(&placement, now: deadline) else { return nil }
        let placement = placement
        return state.withServer(target) { spec, server in
            Lease(placement: placement, target: target, address: server.address, source: nil, host: spec.host, port: spec.port,
                  noDelay: false, proxyProtocol: spec.proxyProtocol)
        }
    }

    mutating func perform(_ action: Machine.Action) {
        switch action {
        case .none:
            break
        case .startHandshake:
            break
        case .place:
            var placement = state.accept(client: client(7), now: deadline)
            let first = next(&placement)
            perform(machine.placed(first, timeouts: timeouts, now: now))
        case .connect(let lease):
            XCTAssertNil(held, "a count taken twice")
            held = lease.target
            connects.append(lease.target)
        case .failover(let lease, let error):
            XCTAssertEqual(held, lease.target, "a count given back for another target")
            held = nil
            failovers.append((lease.target, error))
            var placement = lease.placement
            state.connectFailed(lease.target, of: placement, now: deadline)
            perform(machine.failedOver(next(&placement), now: now))
        case .shutdownWrite(let direction):
            shutdowns.append(direction)
        case .close(let close):
            XCTAssertTrue(closes.isEmpty, "closed twice")
            closes.append(close)
            switch close.release {
            case .nothing:
                XCTAssertNil(held, "a count never given back")
            case .abandonedConnect(let lease):
                XCTAssertEqual(held, lease.target)
                state.connectFailedLocally(lease.target, of: lease.placement)
            case .finished(let report, let number, _):
                XCTAssertEqual(held, report.target)
                reportedToServer += report.toServer
                reportedToClient += report.toClient
                state.relayed(report.placement, target: report.target, toServer: report.toServer, toClient: report.toClient)
                state.finished(report.placement, connection: number, target: report.target)
            }
            held = nil
        }
    }

    mutating func report() {
        guard let report = machine.takeReport() else { return }
        reportedToServer += report.toServer
        reportedToClient += report.toClient
    }

    var close: Machine.Close? { closes.last }

    /// Connections the state counts on each server now.
    var counts: [Int] { state.servers.servers.map(\.connections) }
}

final class ConnectionStateMachineTests: XCTestCase {
    private typealias Machine = ConnectionStateMachine

    // MARK: admission

    func testAClientIsPlacedAndConnectedToItsServer() {
        var driver = ConnectionDriver()
        driver.accept()
        XCTAssertEqual(driver.machine.stage, .connecting)
        XCTAssertEqual(driver.connects, [.server(0)])
        XCTAssertEqual(driver.counts, [1, 0], "the server counts the connection while it connects")
        XCTAssertNil(driver.machine.number)
        driver.perform(driver.machine.connected(number: 42, logsRequest: false, now: driver.now))
        XCTAssertEqual(driver.machine.stage, .relaying)
        XCTAssertEqual(driver.machine.number, 42, "connection N once connected")
        XCTAssertEqual(driver.machine.lease?.target, .server(0))
    }

    func testAProxyHeaderIsAwaitedThenTheClientIsPlaced() {
        var driver = ConnectionDriver()
        driver.accept(proxyHeader: true)
        XCTAssertEqual(driver.machine.stage, .awaitingProxyHeader)
        XCTAssertTrue(driver.connects.isEmpty)
        driver.perform(driver.machine.admitted(terminatesTLS: false, now: driver.now))
        XCTAssertEqual(driver.connects, [.server(0)])
    }

    func testAnInvalidOrLateProxyHeaderClosesWithoutACount() {
        var driver = ConnectionDriver()
        driver.accept(proxyHeader: true)
        driver.perform(driver.machine.proxyHeaderRefused("not a header"))
        XCTAssertEqual(driver.close?.reason, .proxyHeaderRefused("not a header"))
        XCTAssertEqual(driver.close?.reset, false)

        var late = ConnectionDriver()
        late.accept(proxyHeader: true)
        late.perform(late.machine.tick(now: late.now + Machine.proxyHeaderTimeout - 1))
        XCTAssertTrue(late.closes.isEmpty, "not before the bound")
        late.perform(late.machine.tick(now: late.now + Machine.proxyHeaderTimeout))
        XCTAssertEqual(late.close?.reason, .proxyHeaderRefused("no PROXY protocol header within 5 seconds"))
        XCTAssertEqual(late.counts, [0, 0])
    }

    // MARK: TLS

    func testTLSHandshakesBeforeTheServerIsChosen() {
        var driver = ConnectionDriver()
        driver.machine = Machine(acceptedAt: driver.now, expectsProxyHeader: false)
        guard case .startHandshake = driver.machine.admitted(terminatesTLS: true, now: driver.now) else {
            return XCTFail("TLS: the handshake first")
        }
        XCTAssertEqual(driver.machine.stage, .handshaking)
        XCTAssertTrue(driver.connects.isEmpty, "no server before the handshake")
        driver.perform(driver.machine.handshakeCompleted())
        XCTAssertEqual(driver.connects, [.server(0)])
    }

    func testAFailedHandshakeIsCountedAndAnyEndDuringItToo() {
        for (end, reason) in [({ (machine: inout Machine) in machine.handshakeFailed("bad record") }, "bad record"),
                              ({ (machine: inout Machine) in machine.failed() }, "the connection failed during the handshake"),
                              ({ (machine: inout Machine) in machine.closeRequested() }, "the connection closed during the handshake"),
                              ({ (machine: inout Machine) in machine.tick(now: 1_000_000_000 + Machine.handshakeTimeout) },
                               "no handshake within 30 seconds")] {
            var driver = ConnectionDriver()
            driver.accept(tls: true)
            driver.perform(end(&driver.machine))
            XCTAssertEqual(driver.close?.reason, .handshakeFailed(reason))
            XCTAssertEqual(driver.counts, [0, 0])
        }
    }

    func testATLSSetupFailureIsNotAHandshakeFailure() {
        var driver = ConnectionDriver()
        driver.accept(tls: true)
        driver.perform(driver.machine.setupFailed())
        XCTAssertEqual(driver.close?.reason, .setupFailed)
    }

    // MARK: connecting

    /// A refused connect blacklists the server (its count back) and tries the next one.
    func testAFailedConnectFailsOverToTheNextServer() {
        var driver = ConnectionDriver()
        driver.accept()
        driver.perform(driver.machine.connectFailed(.system(111), cause: .server))
        XCTAssertEqual(driver.failovers.map(\.0), [.server(0)])
        XCTAssertEqual(driver.connects, [.server(0), .server(1)])
        XCTAssertEqual(driver.counts, [0, 1], "the failed server's count is given back, the next holds one")
        XCTAssertTrue(driver.state.servers.servers[0].isBlacklisted(now: driver.deadline))
        XCTAssertEqual(driver.machine.stage, .connecting)
    }

    /// A connect that does not answer in time fails over like a refusal.
    func testAConnectTimeoutFailsOver() {
        var driver = ConnectionDriver()
        driver.accept()
        driver.perform(driver.machine.tick(now: driver.now + 3_000_000_000 - 1))
        XCTAssertTrue(driver.failovers.isEmpty)
        driver.perform(driver.machine.tick(now: driver.now + 3_000_000_000))
        XCTAssertEqual(driver.failovers.first?.1, .timedOut)
        XCTAssertEqual(driver.connects, [.server(0), .server(1)])
    }

    /// Every server failed: the emergency server (-e) is the last resort; after it, the client is closed.
    func testFailoverEndsAtTheEmergencyServerThenCloses() {
        var driver = ConnectionDriver()
        driver.accept()
        driver.perform(driver.machine.connectFailed(.system(111), cause: .server))
        driver.perform(driver.machine.connectFailed(.system(111), cause: .server))
        XCTAssertEqual(driver.connects, [.server(0), .server(1), .emergency])
        driver.perform(driver.machine.connectFailed(.system(111), cause: .server))
        XCTAssertEqual(driver.close?.reason, .noServer)
        XCTAssertEqual(driver.counts, [0, 0])
        XCTAssertEqual(driver.state.servers.emergency?.connections, 0)
    }

    /// -s: a stubborn client does not fail over.
    func testAStubbornClientIsClosedWhenItsServerFails() {
        var selection = Selection()
        selection.stubborn = true
        var driver = ConnectionDriver(selection: selection)
        driver.accept()
        driver.perform(driver.machine.connectFailed(.system(111), cause: .server))
        XCTAssertEqual(driver.connects, [.server(0)])
        XCTAssertEqual(driver.close?.reason, .noServer)
        XCTAssertEqual(driver.counts, [0, 0])
    }

    /// No descriptor left (a local cause): the client is closed, the server keeps its standing.
    func testALocalConnectFailureClosesWithoutBlacklisting() {
        var driver = ConnectionDriver()
        driver.accept()
        driver.perform(driver.machine.connectFailed(.system(24), cause: .localResources))
        XCTAssertEqual(driver.close?.reason, .localFailure)
        XCTAssertTrue(driver.failovers.isEmpty)
        XCTAssertFalse(driver.state.servers.servers[0].isBlacklisted(now: driver.deadline))
        XCTAssertEqual(driver.counts, [0, 0])
    }

    /// The client leaves (or resets) while the connect runs: the count goes back, no blacklisting.
    func testAClientGoneDuringTheConnectGivesTheCountBack() {
        for reset in [false, true] {
            var driver = ConnectionDriver()
            driver.accept()
            driver.perform(reset ? driver.machine.failed() : driver.machine.closeRequested())
            guard case .abandonedConnect(let lease) = driver.close?.release, lease.target == .server(0) else {
                return XCTFail("\(reset)")
            }
            XCTAssertEqual(driver.close?.reset, reset)
            XCTAssertEqual(driver.counts, [0, 0])
            XCTAssertFalse(driver.state.servers.servers[0].isBlacklisted(now: driver.deadline))
        }
    }

    /// No server takes the client at all: closed at once.
    func testNoServerClosesTheClient() {
        var driver = ConnectionDriver { _, server in server.maxConnections = 1 }
        driver.state.servers.emergency = nil
        driver.state.servers.servers[0].connections = 1
        driver.state.servers.servers[1].connections = 1
        driver.accept()
        XCTAssertEqual(driver.close?.reason, .noServer)
    }

    // MARK: relaying

    /// The client ends first: its end goes on to the server (shutdown), the server's reply
    /// still comes back; the second end closes normally. And the other way round.
    func testHalfCloseGoesOnBothWays() {
        for first in [Machine.Direction.toServer, .toClient] {
            let second: Machine.Direction = first == .toServer ? .toClient : .toServer
            var driver = ConnectionDriver()
            driver.relay()
            driver.machine.sourceEnded(first, now: driver.now)
            XCTAssertTrue(driver.machine.flow(first).isEndPending)
            driver.perform(driver.machine.outputFlushed(first))
            XCTAssertEqual(driver.shutdowns, [first])
            XCTAssertTrue(driver.closes.isEmpty, "the other direction still flows")
            XCTAssertEqual(driver.machine.stage, .relaying)
            driver.perform(driver.machine.outputFlushed(second))
            XCTAssertTrue(driver.closes.isEmpty, "no end to pass on before the source ends")
            driver.machine.sourceEnded(second, now: driver.now)
            driver.perform(driver.machine.outputFlushed(second))
            XCTAssertEqual(driver.shutdowns, [first], "the close sends the second FIN")
            XCTAssertEqual(driver.close?.reason, .finished)
            XCTAssertEqual(driver.close?.reset, false)
            XCTAssertEqual(driver.counts, [0, 0])
        }
    }

    /// A reset on either side resets both, and the bytes relayed are still counted.
    func testAResetOnEitherSideResetsBoth() {
        var driver = ConnectionDriver()
        driver.relay()
        _ = driver.machine.read(100, .toServer, now: driver.now)
        _ = driver.machine.read(7, .toClient, now: driver.now)
        driver.perform(driver.machine.failed())
        XCTAssertEqual(driver.close?.reset, true)
        XCTAssertEqual(driver.close?.reason, .failed)
        XCTAssertEqual(driver.reportedToServer, 100)
        XCTAssertEqual(driver.reportedToClient, 7)
        XCTAssertEqual(driver.counts, [0, 0])
        XCTAssertEqual(driver.state.servers.servers[0].sent, 100)
    }

    func testAnIdleConnectionTimesOutAndActivityPutsItOff() {
        var driver = ConnectionDriver()
        driver.timeouts = Machine.Timeouts(connectSeconds: 3, idleSeconds: 10)
        driver.relay()
        let second: UInt64 = 1_000_000_000
        _ = driver.machine.read(1, .toServer, now: driver.now + 5 * second)
        driver.perform(driver.machine.tick(now: driver.now + 14 * second))
        XCTAssertTrue(driver.closes.isEmpty, "a read 5 s in puts the timeout at 15 s")
        driver.machine.wrote(now: driver.now + 14 * second)
        driver.perform(driver.machine.tick(now: driver.now + 23 * second))
        XCTAssertTrue(driver.closes.isEmpty, "so does a write")
        driver.perform(driver.machine.tick(now: driver.now + 24 * second))
        XCTAssertEqual(driver.close?.reason, .idleTimeout)

        var forever = ConnectionDriver()
        forever.relay()
        forever.perform(forever.machine.tick(now: forever.now + 1_000_000 * second))
        XCTAssertTrue(forever.closes.isEmpty, "no idle timeout unless configured")
    }

    /// Both sources ended while bytes still wait for a reader: the drain bound closes it.
    func testQueuedBytesAfterBothEndsWaitAtMostTheDrainBound() {
        var driver = ConnectionDriver()
        driver.relay()
        driver.machine.sourceEnded(.toServer, now: driver.now)
        driver.perform(driver.machine.tick(now: driver.now + 2 * Machine.drainBound))
        XCTAssertTrue(driver.closes.isEmpty, "one end only: no bound")
        driver.machine.sourceEnded(.toClient, now: driver.now)
        driver.perform(driver.machine.tick(now: driver.now + Machine.drainBound - 1))
        XCTAssertTrue(driver.closes.isEmpty)
        driver.perform(driver.machine.tick(now: driver.now + Machine.drainBound))
        XCTAssertEqual(driver.close?.reason, .drainBound)
    }

    /// Counters: a connection is listed once per report; a report takes what was read; the
    /// close reports the rest, the client's early bytes (read while connecting) included.
    func testBytesAreReportedOnceEach() {
        var driver = ConnectionDriver()
        driver.accept()
        XCTAssertFalse(driver.machine.read(5, .toServer, now: driver.now), "not listed before connected")
        driver.perform(driver.machine.connected(number: 1, logsRequest: false, now: driver.now))
        XCTAssertTrue(driver.machine.read(10, .toServer, now: driver.now), "listed at its first bytes")
        XCTAssertFalse(driver.machine.read(20, .toClient, now: driver.now), "listed once")
        driver.report()
        XCTAssertEqual([driver.reportedToServer, driver.reportedToClient], [15, 20])
        XCTAssertNil(driver.machine.takeReport(), "nothing new")
        XCTAssertTrue(driver.machine.read(1, .toClient, now: driver.now), "listed again after a report")
        driver.perform(driver.machine.closeRequested())
        XCTAssertEqual([driver.reportedToServer, driver.reportedToClient], [15, 21])
    }

    /// -l: a connection that never sent a request still gets its log line, once.
    func testTheAccessLogLineIsWrittenOnce() {
        var driver = ConnectionDriver()
        driver.logsRequests = true
        driver.relay()
        driver.perform(driver.machine.closeRequested())
        guard case .finished(_, 1, requestUnlogged: true) = driver.close?.release else { return XCTFail("no request: logged at the end") }

        var logged = ConnectionDriver()
        logged.logsRequests = true
        logged.relay()
        logged.machine.requestLogged()
        logged.perform(logged.machine.closeRequested())
        guard case .finished(_, _, requestUnlogged: false) = logged.close?.release else { return XCTFail("logged twice") }
    }

    /// The end-once guarantee: after the close nothing does anything.
    func testNothingHappensAfterTheEnd() {
        var driver = ConnectionDriver()
        driver.relay()
        _ = driver.machine.read(3, .toServer, now: driver.now)
        driver.perform(driver.machine.closeRequested())
        var machine = driver.machine
        XCTAssertTrue(machine.isClosed)
        XCTAssertNil(machine.number, "close N finds it no more")
        for action in [machine.closeRequested(), machine.failed(), machine.tick(now: .max), machine.handshakeCompleted(),
                       machine.connectFailed(.timedOut, cause: .server), machine.outputFlushed(.toServer),
                       machine.connected(number: 9, logsRequest: false, now: 0), machine.admitted(terminatesTLS: false, now: 0)] {
            guard case .none = action else { return XCTFail("\(action) after the end") }
        }
        XCTAssertFalse(machine.read(5, .toServer, now: 0))
        XCTAssertNil(machine.takeReport())
        XCTAssertEqual(driver.closes.count, 1)
    }
}
