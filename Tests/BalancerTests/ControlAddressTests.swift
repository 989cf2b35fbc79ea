import BalancerCore
import XCTest

/// `-C` and `penha ctl`'s address rule: all digits is a port on loopback, a ':' makes
/// host:port, anything else is a Unix socket path, relative ones included.
final class ControlAddressTests: XCTestCase {
    func testPortsHostPortsAndPathsAbsoluteOrRelative() throws {
        let cases: [(String, Endpoint)] = [
            ("8888", .inet(host: "127.0.0.1", port: 8888)),
            ("127.0.0.2:8888", .inet(host: "127.0.0.2", port: 8888)),
            ("localhost:8888", .inet(host: "127.0.0.1", port: 8888)),
            ("[::1]:8888", .inet(host: "::1", port: 8888)),
            ("/run/penha/penha.sock", .unix(path: "/run/penha/penha.sock")),
            ("a.sock", .unix(path: "a.sock")),
            ("control", .unix(path: "control")),
            ("run/a:b.sock", .unix(path: "run/a:b.sock")),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try Endpoint.controlAddress(text), expected, text)
        }
    }

    func testMalformedAddressesAreRefusedWithTheirReason() {
        let cases: [(String, String)] = [
            ("", "empty"),
            ("0", "1-65535"),
            ("70000", "1-65535"),
            ("99999999999999999999999", "1-65535"),
            ("127.0.0.1", "expected host:port"),
            ("127.0.0.1:x", "127.0.0.1:x"),
            ("penha.example:80", "not a host name"),
        ]
        for (text, reason) in cases {
            XCTAssertThrowsError(try Endpoint.controlAddress(text), text) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(text): \(error)")
            }
        }
    }
}
