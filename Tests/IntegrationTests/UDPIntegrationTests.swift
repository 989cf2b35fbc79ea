import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `-U`: datagrams through the real binary, from clients on several loopback addresses.
final class UDPIntegrationTests: XCTestCase {
    func testEachClientAddressStaysWithItsServer() throws {
        let a = try UDPBackend("A")
        let b = try UDPBackend("B")
        let penha = try Penha(["-U"], servers: a.andB(b))
        // A fresh socket each time: a new flow, placed through the client table.
        let first = try (0..<3).map { _ in try UDPClient(source: "127.0.0.2").ask("x", port: penha.port) }
        let second = try (0..<3).map { _ in try UDPClient(source: "127.0.0.3").ask("x", port: penha.port) }
        XCTAssertEqual(Set(first).count, 1, "\(first)")
        XCTAssertEqual(Set(second).count, 1, "\(second)")
        XCTAssertEqual(Set(first + second), ["A:x", "B:x"], "the two clients are spread over both servers")
    }

    func testRoundRobinAlternates() throws {
        let a = try UDPBackend("A")
        let b = try UDPBackend("B")
        let penha = try Penha(["-U", "-r"], servers: a.andB(b))
        let answers = try (0..<4).map { _ in try UDPClient().ask("x", port: penha.port) }
        XCTAssertEqual(answers, ["A:x", "B:x", "A:x", "B:x"])
    }

    func testRepliesComeFromTheListeningAddress() throws {
        let a = try UDPBackend("A")
        let penha = try Penha(["-U"], servers: ["127.0.0.1:\(a.port)"])
        let client = try UDPClient(source: "127.0.0.2")
        try client.send(Array("x".utf8), port: penha.port)
        let reply = try client.receive()
        XCTAssertEqual(String(decoding: reply.bytes, as: UTF8.self), "A:x")
        XCTAssertEqual(reply.from, "127.0.0.1:\(penha.port)")
        XCTAssertEqual(a.peers.count, 1)
        XCTAssertNotEqual(a.peers.first, "127.0.0.2", "the server hears penha's flow socket, not the client")
    }

    func testAStreamOfDatagramsReachesOneServerAndEveryReplyReturns() throws {
        let a = try UDPBackend("A")
        let b = try UDPBackend("B")
        let penha = try Penha(["-U"], servers: a.andB(b))
        let client = try UDPClient(source: "127.0.0.2")
        var replies: [String] = []
        // In windows of 50, so that no socket buffer on the way can overflow and drop.
        for window in 0..<20 {
            for index in 0..<50 { try client.send(Array("\(window * 50 + index)".utf8), port: penha.port) }
            for _ in 0..<50 { replies.append(String(decoding: try client.receive().bytes, as: UTF8.self)) }
        }
        let servers = Set(replies.map { $0.prefix(2) })
        XCTAssertEqual(servers.count, 1, "one server: \(servers)")
        XCTAssertEqual(Set(replies.map { $0.dropFirst(2) }), Set((0..<1000).map { Substring("\($0)") }))
        XCTAssertEqual(a.peers.count + b.peers.count, 1000)
        XCTAssertEqual(Set(a.peers + b.peers).count, 1, "one flow socket carried the whole stream")
        // The largest IPv4 datagram passes whole, both ways.
        let large = [UInt8](repeating: UInt8(ascii: "z"), count: 65507 - 2)
        try client.send(large, port: penha.port)
        XCTAssertEqual(try client.receive().bytes.count, 65507)
    }

    func testBlacklistingEveryServerLeavesRequestsUnansweredUntilOneIsBack() throws {
        let a = try UDPBackend("A")
        let b = try UDPBackend("B")
        let penha = try Penha(["-U"], servers: a.andB(b))
        let client = try UDPClient(source: "127.0.0.2", timeout: 1)
        XCTAssertNotNil(try client.ask("x", port: penha.port))
        XCTAssertEqual(try penha.command("server 0 blacklist 60"), [])
        XCTAssertEqual(try penha.command("server 1 blacklist 60"), [])
        XCTAssertNil(try client.ask("x", port: penha.port), "the established flow skips its blacklisted server")
        XCTAssertNil(try UDPClient(source: "127.0.0.3", timeout: 1).ask("x", port: penha.port))
        XCTAssertNil(penha.waitForExit(timeout: 0), "penha stays up")
        XCTAssertTrue(try penha.command("status").contains { $0.hasPrefix("server 1 ") && $0.contains("state blacklisted") })
        XCTAssertEqual(try penha.command("server 1 blacklist 0"), [])
        XCTAssertEqual(try client.ask("x", port: penha.port), "B:x")
    }

    func testARefusingServerIsBlacklistedAndTheRequestAnsweredByTheNext() throws {
        let a = try UDPBackend("A")
        let nobody = freeUDPPort()
        let penha = try Penha(["-U"], servers: ["127.0.0.1:\(nobody)", "127.0.0.1:\(a.port)"])
        XCTAssertEqual(try UDPClient().ask("x", port: penha.port), "A:x",
                       "ICMP port unreachable fails the flow over, with the request")
        let server0 = try XCTUnwrap(try penha.command("status").first { $0.hasPrefix("server 0 ") })
        XCTAssertTrue(server0.contains("state blacklisted"), server0)
    }

    func testIdleFlowsExpire() throws {
        let a = try UDPBackend("A")
        let penha = try Penha(["-U", "-O", "idle_timeout 1"], servers: ["127.0.0.1:\(a.port)"])
        let client = try UDPClient()
        XCTAssertEqual(try client.ask("1", port: penha.port), "A:1")
        XCTAssertEqual(try client.ask("2", port: penha.port), "A:2")
        XCTAssertEqual(Set(a.peers).count, 1, "one flow while it is busy")
        XCTAssertEqual(try flowCount(penha), "1 total 1")
        let deadline = Date() + 5
        while try flowCount(penha) != "0 total 1" {
            guard Date() < deadline else { return XCTFail("the idle flow did not expire") }
            usleep(100_000)
        }
        XCTAssertEqual(try client.ask("3", port: penha.port), "A:3")
        XCTAssertEqual(Set(a.peers).count, 2, "a new flow, with a new socket, after the old one expired")
        XCTAssertEqual(try flowCount(penha), "1 total 2")
    }

    func testTheControlSocketShowsAndClosesFlows() throws {
        let a = try UDPBackend("A")
        let penha = try Penha(["-U"], servers: ["127.0.0.1:\(a.port)"])
        let client = try UDPClient(source: "127.0.0.2")
        XCTAssertEqual(try client.ask("1", port: penha.port), "A:1")
        let shown = try XCTUnwrap(try penha.command("connection 0").first)
        XCTAssertTrue(shown.hasPrefix("connection 0 client 127.0.0.2:"), shown)
        XCTAssertEqual(try penha.command("close 0"), ["closing connection 0"])
        XCTAssertEqual(try flowCount(penha), "0 total 1")
        XCTAssertEqual(try client.ask("2", port: penha.port), "A:2")
        XCTAssertEqual(Set(a.peers).count, 2, "the closed flow's socket is gone; a new flow took over")
    }

    func testClientACLSendsARefusedClientsDatagramsToTheAbuseServer() throws {
        let a = try UDPBackend("A")
        let abuse = try UDPBackend("ABUSE")
        let penha = try Penha(["-U", "-B", "127.0.0.1:\(abuse.port)", "-O", "acl 1 deny 127.0.0.2", "-O", "client_acl 1"],
                              servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try UDPClient(source: "127.0.0.2").ask("x", port: penha.port), "ABUSE:x")
        XCTAssertEqual(try UDPClient(source: "127.0.0.3").ask("x", port: penha.port), "A:x")
    }

    func testAUnixListenAddressIsRefused() throws {
        let result = try runPenha(["-f", "-U", temporaryPath("udp.sock"), "127.0.0.1:53"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("needs an IP address and port"), result.stderr)
    }
}

/// `status`'s "connections N total T", as "N total T".
private func flowCount(_ penha: Penha) throws -> String? {
    try penha.command("status").first { $0.hasPrefix("connections ") }?.split(separator: " ").dropFirst().prefix(3)
        .joined(separator: " ")
}

/// A UDP port nothing listens on right now.
private func freeUDPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    let address = try! SocketAddress(ipAddress: "127.0.0.1", port: 0)
    _ = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
    return freePortOf(fd)
}

/// A UDP server on 127.0.0.1 answering each datagram with "NAME:" and the datagram, and
/// remembering the address each came from.
final class UDPBackend {
    let port: Int
    private let channel: Channel
    /// "ip:port" of each datagram's sender, written by the handler on its event loop.
    private let senders: Senders

    final class Senders: Sendable {
        private let seen = Mutex<[String]>([])
        var all: [String] { seen.withLock { $0 } }
        func add(_ sender: String) { seen.withLock { $0.append(sender) } }
    }

    init(_ name: String) throws {
        let senders = Senders()
        self.senders = senders
        channel = try DatagramBootstrap(group: Backend.group)
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(name: name, senders: senders))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress!.port!
    }

    /// "ip:port" of each datagram's sender, in order.
    var peers: [String] { senders.all }

    /// Both backends as penha's server arguments.
    func andB(_ other: UDPBackend) -> [String] { ["127.0.0.1:\(port)", "127.0.0.1:\(other.port)"] }

    deinit { try? channel.close().wait() }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let name: String
        private let senders: Senders

        init(name: String, senders: Senders) {
            self.name = name
            self.senders = senders
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            senders.add("\(envelope.remoteAddress.ipAddress ?? "?"):\(envelope.remoteAddress.port ?? 0)")
            var reply = context.channel.allocator.buffer(string: "\(name):")
            reply.writeImmutableBuffer(envelope.data)
            context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: reply)),
                                  promise: nil)
        }
    }
}

/// A blocking UDP socket on a loopback address whose every wait is bounded by `timeout`.
final class UDPClient {
    let fd: Int32

    init(source: String = "127.0.0.1", timeout: Double = 2) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var size: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let local = try SocketAddress(ipAddress: source, port: 0)
        guard local.withSockAddr({ bind(fd, $0, socklen_t($1)) }) == 0 else {
            close(fd)
            throw TestFailure("cannot bind to \(source): errno \(errno)")
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8], port: Int) throws {
        let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let sent = target.withSockAddr { address, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, address, socklen_t(length)) }
        }
        guard sent == bytes.count else { throw TestFailure("sendto failed: errno \(errno)") }
    }

    /// The next datagram and its sender as "ip:port"; throws on timeout.
    func receive() throws -> (bytes: [UInt8], from: String) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var sender = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = buffer.withUnsafeMutableBytes { bytes in
            withUnsafeMutablePointer(to: &sender) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &length) }
            }
        }
        guard count >= 0 else { throw TestFailure(errno == EAGAIN ? "timed out waiting for a datagram" : "recvfrom: errno \(errno)") }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &sender.sin_addr, &text, socklen_t(text.count))
        let ip = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (Array(buffer.prefix(count)), "\(ip):\(UInt16(bigEndian: sender.sin_port))")
    }

    /// Sends `text` and returns the reply, or nil when none came in time.
    func ask(_ text: String, port: Int) throws -> String? {
        try send(Array(text.utf8), port: port)
        do {
            return String(decoding: try receive().bytes, as: UTF8.self)
        } catch let failure as TestFailure where failure.description.hasPrefix("timed out") {
            return nil
        }
    }
}
