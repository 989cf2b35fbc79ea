import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

final class ClientTableTests: XCTestCase {
    func testReturningClientKeepsItsSlotAndServer() {
        var table = ClientTable(capacity: 4)
        let slot = table.connect(client(1), now: at(0), tracking: nil)
        table.setServer(2, slot: slot, key: client(1))
        XCTAssertEqual(table.trackedServer(of: client(1), now: at(100), tracking: nil), 2)
        XCTAssertEqual(table.connect(client(1), now: at(100), tracking: nil), slot)
        XCTAssertEqual(table.entry(slot: slot)?.connections, 2)
        XCTAssertEqual(table.count, 1)
    }

    func testFullTableReusesTheLeastRecentlyUsedSlot() {
        var table = ClientTable(capacity: 3)
        for number in 1...3 {
            let slot = table.connect(client(UInt8(number)), now: at(Double(number)), tracking: nil)
            table.setServer(number, slot: slot, key: client(UInt8(number)))
        }
        // Client 1 comes back, so client 2 is now the least recently used.
        table.connect(client(1), now: at(10), tracking: nil)
        let reused = table.connect(client(4), now: at(11), tracking: nil)
        XCTAssertEqual(table.count, 3)
        XCTAssertNil(table.trackedServer(of: client(2), now: at(12), tracking: nil), "least recently used client is forgotten")
        XCTAssertEqual(table.trackedServer(of: client(1), now: at(12), tracking: nil), 1)
        XCTAssertEqual(table.trackedServer(of: client(3), now: at(12), tracking: nil), 3)
        XCTAssertEqual(table.entry(slot: reused)?.key, client(4))
        XCTAssertNil(table.entry(slot: reused)?.server, "a reused slot starts without a server")
        XCTAssertEqual(table.entry(slot: reused)?.connections, 1, "a reused slot starts with fresh counters")
        XCTAssertEqual(table.byRecentUse.map(\.entry.key), [client(4), client(1), client(3)])
    }

    func testEvictionFollowsUseOrderOverManyClients() {
        var table = ClientTable(capacity: 50)
        for number in 0..<200 { table.connect(client(UInt8(number)), now: at(Double(number)), tracking: nil) }
        XCTAssertEqual(table.count, 50)
        XCTAssertEqual(Set(table.byRecentUse.map(\.entry.key)), Set((150..<200).map { client(UInt8($0)) }))
    }

    func testTrackingTimeForgetsIdleClients() {
        var table = ClientTable(capacity: 4)
        let tracking = TimeAmount.seconds(60)
        let slot = table.connect(client(1), now: at(0), tracking: tracking)
        table.setServer(1, slot: slot, key: client(1))
        XCTAssertEqual(table.trackedServer(of: client(1), now: at(60), tracking: tracking), 1, "exactly the tracking time is still tracked")
        XCTAssertNil(table.trackedServer(of: client(1), now: at(61), tracking: tracking))
        table.connect(client(1), now: at(61), tracking: tracking)
        XCTAssertNil(table.entry(slot: slot)?.server, "an expired entry starts over")
        XCTAssertEqual(table.entry(slot: slot)?.connections, 1)
    }

    func testNoTrackingTimeKeepsClientsForever() {
        var table = ClientTable(capacity: 4)
        let slot = table.connect(client(1), now: at(0), tracking: nil)
        table.setServer(3, slot: slot, key: client(1))
        XCTAssertEqual(table.trackedServer(of: client(1), now: at(1_000_000), tracking: nil), 3)
    }

    func testCountersIgnoreASlotThatWasReusedByAnotherClient() {
        var table = ClientTable(capacity: 1)
        let slot = table.connect(client(1), now: at(0), tracking: nil)
        table.connect(client(2), now: at(1), tracking: nil)
        table.addBytes(slot: slot, key: client(1), sent: 10, received: 20)
        table.setServer(1, slot: slot, key: client(1))
        XCTAssertEqual(table.entry(slot: slot)?.sent, 0)
        XCTAssertNil(table.entry(slot: slot)?.server)
        table.addBytes(slot: slot, key: client(2), sent: 10, received: 20)
        XCTAssertEqual(table.entry(slot: slot)?.sent, 10)
        XCTAssertEqual(table.entry(slot: slot)?.received, 20)
    }

    func testIPv4AndMappedIPv6ClientsAreTheSameClient() throws {
        let v4 = ClientKey(try SocketAddress(ipAddress: "192.0.2.7", port: 1))
        let mapped = ClientKey(try SocketAddress(ipAddress: "::ffff:192.0.2.7", port: 2))
        let other = ClientKey(try SocketAddress(ipAddress: "2001:db8::7", port: 1))
        XCTAssertEqual(v4, mapped)
        XCTAssertNotEqual(v4, other)
        XCTAssertEqual(v4, ClientKey(ipv4: 0xC000_0207))
    }
}
