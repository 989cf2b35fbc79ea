import TestSupport
import XCTest
@testable import BalancerCore
import EngineCore

/// Random event sequences against the connection's machine: whatever the order, a slot is
/// freed once, a server's count is taken and given back once, nothing happens after the
/// close, and the bytes reported are the bytes read once relaying.
final class ConnectionStateMachinePropertyTests: XCTestCase {
    private typealias Machine = ConnectionStateMachine

    func testInvariantsHoldOverRandomEvents() {
        var random = SplitMix64(seed: 0x5EED_2226)
        var driver = ConnectionDriver(servers: 3)
        var stagesSeen = Set<String>()
        var reasonsSeen = Set<String>()
        for round in 0..<2_000 {
            driver.closes = []
            driver.held = nil
            driver.reportedToServer = 0
            driver.reportedToClient = 0
            // Without an idle timeout in half the rounds, so the drain bound is reached too.
            driver.timeouts = Machine.Timeouts(connectSeconds: 3, idleSeconds: round % 2 == 0 ? 20 : 0)
            driver.accept(proxyHeader: Bool.random(using: &random), tls: Bool.random(using: &random))
            var readToServer: UInt64 = 0, readToClient: UInt64 = 0
            var relayed = false
            // Bounded: 40 events, then the connection is closed if it is still open.
            for _ in 0..<40 {
                stagesSeen.insert("\(driver.machine.stage)")
                let closedBefore = driver.machine.isClosed
                let action = randomEvent(&driver, &random, &readToServer, &readToClient)
                if closedBefore, case .none = action {} else if closedBefore {
                    return XCTFail("round \(round): \(action) after the close")
                }
                driver.perform(action)
                if driver.machine.stage == .relaying { relayed = true }
            }
            driver.perform(driver.machine.closeRequested())
            XCTAssertEqual(driver.closes.count, 1, "round \(round): the slot is freed once")
            XCTAssertNil(driver.held, "round \(round): a count not given back")
            if let reason = driver.close?.reason { reasonsSeen.insert("\(reason)".prefix(while: { $0 != "(" }).description) }
            if relayed {
                XCTAssertEqual(driver.reportedToServer, readToServer, "round \(round): bytes to the server")
                XCTAssertEqual(driver.reportedToClient, readToClient, "round \(round): bytes to the client")
            }
            XCTAssertEqual(driver.counts, [0, 0, 0], "round \(round): the servers' counts came back")
            XCTAssertEqual(driver.state.servers.emergency?.connections, 0, "round \(round)")
            XCTAssertEqual(driver.state.activeConnections, 0, "round \(round)")
            driver.now += 1_000_000_000_000  // past every blacklisting
        }
        // The sequences reached every stage between events (placing is within one) and every way to end.
        XCTAssertEqual(stagesSeen.count, 5, "\(stagesSeen)")
        XCTAssertEqual(reasonsSeen.count, 10, "\(reasonsSeen)")
    }

    /// One event at random. The tallies add every read the open machine is told of: those
    /// before it relays are the client's early bytes, reported once it does.
    private func randomEvent(_ driver: inout ConnectionDriver, _ random: inout SplitMix64, _ readToServer: inout UInt64,
                             _ readToClient: inout UInt64) -> Machine.Action {
        let direction: Machine.Direction = Bool.random(using: &random) ? .toServer : .toClient
        let now = driver.now
        switch random.next() % 16 {
        case 0: return driver.machine.admitted(terminatesTLS: Bool.random(using: &random), now: now)
        case 1: return driver.machine.proxyHeaderRefused("invalid")
        case 2: return driver.machine.handshakeCompleted()
        case 3: return random.next() % 4 == 0 ? driver.machine.setupFailed() : driver.machine.handshakeFailed("bad")
        case 4:
            let local = random.next() % 4 == 0
            return driver.machine.connectFailed(.system(local ? 24 : 111), cause: local ? .localResources : .server)
        case 5, 6:
            defer { driver.nextNumber += 1 }
            return driver.machine.connected(number: driver.nextNumber, logsRequest: Bool.random(using: &random), now: now)
        case 7, 8:
            let count = Int(random.next() % 70_000)
            if !driver.machine.isClosed {
                if direction == .toServer { readToServer += UInt64(count) } else { readToClient += UInt64(count) }
            }
            if driver.machine.read(count, direction, now: now) { driver.report() }
            return .none
        case 9: driver.machine.sourceEnded(direction, now: now); return .none
        case 10: return driver.machine.outputFlushed(direction)
        case 11: return driver.machine.failed()
        case 12: return random.next() % 8 == 0 ? driver.machine.closeRequested() : .none
        case 13: driver.report(); return .none
        default:
            driver.now += random.next() % 30_000_000_000
            return driver.machine.tick(now: driver.now)
        }
    }
}
