import XCTest
@testable import Engine

#if canImport(Glibc)
import Glibc
#endif

/// The one wrapper for the engine's system calls: errno read once, EINTR retried with a bound.
final class SystemCallResultTests: XCTestCase {
    /// A call that fails with each of `codes` in turn, then returns `result`.
    private func call(failing codes: [Int32], then result: Int) -> (SystemCallResult, Int) {
        var calls = 0
        let outcome = SystemCallResult {
            defer { calls += 1 }
            guard calls < codes.count else { return result }
            errno = codes[calls]
            return -1
        }
        return (outcome, calls)
    }

    func testEachOutcome() {
        XCTAssertEqual(call(failing: [], then: 42).0, .done(42))
        XCTAssertEqual(call(failing: [], then: 0).0, .done(0), "a read's 0 is the peer's FIN, not a failure")
        XCTAssertEqual(call(failing: [EAGAIN], then: 1).0, .wouldBlock)
        XCTAssertEqual(call(failing: [ECONNRESET], then: 1).0, .failed(ECONNRESET))
    }

    func testAnInterruptedCallIsMadeAgainAndAtMostABoundedNumberOfTimes() {
        let (retried, calls) = call(failing: [EINTR, EINTR], then: 7)
        XCTAssertEqual(retried, .done(7))
        XCTAssertEqual(calls, 3)
        let interrupts = [Int32](repeating: EINTR, count: 100)
        let (endless, attempts) = call(failing: interrupts, then: 7)
        XCTAssertEqual(endless, .failed(EINTR))
        XCTAssertEqual(attempts, SystemCallResult.interruptRetries)
    }
}
