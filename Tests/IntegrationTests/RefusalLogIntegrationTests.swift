import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Refusals a peer causes at will (a client `client_acl` refuses, a scrape the metrics `acl`
/// refuses, a control connection `control_acl` refuses) are logged at most once a second,
/// each line with the count of those held back since the last; every refusal is counted.
final class RefusalLogIntegrationTests: XCTestCase {
    private static let flood = 1000

    /// `refuseOne` `flood` times as fast as it goes (each waits for penha's answer), then
    /// one more at a time (bounded) until the lines account for every refusal; at most one
    /// line a second.
    private func assertThrottled(_ penha: Penha, _ message: String, refuseOne: () throws -> Void,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        let start = Date()
        for _ in 0..<Self.flood { try refuseOne() }
        var refused = Self.flood
        var lines: [Substring] = []
        let heldBack = /\(and (\d+) more since the last one logged\)/
        for _ in 0..<50 {
            // The line a refusal made reaches the test's pipe a moment after the refusal:
            // look after the pause, not at once, or that line is counted one refusal late.
            usleep(100_000)
            lines = penha.stderr.split(separator: "\n").filter { $0.contains(message) }
            let accounted = lines.map { 1 + (($0.firstMatch(of: heldBack)?.1).flatMap { Int($0) } ?? 0) }.reduce(0, +)
            if accounted == refused { break }
            try refuseOne()
            refused += 1
        }
        let seconds = Int(Date().timeIntervalSince(start).rounded(.up))
        XCTAssertLessThanOrEqual(lines.count, seconds + 1, "\(refused) refusals in \(seconds) s: \(lines.count) lines", file: file, line: line)
        let accounted = lines.map { 1 + (($0.firstMatch(of: heldBack)?.1).flatMap { Int($0) } ?? 0) }.reduce(0, +)
        XCTAssertEqual(accounted, refused, "every refusal counted: \(lines.suffix(3))", file: file, line: line)
    }

    func testClientsRefusedByClientACL() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "acl 1 deny 127.0.0.1", "-O", "client_acl 1"], servers: ["127.0.0.1:\(a.port)"])
        try assertThrottled(penha, "client refused by client_acl 1") {
            XCTAssertEqual(try Client(port: penha.port).readToEnd(), [], "closed without a server")
        }
    }

    func testScrapesRefusedByTheMetricsACL() throws {
        let a = try Backend("A")
        let metricsPort = freePort()
        let penha = try Penha(["-O", "acl 3 deny 127.0.0.1", "-O", "metrics 127.0.0.1:\(metricsPort) acl 3"],
                              servers: ["127.0.0.1:\(a.port)"])
        try assertThrottled(penha, "metrics scrape refused by acl 3") {
            let scraper = try Client(port: metricsPort)
            try scraper.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            XCTAssertTrue(String(decoding: try scraper.readToEnd(), as: UTF8.self).hasPrefix("HTTP/1.1 403"))
        }
    }

    func testControlConnectionsRefusedByControlACL() throws {
        let a = try Backend("A")
        let controlPort = freePort()
        let penha = try Penha(["-C", "127.0.0.1:\(controlPort)", "-O", "acl 4 deny 127.0.0.1", "-O", "control_acl 4"],
                              servers: ["127.0.0.1:\(a.port)"])
        try assertThrottled(penha, "control connection refused by control_acl 4") {
            let client = try Client(port: controlPort)
            try client.send("status\n")
            XCTAssertEqual(try client.readLine(), "error: access denied by control_acl")
        }
    }
}
