import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

final class SelectionTests: XCTestCase {
    func testRoundRobinStartsAfterTheLastChoiceAndSkipsUnavailableServers() {
        var selection = Selection(), selector = Selector()
        var state = makeState(3)
        let picks = (0..<4).map { _ in selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0)) }
        XCTAssertEqual(picks, [0, 1, 2, 0])
        state.servers.blacklist(.server(1), until: at(30))
        let next = (0..<2).map { _ in selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(1)) }
        XCTAssertEqual(next, [2, 0], "blacklisted server 1 is skipped")
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(31)), 1,
                       "the blacklist ends after its time")
    }

    func testRoundRobinSkipsServersAtTheirSoftLimit() {
        var selection = Selection(), selector = Selector()
        var state = makeState(2) { index, server in
            if index == 0 { server.maxConnections = 1 }
        }
        state.servers.servers[0].connections = 1
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0)), 1)
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0)), 1)
    }

    /// `maglev`: two nodes that share nothing send each of 1,000 clients to the same server; a
    /// blacklisted server's clients move and almost no others; all come back when it returns.
    func testMaglevPlacesAClientAlikeOnEveryNodeAndMovesOnlyAFailedServersClients() {
        var nodeA = Node(), nodeB = Node()
        nodeA.selection.maglev = true
        nodeB.selection.maglev = true
        nodeB.selection.weight = true  // maglev wins over weight (prio over both)
        var state = makeState(5)
        let clients = (0..<1000).map { ClientKey(ipv4: 0xC633_6400 + UInt32($0)) }
        let place = { (node: inout Node, now: Double) in
            clients.map { node.selector.initialServer(by: node.selection, for: $0, tracked: nil, in: state, now: at(now)) }
        }
        let before = place(&nodeA, 0)
        XCTAssertEqual(before, place(&nodeB, 0), "nodes that share nothing agree")
        XCTAssertEqual(Set(before.compactMap { $0 }), [0, 1, 2, 3, 4])
        state.servers.blacklist(.server(2), until: at(30))
        let during = place(&nodeA, 1)
        XCTAssertFalse(during.contains(2))
        let others = zip(before, during).filter { $0.0 != 2 && $0.0 != $0.1 }.count
        XCTAssertLessThanOrEqual(others, 10, "clients of the other servers that moved: \(others) of 1,000")
        XCTAssertEqual(place(&nodeA, 31), before, "server 2 back: its clients come back")
        nodeA.selection.priority = true
        XCTAssertEqual(Set(place(&nodeA, 31)), [0], "prio wins over maglev")
    }

    /// The table is kept while the servers stay as they are, and built again when one's
    /// address changes (its name places it): a node that has run all along places clients as
    /// a node that starts now.
    func testMaglevBuildsItsTableAgainWhenAServersAddressChanges() {
        var running = Node()
        running.selection.maglev = true
        var state = makeState(5)
        let clients = (0..<500).map { ClientKey(ipv4: 0xCB00_7100 + UInt32($0)) }
        let place = { (node: inout Node) in
            clients.map { node.selector.initialServer(by: node.selection, for: $0, tracked: nil, in: state, now: at(0)) }
        }
        let before = place(&running)
        state.configuration.servers[3].host = "127.0.0.9"
        var fresh = Node()
        fresh.selection.maglev = true
        let after = place(&fresh)
        XCTAssertNotEqual(before, after, "the new name takes other slots")
        XCTAssertEqual(zip(place(&running), after).filter { $0.0 != $0.1 }.count, 0, "clients placed unlike a node starting now")
    }

    func testNothingAvailableGivesNoServer() {
        var selection = Selection(), selector = Selector()
        var state = makeState(2)
        state.servers.blacklist(.server(0), until: at(30))
        state.servers.blacklist(.server(1), until: at(30))
        XCTAssertNil(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0)))
        selection.weight = true
        XCTAssertNil(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0)))
        selection.priority = true
        XCTAssertNil(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0)))
    }

    func testTrackedServerWinsUnlessRoundRobin() {
        var selection = Selection(), selector = Selector()
        let state = makeState(3)
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: 2, in: state, now: at(0)), 2)
        selection.roundRobin = true
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: 2, in: state, now: at(0)), 0)
    }

    func testWeightPicksLeastConnectionsPerWeight() {
        var selection = Selection(), selector = Selector()
        selection.weight = true
        var state = makeState(3) { index, server in
            server.weight = [1, 3, 0][index]
        }
        var counts = [0, 0, 0]
        for _ in 0..<40 {
            let pick = selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0))!
            counts[pick] += 1
            state.servers.servers[pick].connections += 1
        }
        XCTAssertEqual(counts, [10, 30, 0], "3:1 by weight; weight 0 is never chosen")
    }

    func testPriorityPicksTheLowestAvailableValueFirstInOrderOnTies() {
        var selection = Selection(), selector = Selector()
        selection.priority = true
        var state = makeState(4) { index, server in
            server.priority = [5, 1, 1, 0][index]
        }
        state.servers.blacklist(.server(3), until: at(10))
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(0)), 1)
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(11)), 3)
        selection.weight = true
        XCTAssertEqual(selector.initialServer(by: selection, for: client(1), tracked: nil, in: state, now: at(11)), 3,
                       "prio wins over weight, as in pen")
    }

    func testHashIsStablePerClientAndSpreadsClients() {
        var selection = Selection(), selector = Selector()
        selection.hash = true
        selection.roundRobin = true
        let state = makeState(4)
        var seen = Set<Int>()
        for number in 1...64 {
            let first = selector.initialServer(by: selection, for: client(UInt8(number)), tracked: nil, in: state, now: at(0))
            let again = selector.initialServer(by: selection, for: client(UInt8(number)), tracked: nil, in: state, now: at(5))
            XCTAssertEqual(first, again)
            seen.insert(first!)
        }
        XCTAssertEqual(seen, [0, 1, 2, 3])
    }

    func testFailoverPlanGoesRoundTheRingOnceThenToTheEmergencyServer() {
        var plan = FailoverPlan(initial: 2, serverCount: 4, stubborn: false)
        var order: [Target] = []
        while let target = plan.next() { order.append(target) }
        XCTAssertEqual(order, [.server(2), .server(3), .server(0), .server(1), .emergency])
    }

    func testStubbornPlanStopsAfterTheFirstChoice() {
        var plan = FailoverPlan(initial: 1, serverCount: 3, stubborn: true)
        XCTAssertEqual(plan.next(), .server(1))
        XCTAssertNil(plan.next())
        var none = FailoverPlan(initial: nil, serverCount: 3, stubborn: true)
        XCTAssertNil(none.next(), "stubborn with nothing available closes the client, no emergency")
    }

    func testPlanWithoutInitialServerGoesStraightToEmergency() {
        var plan = FailoverPlan(initial: nil, serverCount: 3, stubborn: false)
        XCTAssertEqual(plan.next(), .emergency)
        XCTAssertNil(plan.next())
    }

    /// One balancer's selection: its flags and what it remembers between clients.
    private struct Node {
        var selection = Selection()
        var selector = Selector()
    }
}
