import XCTest
@testable import Balancer
@testable import BalancerCore

final class AccessLogLineTests: XCTestCase {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    func testCommonFormatIsCutWhereMergelogsCutsIt() throws {
        let line = try XCTUnwrap(AccessLogLine(bytes("10.0.18.6 - frank [09/Jan/2002:00:28:50 +0100] \"GET /news.html HTTP/1.0\" 200 4017\n")))
        XCTAssertEqual(text(line.client), "10.0.18.6")
        XCTAssertEqual(text(line.beforeTime), "- frank ")
        XCTAssertEqual(text(line.timeText), "09/Jan/2002:00:28:50 +0100")
        XCTAssertEqual(line.time, 1010532530, "23:28:50 UTC on 8 January 2002")
        XCTAssertEqual(text(line.beforeRequest), " ")
        XCTAssertEqual(text(line.request), "GET /news.html HTTP/1.0")
        XCTAssertEqual(text(line.rest), " 200 4017")
    }

    func testCombinedFormatKeepsRefererAndAgent() throws {
        let original = "127.0.0.1 - - [01/Dec/2026:21:45:00 +0000] \"GET /a?b=1 HTTP/1.1\" 404 12 \"http://example.com/\" \"curl/8.0\"\n"
        let line = try XCTUnwrap(AccessLogLine(bytes(original)))
        XCTAssertEqual(text(line.request), "GET /a?b=1 HTTP/1.1")
        XCTAssertEqual(text(line.rest), " 404 12 \"http://example.com/\" \"curl/8.0\"")
        XCTAssertEqual(text(line.line(client: bytes("192.0.2.1"))),
                       "192.0.2.1 - - [01/Dec/2026:21:45:00 +0000] \"GET /a?b=1 HTTP/1.1\" 404 12 \"http://example.com/\" \"curl/8.0\"\n")
    }

    func testRewritingTheClientKeepsEverythingElse() throws {
        let original = "127.0.0.1 - - [09/Jan/2002:00:28:50 +0100] \"GET / HTTP/1.0\" 200 1\n"
        let line = try XCTUnwrap(AccessLogLine(bytes(original)))
        XCTAssertEqual(text(line.line(client: line.client)), original)
        XCTAssertEqual(text(line.mergedLine(client: bytes("198.51.100.4"))),
                       "198.51.100.4 - - [08/Jan/2002:23:28:50 +0000] \"GET / HTTP/1.0\" 200 1\n",
                       "mergelogs writes the time in UTC")
    }

    func testAnEscapedQuoteDoesNotEndTheRequest() throws {
        let line = try XCTUnwrap(AccessLogLine(bytes("1.2.3.4 - - [01/Jan/2020:00:00:00 +0000] \"GET /\\\"x HTTP/1.0\" 400 0")))
        XCTAssertEqual(text(line.request), "GET /\\\"x HTTP/1.0")
        XCTAssertEqual(text(line.rest), " 400 0")
    }

    /// A datagram from anyone reaches logd: what no web server writes raw is written escaped,
    /// and a web server's own escapes pass unchanged.
    func testControlCharactersAreWrittenEscaped() throws {
        let forged = bytes("1.2.3.4 - \u{1b}]0;x\u{07} [01/Jan/2020:00:00:00 +0000] \"GET /\u{1b}[2J\\x1b HTTP/1.0\" 200 0 \"\u{9b}6n\"")
        let line = try XCTUnwrap(AccessLogLine(forged))
        XCTAssertEqual(text(line.line(client: bytes("192.0.2.1"))),
                       #"192.0.2.1 - \x1b]0;x\x07 [01/Jan/2020:00:00:00 +0000] "GET /\x1b[2J\x1b HTTP/1.0" 200 0 "\xc2\x9b6n""# + "\n")
    }

    func testTimesAreReadAndWrittenInUTC() {
        XCTAssertEqual(AccessLogLine.parseTime(bytes("01/Jan/1970:00:00:00 +0000")), 0)
        XCTAssertEqual(AccessLogLine.parseTime(bytes("29/Feb/2024:12:00:00 -0130")), 1709213400)
        XCTAssertEqual(AccessLogLine.parseTime(bytes("31/Dec/2099:23:59:59 +0000")), 4102444799)
        XCTAssertEqual(AccessLogLine.formatTime(1709213400), "29/Feb/2024:13:30:00 +0000")
        XCTAssertEqual(AccessLogLine.formatTime(4102444799), "31/Dec/2099:23:59:59 +0000")
        for time in stride(from: 0, to: 4_000_000_000, by: 7_777_777) {
            XCTAssertEqual(AccessLogLine.parseTime(bytes(AccessLogLine.formatTime(time))), time)
        }
    }

    func testBadTimesAreRefused() {
        for time in ["", "01/Jan/1970:00:00:00", "01/Foo/2020:00:00:00 +0000", "32/Jan/2020:00:00:00 +0000",
                     "00/Jan/2020:00:00:00 +0000", "01/Jan/2020:24:00:00 +0000", "01/Jan/2020:00:60:00 +0000",
                     "01/Jan/2020:00:00:61 +0000", "01/Jan/2020:00:00:00 +2500", "01/Jan/2020:00:00:00 0000",
                     "01/Jan/1969:00:00:00 +0000", "1/Jan/2020:00:00:00 +0000x", "01/Jan/2020:00:00:00 +00000",
                     "+1/Jan/2020:00:00:00 +0000 "] {
            XCTAssertNil(AccessLogLine.parseTime(bytes(time)), time)
        }
    }

    func testLinesInNeitherFormatAreRefused() {
        for line in ["", "garbage", "127.0.0.1 - - 01/Jan/2020:00:00:00 +0000 \"GET /\" 200 1",
                     "127.0.0.1 - - [01/Jan/2020:00:00:00 +0000 \"GET /\" 200 1",
                     "127.0.0.1 - - [not a time] \"GET /\" 200 1",
                     "127.0.0.1 - - [01/Jan/2020:00:00:00 +0000] GET / 200 1",
                     "127.0.0.1 - - [01/Jan/2020:00:00:00 +0000] \"GET / 200 1",
                     " - - [01/Jan/2020:00:00:00 +0000] \"GET /\" 200 1",
                     "127.0.0.1 - - [01/Jan/2020:00:00:00 +0000] \"GET /\" 200 1\n127.0.0.2 x",
                     "127.0.0.1 1796161500 127.0.0.2 GET /some/path?q=1 HTTP/1.1"] {
            XCTAssertNil(AccessLogLine(bytes(line)), line)
        }
        XCTAssertNil(AccessLogLine([0x31, 0x01, 0x20] + bytes("- - [01/Jan/2020:00:00:00 +0000] \"GET /\" 200 1")),
                     "a client with a control character")
        let overlong = "127.0.0.1 - - [01/Jan/2020:00:00:00 +0000] \"GET /" + String(repeating: "a", count: PenLogLine.maxLineBytes) + "\" 200 1"
        XCTAssertNil(AccessLogLine(bytes(overlong)))
    }
}
