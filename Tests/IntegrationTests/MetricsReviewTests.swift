import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Hostile review of the metrics port (`metrics ADDRESS`): what a scraper that never
/// finishes its request can take from the process.
final class MetricsReviewTests: XCTestCase {
    /// Scrapers that connect and send nothing hold at most `MetricsServer.maxConnections`
    /// descriptors between them (the rest wait in the backlog), and a scrape is served once
    /// they go.
    func testIdleScrapersHoldABoundedNumberOfDescriptors() throws {
        let a = try Backend("A")
        defer { a.stop() }
        let metricsPort = freePort()
        let penha = try Penha(["-O", "metrics 127.0.0.1:\(metricsPort)"], servers: ["127.0.0.1:\(a.port)"])
        defer { penha.stop() }
        var idle = try penha.idleClients(60, port: metricsPort)
        XCTAssertLessThanOrEqual(idle.held, 16 + 2, "60 idle scrapers hold \(idle.held) descriptors")
        idle.clients.removeAll()
        let client = try Client(port: metricsPort, timeout: 10)
        try client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        let response = String(decoding: try client.readToEnd(), as: UTF8.self)
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200"), response)
    }

    /// A scraper the acl refuses is answered as it connects and closed, whether it sends
    /// anything or not: it cannot hold one of the bounded slots for the request timeout.
    func testARefusedScraperIsAnsweredAtOnceAndGoes() throws {
        let a = try Backend("A")
        defer { a.stop() }
        let metricsPort = freePort()
        let penha = try Penha(["-O", "acl 3 deny 127.0.0.1", "-O", "metrics 127.0.0.1:\(metricsPort) acl 3"],
                              servers: ["127.0.0.1:\(a.port)"])
        defer { penha.stop() }
        let before = penha.openFileDescriptors
        // Within 3 s, well before the 10 s a scraper has to send its request.
        let silent = try Client(port: metricsPort, timeout: 3)
        let answer = String(decoding: try silent.readToEnd(), as: UTF8.self)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 403"), answer)
        // Its connection gone from penha while the client keeps it open: 3 s at most, in steps of 50 ms.
        var held = 1
        for _ in 0..<60 where held > 0 {
            usleep(50_000)
            held = penha.openFileDescriptors - before
        }
        XCTAssertEqual(held, 0, "the refused connection is closed")
        let asking = try Client(port: metricsPort, timeout: 3)
        try asking.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        let refused = String(decoding: try asking.readToEnd(), as: UTF8.self)
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 403"), refused)
        XCTAssertTrue(refused.hasSuffix("\r\n\r\naccess denied\n"), refused)
    }
}
