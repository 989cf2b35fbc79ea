import BalancerCore
import VRRPCore
import XCTest

/// The PROXY protocol's two versions (HAProxy's doc/proxy-protocol.txt): what penha sends
/// and what it accepts, byte by byte.
final class ProxyProtocolTests: XCTestCase {
    private func endpoint(_ address: String, _ port: UInt16) -> ProxyEndpoint {
        ProxyEndpoint(address: IPAddress(address)!, port: port)
    }

    private let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    func testVersionOneIsTheSpecsLine() {
        XCTAssertEqual(String(decoding: ProxyHeader.encode(.v1, source: endpoint("192.0.2.7", 56324), destination: endpoint("198.51.100.1", 443)), as: UTF8.self),
                       "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n")
        XCTAssertEqual(String(decoding: ProxyHeader.encode(.v1, source: endpoint("2001:db8::7", 1), destination: endpoint("2001:db8::1", 80)), as: UTF8.self),
                       "PROXY TCP6 2001:db8::7 2001:db8::1 1 80\r\n")
        XCTAssertEqual(String(decoding: ProxyHeader.encode(.v1, source: nil, destination: endpoint("2001:db8::1", 80)), as: UTF8.self),
                       "PROXY UNKNOWN\r\n", "a Unix-socket client has no address to tell")
        XCTAssertEqual(ProxyHeader.encode(.off, source: endpoint("192.0.2.7", 1), destination: endpoint("192.0.2.1", 2)), [])
    }

    func testVersionTwoIsTheSpecsBinary() {
        XCTAssertEqual(ProxyHeader.encode(.v2, source: endpoint("192.0.2.7", 0x1234), destination: endpoint("198.51.100.1", 443)),
                       signature + [0x21, 0x11, 0x00, 12, 192, 0, 2, 7, 198, 51, 100, 1, 0x12, 0x34, 0x01, 0xBB])
        let six = ProxyHeader.encode(.v2, source: endpoint("2001:db8::7", 1), destination: endpoint("2001:db8::1", 2))
        XCTAssertEqual(Array(six.prefix(16)), signature + [0x21, 0x21, 0x00, 36])
        XCTAssertEqual(six.count, 16 + 36)
        XCTAssertEqual(Array(six[16..<32]), IPAddress("2001:db8::7")!.bytes)
        XCTAssertEqual(ProxyHeader.encode(.v2, source: nil, destination: nil), signature + [0x21, 0x00, 0x00, 0x00])
    }

    func testWhatIsSentIsReadBackWithItsLength() {
        let pairs = [(endpoint("192.0.2.7", 56324), endpoint("198.51.100.1", 443)), (endpoint("2001:db8::7", 65535), endpoint("2001:db8::1", 0))]
        for version in [ProxyProtocol.v1, .v2] {
            for (source, destination) in pairs {
                let header = ProxyHeader.encode(version, source: source, destination: destination)
                XCTAssertEqual(ProxyHeader.parse(header + Array("GET / HTTP/1.1\r\n".utf8)),
                               .header(length: header.count, source: source, destination: destination), "\(version)")
                // Every prefix is incomplete: a header cut by the network is waited for.
                for cut in 0..<header.count { XCTAssertEqual(ProxyHeader.parse(header.prefix(cut)), .incomplete, "\(version) cut at \(cut)") }
            }
        }
        XCTAssertEqual(ProxyHeader.parse(Array("PROXY UNKNOWN whatever\r\nGET".utf8)), .header(length: 24, source: nil, destination: nil))
    }

    /// HAProxy writes TCP6 with IPv4-mapped addresses for a client of a dual-stack listener
    /// (`bind :::80 v4v6`) and for the IPv4 end of a mixed pair (make_proxy_line_v1): such a
    /// header was refused, and the client closed, because the mapped address reads as IPv4.
    func testATCP6LineWithIPv4MappedAddressesIsRead() {
        let mapped = "PROXY TCP6 ::ffff:203.0.113.7 ::ffff:198.51.100.1 5555 443\r\n"
        XCTAssertEqual(ProxyHeader.parse(Array((mapped + "GET").utf8)),
                       .header(length: mapped.utf8.count, source: endpoint("203.0.113.7", 5555), destination: endpoint("198.51.100.1", 443)))
        let mixed = "PROXY TCP6 2001:db8::7 ::ffff:198.51.100.1 5555 443\r\n"
        XCTAssertEqual(ProxyHeader.parse(Array(mixed.utf8)),
                       .header(length: mixed.utf8.count, source: endpoint("2001:db8::7", 5555), destination: endpoint("198.51.100.1", 443)))
        for text in ["PROXY TCP4 ::ffff:203.0.113.7 198.51.100.1 1 2\r\n", "PROXY TCP6 203.0.113.7 ::ffff:198.51.100.1 1 2\r\n"] {
            guard case .invalid = ProxyHeader.parse(Array(text.utf8)) else { return XCTFail("accepted: \(text.debugDescription)") }
        }
    }

    /// A mixed pair (an accepted TCP6 header's IPv6 client behind an IPv4 address) is passed
    /// on as TCP6 with the IPv4 end mapped, as HAProxy does, not as UNKNOWN, which would lose
    /// the client; it reads back as it was.
    func testAMixedPairIsSentAsIPv6WithItsIPv4EndMapped() {
        let source = endpoint("192.0.2.7", 1), destination = endpoint("2001:db8::1", 80)
        let v1 = ProxyHeader.encode(.v1, source: source, destination: destination)
        XCTAssertEqual(String(decoding: v1, as: UTF8.self), "PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1 80\r\n")
        let v2 = ProxyHeader.encode(.v2, source: source, destination: destination)
        XCTAssertEqual(Array(v2.prefix(32)), signature + [0x21, 0x21, 0x00, 36] + [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 192, 0, 2, 7])
        for header in [v1, v2] {
            XCTAssertEqual(ProxyHeader.parse(header), .header(length: header.count, source: source, destination: destination))
        }
    }

    /// Section 2.1: 107 bytes at most, CRLF included; the 108th is not waited for.
    func testAVersionOneLineEndsWithin107Bytes() {
        let longest = "PROXY UNKNOWN " + String(repeating: "x", count: 91) + "\r\n"
        XCTAssertEqual(ProxyHeader.parse(Array(longest.utf8)), .header(length: 107, source: nil, destination: nil))
        let tooLong = Array(("PROXY UNKNOWN " + String(repeating: "x", count: 92) + "\r\n").utf8)
        for cut in [106, 107, 108] {
            guard case .invalid = ProxyHeader.parse(tooLong.prefix(cut)) else { return XCTFail("a 108-byte line accepted or waited for at \(cut) bytes") }
        }
    }

    func testBadHeadersAreRefusedNotGuessed() {
        let bad = [
            "GET / HTTP/1.1\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n", "PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n",
            "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n", "PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n", "PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n",
        ]
        for text in bad {
            guard case .invalid = ProxyHeader.parse(Array(text.utf8)) else { return XCTFail("accepted: \(text.debugDescription)") }
        }
        guard case .invalid = ProxyHeader.parse(Array(("PROXY " + String(repeating: "x", count: 120)).utf8)) else {
            return XCTFail("a version 1 line without its end past 107 bytes is refused")
        }
        let tooLong = signature + [0x21, 0x11, 0x04, 0x01] + [UInt8](repeating: 0, count: 1025)
        guard case .invalid = ProxyHeader.parse(tooLong) else { return XCTFail("a version 2 payload over 1024 bytes is refused") }
        for header in [signature + [0x31, 0x11, 0x00, 12], signature + [0x22, 0x11, 0x00, 12], signature + [0x21, 0x11, 0x00, 4] + [1, 2, 3, 4],
                       signature + [0x21, 0x21, 0x00, 12] + [UInt8](repeating: 1, count: 12)] {
            guard case .invalid = ProxyHeader.parse(header + [UInt8](repeating: 0, count: 40)) else { return XCTFail("accepted \(header)") }
        }
    }

    func testVersionTwoLocalAndOtherFamiliesCarryNoClientAndTLVsAreSkipped() {
        let local = signature + [0x20, 0x11, 0x00, 12] + [192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2]
        XCTAssertEqual(ProxyHeader.parse(local), .header(length: 28, source: nil, destination: nil), "LOCAL: the upstream's own check")
        let unix = signature + [0x21, 0x31, 0x00, 216] + [UInt8](repeating: 0x2F, count: 216)
        XCTAssertEqual(ProxyHeader.parse(unix), .header(length: 16 + 216, source: nil, destination: nil))
        let withTLV = signature + [0x21, 0x11, 0x00, 12 + 5] + [192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2] + [0x01, 0x00, 0x02, 0x68, 0x32]
        XCTAssertEqual(ProxyHeader.parse(withTLV), .header(length: 33, source: endpoint("192.0.2.7", 1), destination: endpoint("198.51.100.1", 2)))
    }

    /// Section 2.2: a PROXY command with a family or protocol the spec does not define is
    /// refused; it was taken as UNSPEC, keeping the connection's address. LOCAL ignores them.
    func testVersionTwoRefusesAnUndefinedFamilyOrProtocol() {
        let addresses: [UInt8] = [192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2]
        for family: UInt8 in [0x41, 0xF1, 0x13, 0x1F] {
            guard case .invalid = ProxyHeader.parse(signature + [0x21, family, 0x00, 12] + addresses) else {
                return XCTFail("accepted family and protocol \(family)")
            }
            XCTAssertEqual(ProxyHeader.parse(signature + [0x20, family, 0x00, 12] + addresses), .header(length: 28, source: nil, destination: nil))
        }
        XCTAssertEqual(ProxyHeader.parse(signature + [0x21, 0x12, 0x00, 12] + addresses), .header(length: 28, source: nil, destination: nil),
                       "UDP over IPv4 is defined: taken as UNSPEC")
    }

    func testTheCommandsParseAndWriteBack() throws {
        XCTAssertEqual(try Command.parse("server 0 proxy_protocol v2").text, "server 0 proxy_protocol v2")
        XCTAssertEqual(try Command.parse("accept_proxy"), .flag(.acceptProxy, true))
        XCTAssertEqual(try Command.parse("no accept_proxy").text, "no accept_proxy")
        XCTAssertThrowsError(try Command.parse("server 0 proxy_protocol v3")) {
            XCTAssertEqual("\($0)", "server: 'proxy_protocol' takes v1, v2 or off, not 'v3'")
        }
        let configuration = try Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [ServerSpec(host: "127.0.0.1", port: 9000)])
            .applying([ConfigLine(.parse("server 0 proxy_protocol v1")), ConfigLine(.parse("accept_proxy"))])
        XCTAssertEqual(configuration.servers[0].proxyProtocol, .v1)
        XCTAssertTrue(configuration.acceptProxy)
        let written = configuration.commands.map(\.text)
        XCTAssertTrue(written.contains("accept_proxy"), "\(written)")
        XCTAssertTrue(written.contains { $0.hasPrefix("server 0 ") && $0.hasSuffix(" proxy_protocol v1") }, "\(written)")
    }
}
