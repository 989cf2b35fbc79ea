import XCTest
@testable import Balancer
@testable import BalancerCore

/// Inputs the fuzz targets in Fuzz/ found, kept as regular tests.
final class FuzzFindingsTests: XCTestCase {
    /// FuzzCommand: `source\t\u{301}x` parsed to `source "\u{301}x"`, whose text
    /// `source \u{301}x` did not parse, since a space and a combining mark are one Character.
    func testWordStartingWithCombiningMarkSurvivesTheRoundTrip() throws {
        for line in ["source\t\u{301}x", "log\r\u{301}", "server 0\taddress\t\u{20DD}www"] {
            let command = try Command.parse(line)
            XCTAssertEqual(try Command.parse(command.text), command, "round trip of \(line.debugDescription)")
        }
    }

    /// `log /tmp/a#b` from the control socket was taken, and `write` saved a line whose `#b`
    /// reads back as a comment.
    func testAHashInACommandIsRefusedSinceItWouldNotReadBack() {
        XCTAssertThrowsError(try Command.parse("log /tmp/a#b")) { XCTAssertTrue("\($0)".contains("'#'"), "\($0)") }
    }

    /// FuzzCommand: `listen ::\0]:80` took `::\0]` as the address `::` (C stops at the NUL), and
    /// its text `listen [::\0]]:80` did not parse. No command holds a NUL.
    func testANULIsRefusedSinceCReadsTheTextOnlyUpToIt() {
        for line in ["listen ::\0]:80", "source 192.0.2.1\0", "log /tmp/a\0b"] {
            XCTAssertThrowsError(try Command.parse(line), line.debugDescription) { XCTAssertTrue("\($0)".contains("NUL"), "\($0)") }
        }
        XCTAssertNoThrow(try Command.parse("log /tmp/a\u{1B}b"), "other control characters are the log's to escape")
    }
}
