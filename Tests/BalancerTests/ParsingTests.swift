import XCTest
@testable import Balancer
@testable import BalancerCore

final class ParsingTests: XCTestCase {
    func testListenAddresses() throws {
        XCTAssertEqual(try Endpoint.listenAddress("8080"), .inet(host: "0.0.0.0", port: 8080))
        XCTAssertEqual(try Endpoint.listenAddress("127.0.0.1:80"), .inet(host: "127.0.0.1", port: 80))
        XCTAssertEqual(try Endpoint.listenAddress("[::1]:443"), .inet(host: "::1", port: 443))
        XCTAssertEqual(try Endpoint.listenAddress(":::8080"), .inet(host: "::", port: 8080))
        XCTAssertEqual(try Endpoint.listenAddress("/run/penha.sock"), .unix(path: "/run/penha.sock"))
    }

    func testBadListenAddressesNameTheArgument() {
        for bad in ["0", "70000", "host:", "host:port", "[::1]80", "[::1", ":80", "abc", "l::2]:700", "[l::2]:700", "[::1]]:80"] {
            XCTAssertThrowsError(try Endpoint.listenAddress(bad), bad) { error in
                XCTAssertTrue("\(error)".contains(bad), "\(error) should name '\(bad)'")
            }
        }
    }

    func testServerSpecsWithAllFields() throws {
        XCTAssertEqual(try ServerSpec.parse("www1", defaultPort: 80), ServerSpec(host: "www1", port: 80))
        XCTAssertEqual(try ServerSpec.parse("10.0.0.1:8000:10", defaultPort: 80),
                       ServerSpec(host: "10.0.0.1", port: 8000, maxConnections: 10))
        XCTAssertEqual(try ServerSpec.parse("h:81:10:20:3:4", defaultPort: 80),
                       ServerSpec(host: "h", port: 81, maxConnections: 10, hardLimit: 20, weight: 3, priority: 4))
        XCTAssertEqual(try ServerSpec.parse("[2001:db8::1]:8080:5", defaultPort: 80),
                       ServerSpec(host: "2001:db8::1", port: 8080, maxConnections: 5))
        XCTAssertEqual(try ServerSpec.parse("[::1]", defaultPort: 80), ServerSpec(host: "::1", port: 80))
    }

    func testBadServerSpecs() {
        for bad in ["", ":80", "h:0", "h:x", "h:80:-1", "h:80:1:2:3:4:5", "[::1", "[::1]x", "h:80:1:2:w"] {
            XCTAssertThrowsError(try ServerSpec.parse(bad, defaultPort: 80), bad)
        }
        XCTAssertThrowsError(try ServerSpec.parse("h", defaultPort: nil), "a Unix listener needs explicit ports")
    }

    func testCommandsParseAndFormatBack() throws {
        let lines = ["roundrobin", "no roundrobin", "hash", "no hash", "weight", "prio", "no prio",
                     "stubborn", "tcp_nodelay", "no tcp_nodelay", "idle_timeout 30", "blacklist 10", "blacklist",
                     "clients_max 100", "conn_max 0", "timeout 5", "tracking 60", "debug 2", "source 127.0.0.2"]
        for line in lines {
            XCTAssertEqual(try Command.parse(line).text, line)
        }
        XCTAssertEqual(try Command.parse("  weight\t"), .flag(.weight, true))
    }

    func testBadCommandsAreRefusedWithAReason() {
        let cases = ["": "empty", "frobnicate": "unknown command 'frobnicate'", "no": "'no' takes",
                     "no idle_timeout": "'no' takes", "hash 3": "takes no argument", "blacklist x": "non-negative number",
                     "blacklist -1": "non-negative", "timeout 1 2": "at most one", "source": "one IP",
                     "acl 1 permit 10.0.0.256": "bad IPv4 address"]
        for (line, reason) in cases {
            XCTAssertThrowsError(try Command.parse(line), line) { error in
                XCTAssertTrue("\(error)".contains(reason), "'\(line)' gave '\(error)'")
            }
        }
    }

    func testConfigurationAppliesCommands() throws {
        var configuration = Configuration(listen: .inet(host: "0.0.0.0", port: 80), servers: [])
        for line in ["prio", "weight", "hash", "roundrobin", "stubborn", "tcp_nodelay", "idle_timeout 9", "source 127.0.0.2",
                     "blacklist 7", "timeout 4", "conn_max 0", "tracking 5", "clients_max 3"] {
            try configuration.apply(try Command.parse(line))
        }
        let selection = configuration.selection
        XCTAssertEqual([selection.priority, selection.weight, selection.hash, selection.roundRobin, selection.stubborn],
                       [true, true, true, true, true])
        XCTAssertTrue(configuration.tcpNoDelay)
        XCTAssertEqual([configuration.idleTimeoutSeconds, configuration.blacklistSeconds, configuration.connectTimeoutSeconds,
                        configuration.connectionsMax, configuration.trackingSeconds, configuration.clientsMax], [9, 7, 4, 0, 5, 3])
        XCTAssertEqual(configuration.sourceAddress, "127.0.0.2")
        try configuration.apply(.flag(.priority, false))
        XCTAssertFalse(configuration.selection.priority)
        XCTAssertThrowsError(try configuration.apply(.source("not-an-ip")))
        XCTAssertThrowsError(try configuration.apply(.setting(.clientsMax, 0)))
        XCTAssertThrowsError(try configuration.apply(.setting(.blacklist, nil)))
    }
}
