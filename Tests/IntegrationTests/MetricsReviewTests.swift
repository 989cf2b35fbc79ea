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
        let pid = penha.process.processIdentifier
        let before = try descriptors(of: pid)
        var idle: [Client] = []
        for _ in 0..<60 { idle.append(try Client(port: metricsPort)) }
        // Bounded wait for penha to accept what it will: 3 s, in steps of 50 ms.
        var held = 0
        for _ in 0..<60 {
            held = try descriptors(of: pid) - before
            if held >= 60 { break }
            usleep(50_000)
        }
        XCTAssertLessThanOrEqual(held, 16 + 2, "60 idle scrapers hold \(held) descriptors")
        idle.removeAll()
        let client = try Client(port: metricsPort, timeout: 10)
        try client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        let response = String(decoding: try client.readToEnd(), as: UTF8.self)
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200"), response)
    }

    private func descriptors(of pid: Int32) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }
}
