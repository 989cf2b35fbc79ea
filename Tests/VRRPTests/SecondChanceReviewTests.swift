import CBPF
import Foundation
import XCTest
@testable import VRRP
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// Hostile review of the second chance's programs, run by this kernel (root only): the
/// largest a configuration allows pass its verifier (`penha check` loads only the smallest),
/// and each kind of frame gets its verdict (BPF_PROG_TEST_RUN on frames made here: nothing
/// is sent, a copy's interface does not exist).
final class SecondChanceReviewTests: XCTestCase {
    private static let pass: Int32 = -1, drop: Int32 = 2, redirect: Int32 = 7
    private let own = HardwareAddress(bytes: [2, 0, 0, 0, 0, 1])!
    private let peer = HardwareAddress(bytes: [2, 0, 0, 0, 1, 1])!
    private let router = HardwareAddress(bytes: [2, 0, 0, 0, 2, 1])!
    private let vip: UInt32 = 0xCB00_710A  // 203.0.113.10
    private let client: UInt32 = 0xC633_6402  // 198.51.100.2

    override func setUpWithError() throws {
        guard geteuid() == 0 else {
            if ProcessInfo.processInfo.environment["PENHA_REQUIRE_NETNS"] == "1" {
                throw TestFailure("PENHA_REQUIRE_NETNS=1 but not running as root: eBPF programs cannot be loaded")
            }
            throw XCTSkip("loading eBPF programs needs root; CI runs it with PENHA_REQUIRE_NETNS=1")
        }
    }

    func testTheLargestProgramsPassTheVerifier() throws {
        let prefixes = (0..<64).map { VirtualAddress(address: IPAddress(ipv4: 0xCB00_7100 + UInt32($0)), prefixLength: $0 % 2 == 0 ? 32 : 24) }
        let peers = (0..<16).compactMap { HardwareAddress(bytes: [2, 0, 0, 0, 1, UInt8($0)]) }
        let vips = (0..<255).map { IPAddress(ipv4: 0xC633_6400 + UInt32($0)) }
        for program in [SecondChanceProgram.spread(prefixes: prefixes, peers: peers, own: own, interfaceIndex: 1),
                        .redirect(virtualAddresses: vips, peer: peer, own: own, interfaceIndex: 1),
                        .redirect(virtualAddresses: vips, peer: peer, own: own, interfaceIndex: 1, silencingARP: true),
                        .arpSilence(virtualAddresses: vips)] {
            XCTAssertNoThrow(close(try TCIngressFilter.load(program)), program.name)
        }
    }

    /// A stray (no socket here) goes on, ECMP's copies dropped here and a peer's copy never
    /// copied on; a SYN, what is not a whole IPv4 datagram without options carrying TCP to a
    /// VIP, and a frame too short for the headers go up as before. A copy that cannot be made
    /// (no such interface) still drops the original.
    func testEachKindOfFrameGetsItsVerdict() throws {
        let spread = SecondChanceProgram.spread(prefixes: [VirtualAddress(address: IPAddress(ipv4: vip), prefixLength: 32)],
                                                peers: [peer], own: own, interfaceIndex: 9999)
        let redirect = SecondChanceProgram.redirect(virtualAddresses: [IPAddress(ipv4: vip)], peer: peer, own: own,
                                                    interfaceIndex: 9999)
        let cases: [(name: String, frame: [UInt8], spread: Int32, redirect: Int32)] = [
            ("an ACK from the router", frame(from: router), Self.drop, Self.redirect),
            ("an ACK from the peer", frame(from: peer), Self.drop, Self.pass),
            ("a SYN", frame(from: router, flags: 0x02), Self.pass, Self.pass),
            ("a SYN-ACK", frame(from: router, flags: 0x12), Self.pass, Self.pass),
            ("a RST", frame(from: router, flags: 0x04), Self.drop, Self.redirect),
            ("a FIN", frame(from: router, flags: 0x01), Self.drop, Self.redirect),
            ("IPv4 options", frame(from: router, headerWords: 6), Self.pass, Self.pass),
            ("a first fragment", frame(from: router, fragment: 0x2000), Self.pass, Self.pass),
            ("a later fragment", frame(from: router, fragment: 0x0001), Self.pass, Self.pass),
            ("UDP", frame(from: router, protocolNumber: 17), Self.pass, Self.pass),
            ("another destination", frame(from: router, to: vip + 1), Self.pass, Self.pass),
            ("a VLAN tag in the frame", frame(from: router, vlan: true), Self.pass, Self.pass),
            ("IPv6", frame(from: router, etherType: 0x86DD), Self.pass, Self.pass),
            ("47 bytes", Array(frame(from: router).prefix(47)), Self.pass, Self.pass),
            ("48 bytes: up to the flags", Array(frame(from: router).prefix(48)), Self.drop, Self.redirect),
        ]
        for test in cases {
            XCTAssertEqual(try verdict(spread, test.frame), test.spread, "spread: \(test.name)")
            XCTAssertEqual(try verdict(redirect, test.frame), test.redirect, "redirect: \(test.name)")
        }
    }

    /// A segment of a connection this node has goes up, from anywhere; one for a listener
    /// that matches no connection (nor a SYN cookie) is a stray.
    func testAConnectionsSegmentGoesUpAndAListenersStrayGoesOn() throws {
        let loopback: UInt32 = 0x7F00_0001
        let listener = try TCPSocket()
        try listener.bind()
        guard listen(listener.fd, 1) == 0 else { throw TestFailure("listen: errno \(errno)") }
        let connecting = try TCPSocket()
        try connecting.connect(to: listener.port)
        let accepted = accept(listener.fd, nil, nil)
        defer { close(accepted) }
        let spread = SecondChanceProgram.spread(prefixes: [VirtualAddress(address: IPAddress(ipv4: loopback), prefixLength: 32)],
                                                peers: [peer], own: own, interfaceIndex: 9999)
        let ownSegment = frame(from: router, client: loopback, to: loopback, ports: (connecting.port, listener.port))
        XCTAssertEqual(try verdict(spread, ownSegment), Self.pass)
        let stray = frame(from: router, client: loopback, to: loopback, ports: (connecting.port &+ 1, listener.port))
        XCTAssertEqual(try verdict(spread, stray), Self.drop)
    }

    /// ECMP's copies carry a mark (IPv4's reserved flag, the header checksum kept right), and a
    /// marked segment that is not this node's is dropped uncopied whoever sent it: one hop at
    /// most, even between nodes whose lists leave each other out (a ring: A lists only B, B
    /// only C, C only A passed a stray round for ever).
    func testACopyIsMarkedAndAMarkedStrayIsNeverCopiedOnWhateverTheLists() throws {
        let spread = SecondChanceProgram.spread(prefixes: [VirtualAddress(address: IPAddress(ipv4: vip), prefixLength: 32)],
                                                peers: [peer], own: own, interfaceIndex: 9999)
        let copied = try run(spread, frame(from: router))
        XCTAssertEqual(copied.verdict, Self.drop)
        XCTAssertEqual(Array(copied.frame[0..<12]), peer.bytes + own.bytes, "addressed to the peer")
        XCTAssertEqual(copied.frame[20] & 0x80, 0x80, "marked")
        XCTAssertEqual(Self.onesComplementSum(Array(copied.frame[14..<34])), 0xFFFF, "the header checksum is right")
        let stranger = try XCTUnwrap(HardwareAddress(bytes: [2, 0, 0, 0, 3, 1]))
        let marked = frame(from: stranger, fragment: 0xC000)
        let bounced = try run(spread, marked)
        XCTAssertEqual(bounced.verdict, Self.drop)
        XCTAssertEqual(bounced.frame, marked, "not copied: left as it came")
        XCTAssertEqual(try verdict(spread, frame(from: router, flags: 0x02, fragment: 0xC000)), Self.pass, "a marked SYN goes up")
    }

    /// An Ethernet frame to this node with IPv4 (`headerWords` 32-bit words of header) and a
    /// TCP header, from the client's port 50000 to port 80 unless `ports` says otherwise.
    private func frame(from source: HardwareAddress, client: UInt32? = nil, to destination: UInt32? = nil,
                       ports: (UInt16, UInt16) = (50000, 80), flags: UInt8 = 0x10, headerWords: UInt8 = 5,
                       fragment: UInt16 = 0x4000, protocolNumber: UInt8 = 6, etherType: UInt16 = 0x0800,
                       vlan: Bool = false) -> [UInt8] {
        let bigEndian = { (word: UInt32) in [UInt8(word >> 24), UInt8(word >> 16 & 0xFF), UInt8(word >> 8 & 0xFF), UInt8(word & 0xFF)] }
        let options = [UInt8](repeating: 1, count: Int(headerWords - 5) * 4)
        let length = 40 + options.count
        var header = [0x40 | headerWords, 0, UInt8(length >> 8), UInt8(length & 0xFF), 0, 1, UInt8(fragment >> 8),
                      UInt8(fragment & 0xFF), 64, protocolNumber, 0, 0]
            + bigEndian(client ?? self.client) + bigEndian(destination ?? vip) + options
        let checksum = ~Self.onesComplementSum(header)
        header[10...11] = [UInt8(checksum >> 8), UInt8(checksum & 0xFF)]
        return own.bytes + source.bytes + (vlan ? [0x81, 0x00, 0x00, 0x64] : []) + [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
            + header + bigEndian(UInt32(ports.0) << 16 | UInt32(ports.1)) + [0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0x20, 0, 0, 0, 0, 0]
    }

    /// RFC 1071's sum of 16-bit words, folded.
    private static func onesComplementSum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        for index in stride(from: 0, to: bytes.count, by: 2) { sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return UInt16(sum)
    }

    /// What the program returns for `frame`.
    private func verdict(_ program: SecondChanceProgram, _ frame: [UInt8]) throws -> Int32 {
        try run(program, frame).verdict
    }

    /// What the program returns for `frame`, and the frame as the program left it.
    private func run(_ program: SecondChanceProgram, _ frame: [UInt8]) throws -> (verdict: Int32, frame: [UInt8]) {
        let descriptor = try TCIngressFilter.load(program)
        defer { close(descriptor) }
        var options = bpf_test_run_opts()
        options.sz = MemoryLayout<bpf_test_run_opts>.size
        options.data_size_in = UInt32(frame.count)
        var output = [UInt8](repeating: 0, count: frame.count + 64)
        options.data_size_out = UInt32(output.count)
        options.repeat = 1
        let result = frame.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                options.data_in = input.baseAddress
                options.data_out = out.baseAddress
                return bpf_prog_test_run_opts(descriptor, &options)
            }
        }
        guard result == 0 else { throw TestFailure("BPF_PROG_TEST_RUN of \(program.name): \(String(cString: strerror(-result)))") }
        return (Int32(bitPattern: options.retval), Array(output.prefix(Int(options.data_size_out))))
    }
}

/// A TCP socket on 127.0.0.1, closed with the value.
private final class TCPSocket {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)

    init() throws {
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    }

    deinit { close(fd) }

    func bind() throws {
        var address = Self.loopback(port: 0)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw TestFailure("bind: errno \(errno)") }
    }

    func connect(to port: UInt16) throws {
        var address = Self.loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw TestFailure("connect: errno \(errno)") }
    }

    /// The local port.
    var port: UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
