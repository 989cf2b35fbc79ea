import NIOCore
import XCTest
@testable import BalancerCore

final class ConnectionTableTests: XCTestCase {
    private func record(_ number: Int) -> BalancerState.ConnectionRecord {
        BalancerState.ConnectionRecord(peer: .text("client \(number)"), target: .server(number % 3), since: NIODeadline.uptimeNanoseconds(UInt64(number)))
    }

    /// Inserts and removals in an order that makes numbers collide (n and n + 16, n + 32 share
    /// a home slot, and removals open holes in the middle of probe runs), checked against a
    /// Dictionary after every step.
    func testLookupsMatchADictionaryThroughCollisionsRemovalsAndGrowth() {
        var table = ConnectionTable()
        var model: [Int: BalancerState.ConnectionRecord] = [:]
        var next = 0
        for round in 0..<4000 {
            // Live numbers stay spread: a few long-lived ones among many short ones.
            // A fixed schedule: two inserts to one removal, the removed one picked across the live ones.
            if model.isEmpty || round % 3 != 0 {
                let number = next
                next += round % 7 == 0 ? 16 : 1
                table.insert(record(number), number: number)
                model[number] = record(number)
            } else {
                let live = model.keys.sorted()
                let number = live[round * 7919 % live.count]
                table.remove(number)
                model[number] = nil
            }
            XCTAssertEqual(table.count, model.count)
            for number in max(0, next - 80)...next { XCTAssertEqual(table[number], model[number], "number \(number) at round \(round)") }
        }
        for number in model.keys { XCTAssertEqual(table[number], model[number]) }
        table.remove(next + 1)
        XCTAssertEqual(table.count, model.count, "removing a number not there changes nothing")
    }

    func testAnIPv4ClientIsWrittenAsEndpointWritesIt() throws {
        for (host, port) in [("0.0.0.0", 0), ("255.255.255.255", 65535), ("192.0.2.10", 8080), ("10.200.3.4", 1)] {
            let address = try SocketAddress(ipAddress: host, port: port)
            guard case .v4(let v4) = address else { return XCTFail(host) }
            let peer = ConnectionPeer.ipv4(address: UInt32(bigEndian: v4.address.sin_addr.s_addr), port: UInt16(port))
            XCTAssertEqual(peer.text, Endpoint.describe(address), host)
        }
    }
}
