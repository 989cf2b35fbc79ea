import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Found while reviewing the metrics port: the control socket had the same unbounded idle
/// connections (ControlServer's `ConnectionLimiter(limit: 0)`).
final class ControlReviewTests: XCTestCase {
    /// Clients of the TCP control port that connect and send nothing should hold a bounded
    /// number of descriptors between them, as the metrics port's do; each holds one for 10 s.
    func testIdleControlClientsHoldABoundedNumberOfDescriptors() throws {
        let a = try Backend("A")
        defer { a.stop() }
        let controlPort = freePort()
        let penha = try Penha(["-C", "127.0.0.1:\(controlPort)"], servers: ["127.0.0.1:\(a.port)"])
        defer { penha.stop() }
        let pid = penha.process.processIdentifier
        let before = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        var idle: [Client] = []
        for _ in 0..<60 { idle.append(try Client(port: controlPort)) }
        // Bounded wait for penha to accept what it will: 3 s, in steps of 50 ms.
        var held = 0
        for _ in 0..<60 {
            held = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count - before
            if held >= 60 { break }
            usleep(50_000)
        }
        XCTAssertLessThanOrEqual(held, 16 + 2, "60 idle control clients hold \(held) descriptors")
    }
}
