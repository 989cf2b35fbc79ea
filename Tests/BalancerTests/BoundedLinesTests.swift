import XCTest
@testable import Balancer
@testable import BalancerCore

final class BoundedLinesTests: XCTestCase {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testLinesSplitAcrossChunksAreJoined() {
        var lines = BoundedLines(limit: 10)
        XCTAssertEqual(lines.feed(bytes("ab")), [])
        XCTAssertEqual(lines.feed(bytes("c\nde\n\nf")), [.line(bytes("abc")), .line(bytes("de")), .line([])])
        XCTAssertEqual(lines.finish(), .line(bytes("f")), "a last line without a newline")
        XCTAssertNil(lines.finish())
    }

    func testAnOverlongLineIsReportedOnceAndDropped() {
        var lines = BoundedLines(limit: 4)
        XCTAssertEqual(lines.feed(bytes("1234\n12")), [.line(bytes("1234"))], "the limit itself is taken")
        XCTAssertEqual(lines.feed(bytes("345")), [.overlong])
        XCTAssertEqual(lines.feed(bytes("6789")), [], "the rest of it is dropped without holding it")
        XCTAssertEqual(lines.feed(bytes("0\nok\n")), [.line(bytes("ok"))])
        XCTAssertEqual(lines.feed(bytes("toolong")), [.overlong])
        XCTAssertNil(lines.finish(), "an overlong last line is not handed out")
    }

    func testEveryChunkingGivesTheSameLines() {
        let stream = bytes("one\ntwo is long\n\nthree\nfour")
        var whole = BoundedLines(limit: 6)
        let expected = whole.feed(stream) + [whole.finish()].compactMap { $0 }
        XCTAssertEqual(expected, [.line(bytes("one")), .overlong, .line([]), .line(bytes("three")), .line(bytes("four"))])
        for size in 1...stream.count {
            var lines = BoundedLines(limit: 6)
            var result: [BoundedLines.Line] = []
            for start in stride(from: 0, to: stream.count, by: size) {
                result += lines.feed(stream[start..<min(start + size, stream.count)])
            }
            result += [lines.finish()].compactMap { $0 }
            XCTAssertEqual(result, expected, "chunks of \(size)")
        }
    }
}
