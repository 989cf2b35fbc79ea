import BalancerCore
import XCTest

final class ProgressWatchTests: XCTestCase {
    private func turns(_ counts: [String: UInt64]) -> [ProgressWatch.Turns] {
        counts.sorted { $0.key < $1.key }.map { ProgressWatch.Turns(thread: $0.key, count: $0.value) }
    }

    func testAThreadWhoseCountStandsStillHasStalledUntilItMovesAgain() {
        var watch = ProgressWatch()
        XCTAssertEqual(watch.stalled(turns(["engine 0": 5, "engine 1": 9])), [], "first look: nothing to compare")
        XCTAssertEqual(watch.stalled(turns(["engine 0": 6, "engine 1": 9])), ["engine 1"])
        XCTAssertEqual(watch.stalled(turns(["engine 0": 6, "engine 1": 9])), ["engine 0", "engine 1"])
        XCTAssertEqual(watch.stalled(turns(["engine 0": 7, "engine 1": 10])), [])
    }

    func testAThreadThatStartsOrLeavesBetweenLooksIsNotStalled() {
        var watch = ProgressWatch()
        _ = watch.stalled(turns(["engine 0": 1, "vrrp 51": 1]))
        XCTAssertEqual(watch.stalled(turns(["engine 0": 2, "vrrp 52": 1])), [], "vrrp 52 is new, vrrp 51 gone")
        XCTAssertEqual(watch.stalled(turns(["engine 0": 3, "vrrp 52": 1])), ["vrrp 52"])
    }

    func testACountThatWrapsStillMoves() {
        var watch = ProgressWatch()
        _ = watch.stalled(turns(["engine 0": .max]))
        XCTAssertEqual(watch.stalled(turns(["engine 0": 0])), [])
    }
}
