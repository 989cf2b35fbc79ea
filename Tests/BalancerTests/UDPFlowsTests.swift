import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

final class UDPFlowsTests: XCTestCase {
    private func address(_ host: String, _ port: Int) -> SocketAddress {
        try! SocketAddress(ipAddress: host, port: port)
    }

    /// The flow a new client's datagram opens; fails the test when it opens none.
    private func opened(_ arrival: UDPFlows.Arrival, file: StaticString = #filePath, line: UInt = #line) -> UDPFlows.Flow? {
        guard case .open(let flow, _) = arrival else {
            XCTFail("expected a new flow, got \(arrival)", file: file, line: line)
            return nil
        }
        return flow
    }

    func testAClientsDatagramsShareOneFlowAndItsServer() throws {
        var state = makeState(3)
        var flows = UDPFlows(capacity: 10, idleTime: .seconds(60))
        let first = try XCTUnwrap(opened(flows.arrived(from: address("127.0.0.2", 5000), bytes: 10, now: at(0), state: &state)))
        guard case .forward(let same) = flows.arrived(from: address("127.0.0.2", 5000), bytes: 5, now: at(1), state: &state) else {
            return XCTFail("the second datagram should use the flow")
        }
        XCTAssertEqual(same.connection, first.connection)
        XCTAssertEqual(same.toServer, 15)
        XCTAssertEqual(state.activeConnections, 1)
        XCTAssertEqual(state.servers.servers[0].sent, 15)
        // Another port of the same host is another flow, tracked to the same server as TCP would be.
        let otherPort = try XCTUnwrap(opened(flows.arrived(from: address("127.0.0.2", 5001), bytes: 1, now: at(2), state: &state)))
        XCTAssertEqual(otherPort.target, first.target)
        let otherHost = try XCTUnwrap(opened(flows.arrived(from: address("127.0.0.3", 5000), bytes: 1, now: at(2), state: &state)))
        XCTAssertNotEqual(otherHost.target, first.target)
        XCTAssertEqual(state.activeConnections, 3)
    }

    func testRepliesCountForTheFlowAndAReplacedSocketIsIgnored() throws {
        var state = makeState(2)
        var flows = UDPFlows(capacity: 10, idleTime: .seconds(60))
        let client = address("127.0.0.2", 5000)
        let flow = try XCTUnwrap(opened(flows.arrived(from: client, bytes: 1, now: at(0), state: &state)))
        XCTAssertEqual(flows.answered(client, attempt: flow.attempt, bytes: 7, now: at(1), state: &state)?.toClient, 7)
        XCTAssertNil(flows.answered(client, attempt: flow.attempt + 1, bytes: 7, now: at(1), state: &state))
        XCTAssertEqual(state.servers.servers[0].received, 7)
    }

    func testARefusingServerIsBlacklistedAndTheFlowMovesOn() throws {
        var state = makeState(2)
        var flows = UDPFlows(capacity: 10, idleTime: .seconds(60))
        let client = address("127.0.0.2", 5000)
        let flow = try XCTUnwrap(opened(flows.arrived(from: client, bytes: 1, now: at(0), state: &state)))
        XCTAssertEqual(flow.target, .server(0))
        guard case .moved(let moved) = flows.failed(client, attempt: flow.attempt, now: at(1), state: &state) else {
            return XCTFail("the flow should move to the next server")
        }
        XCTAssertEqual(moved.target, .server(1))
        XCTAssertNotEqual(moved.attempt, flow.attempt)
        XCTAssertTrue(state.servers.servers[0].isBlacklisted(now: at(30)))
        XCTAssertEqual(state.servers.servers[0].connections, 0)
        XCTAssertEqual(state.activeConnections, 1)
        guard case .stale = flows.failed(client, attempt: flow.attempt, now: at(1), state: &state) else {
            return XCTFail("an error from the replaced socket should change nothing")
        }
        // Then the emergency server, then nothing: the flow is gone.
        guard case .moved(let last) = flows.failed(client, attempt: moved.attempt, now: at(2), state: &state),
              last.target == .emergency,
              case .closed = flows.failed(client, attempt: last.attempt, now: at(3), state: &state) else {
            return XCTFail("the failover plan should end at the emergency server")
        }
        XCTAssertTrue(flows.flows.isEmpty)
        XCTAssertEqual(state.activeConnections, 0)
    }

    func testAFlowWhoseServerIsBlacklistedIsPlacedAgain() throws {
        var state = makeState(2)
        var flows = UDPFlows(capacity: 10, idleTime: .seconds(60))
        let client = address("127.0.0.2", 5000)
        let flow = try XCTUnwrap(opened(flows.arrived(from: client, bytes: 1, now: at(0), state: &state)))
        state.servers.blacklist(flow.target, until: at(60))
        guard case .open(let placed, let replacing) = flows.arrived(from: client, bytes: 1, now: at(1), state: &state) else {
            return XCTFail("the flow should be placed again")
        }
        XCTAssertEqual(replacing?.attempt, flow.attempt, "the old flow's socket is to be closed")
        XCTAssertNotEqual(placed.target, flow.target)
        XCTAssertNotEqual(placed.attempt, flow.attempt)
        XCTAssertEqual(state.activeConnections, 1)
        XCTAssertNil(state.connections[flow.connection])
    }

    func testWithEveryServerBlacklistedDatagramsAreDroppedAndFlowsEnd() throws {
        var state = makeState(2)
        state.servers.emergency = nil
        var flows = UDPFlows(capacity: 10, idleTime: .seconds(60))
        let established = address("127.0.0.2", 5000)
        let flow = try XCTUnwrap(opened(flows.arrived(from: established, bytes: 1, now: at(0), state: &state)))
        for index in 0..<2 { state.servers.blacklist(.server(index), until: at(60)) }
        guard case .noServer(.none) = flows.arrived(from: address("127.0.0.3", 5000), bytes: 1, now: at(1), state: &state) else {
            return XCTFail("no server should take a new client's datagram")
        }
        guard case .noServer(.some(let ended)) = flows.arrived(from: established, bytes: 1, now: at(1), state: &state) else {
            return XCTFail("no server should take the established client's datagram")
        }
        XCTAssertEqual(ended.connection, flow.connection, "its flow has ended")
        XCTAssertTrue(flows.flows.isEmpty)
        XCTAssertEqual(state.activeConnections, 0)
    }

    func testIdleFlowsExpireAndActivityKeepsThemAlive() throws {
        var state = makeState(2)
        var flows = UDPFlows(capacity: 10, idleTime: .seconds(5))
        let quiet = address("127.0.0.2", 5000)
        let busy = address("127.0.0.3", 5000)
        _ = flows.arrived(from: quiet, bytes: 1, now: at(0), state: &state)
        let flow = try XCTUnwrap(opened(flows.arrived(from: busy, bytes: 1, now: at(0), state: &state)))
        _ = flows.answered(busy, attempt: flow.attempt, bytes: 1, now: at(3), state: &state)
        XCTAssertTrue(flows.expire(now: at(4.9), state: &state).isEmpty)
        XCTAssertEqual(flows.expire(now: at(5), state: &state).map(\.client), [quiet])
        XCTAssertEqual(flows.expire(now: at(8), state: &state).map(\.client), [busy])
        XCTAssertEqual(state.activeConnections, 0)
        XCTAssertTrue(state.connections.isEmpty)
    }

    func testTheTableIsBounded() {
        var state = makeState(2)
        var flows = UDPFlows(capacity: 2, idleTime: .seconds(60))
        for port in 1...2 { _ = flows.arrived(from: address("127.0.0.2", port), bytes: 1, now: at(0), state: &state) }
        guard case .full = flows.arrived(from: address("127.0.0.2", 3), bytes: 1, now: at(0), state: &state) else {
            return XCTFail("a third flow should not fit")
        }
        guard case .forward = flows.arrived(from: address("127.0.0.2", 1), bytes: 1, now: at(0), state: &state) else {
            return XCTFail("flows already there keep working")
        }
    }

    func testCloseByConnectionNumber() throws {
        var state = makeState(2)
        var flows = UDPFlows(capacity: 10, idleTime: .seconds(60))
        let client = address("127.0.0.2", 5000)
        let flow = try XCTUnwrap(opened(flows.arrived(from: client, bytes: 1, now: at(0), state: &state)))
        XCTAssertEqual(flows.client(ofConnection: flow.connection), client)
        XCTAssertNil(flows.client(ofConnection: flow.connection + 1))
        XCTAssertEqual(flows.remove(client, state: &state)?.connection, flow.connection)
        XCTAssertEqual(state.activeConnections, 0)
    }

    func testLimitsComeFromTheConfiguration() {
        var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 53), servers: [])
        XCTAssertEqual(UDPFlows(configuration: configuration).idleTime, UDPFlows.defaultIdleTime)
        XCTAssertEqual(UDPFlows(configuration: configuration).capacity, configuration.connectionsMax)
        configuration.idleTimeoutSeconds = 2
        configuration.connectionsMax = 0
        configuration.clientsMax = 7
        let flows = UDPFlows(configuration: configuration)
        XCTAssertEqual(flows.idleTime, .seconds(2))
        XCTAssertEqual(flows.capacity, 7)
    }
}
