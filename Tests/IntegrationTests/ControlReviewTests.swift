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
        let (idle, held) = try penha.idleClients(60, port: controlPort)
        XCTAssertLessThanOrEqual(held, 16 + 2, "60 idle control clients hold \(held) descriptors")
        withExtendedLifetime(idle) {}
    }
}
