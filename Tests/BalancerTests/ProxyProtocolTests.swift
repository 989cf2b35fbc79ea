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
        XCTAssertEqual(String(decoding: ProxyHeader.encode(.v1, source: endpoint("192.0.2.7", 1), destination: endpoint("2001:db8::1", 80)), as: UTF8.self),
                       "PROXY UNKNOWN\r\n", "TCP4 and TCP6 cannot mix")
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
