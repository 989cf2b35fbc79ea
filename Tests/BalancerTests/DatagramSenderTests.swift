import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

final class DatagramSenderTests: XCTestCase {
    /// A UDP socket on 127.0.0.1 with a receive timeout, and its port.
    private func receiver() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        XCTAssertEqual(address.withSockAddr { bind(fd, $0, socklen_t($1)) }, 0)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: bound.sin_port)))
    }

    func testEachSendIsOneDatagramFromTheLocalAddressGiven() throws {
        let (fd, port) = try receiver()
        defer { close(fd) }
        let sender = try DatagramSender(host: "127.0.0.1", port: port, from: "127.0.0.2")
        XCTAssertEqual(sender.target, "127.0.0.1:\(port)")
        XCTAssertTrue(sender.send(Array("one\n".utf8), wait: false))
        XCTAssertTrue(sender.send(Array("two\n".utf8), wait: true))
        var buffer = [UInt8](repeating: 0, count: 64)
        var source = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = withUnsafeMutablePointer(to: &source) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &length) }
        }
        XCTAssertEqual(Array(buffer.prefix(max(count, 0))), Array("one\n".utf8))
        XCTAssertEqual(source.sin_addr.s_addr, inet_addr("127.0.0.2"), "sent from MY_IP")
        XCTAssertEqual(recv(fd, &buffer, buffer.count, 0), 4)
        XCTAssertEqual(Array(buffer.prefix(4)), Array("two\n".utf8))
    }

    func testADaemonThatIsNotThereMakesSendsFailNotBlock() throws {
        let (fd, port) = try receiver()
        close(fd)
        let sender = try DatagramSender(host: "127.0.0.1", port: port)
        // The first datagram draws ICMP port unreachable; a later send reports it.
        var results: [Bool] = []
        for _ in 0..<20 {
            results.append(sender.send(Array("x\n".utf8), wait: false))
            if results.last == false { break }
            usleep(10_000)
        }
        XCTAssertEqual(results.last, false, "ECONNREFUSED is a datagram not sent: \(results)")
    }

    func testBadHostsAreOneLineErrors() {
        XCTAssertThrowsError(try DatagramSender(host: "no such host.invalid", port: 1)) { error in
            XCTAssertTrue("\(error)".hasPrefix("cannot resolve log host no such host.invalid"), "\(error)")
        }
        XCTAssertThrowsError(try DatagramSender(host: "127.0.0.1", port: 1, from: "192.0.2.200")) { error in
            XCTAssertTrue("\(error)".hasPrefix("cannot bind to 192.0.2.200"), "\(error)")
        }
    }
}
