import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore

final class LogThrottleTests: XCTestCase {
    func testOneMessageASecondAndTheNextSaysHowManyWereHeldBack() {
        var throttle = LogThrottle(interval: .seconds(1))
        XCTAssertEqual(throttle.admit(now: at(0)), 0, "the first is logged")
        XCTAssertNil(throttle.admit(now: at(0.1)))
        XCTAssertNil(throttle.admit(now: at(0.5)))
        XCTAssertNil(throttle.admit(now: at(0.99)))
        XCTAssertEqual(throttle.admit(now: at(1.0)), 3, "a second later, with the three held back")
        XCTAssertEqual(throttle.admit(now: at(5)), 0, "nothing held back since")
        XCTAssertNil(throttle.admit(now: at(5.5)))
    }
}
