import XCTest
@testable import Balancer
@testable import BalancerCore

final class PenLogLineTests: XCTestCase {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testFileLineIsPensFormat() {
        let line = PenLogLine(client: "192.0.2.7", time: 1796148213, server: "198.51.100.2",
                              request: bytes("GET /some/path?q=1 HTTP/1.1"))
        XCTAssertEqual(String(decoding: line.fileLine, as: UTF8.self),
                       "192.0.2.7 1796148213 198.51.100.2 GET /some/path?q=1 HTTP/1.1\n")
        XCTAssertEqual(String(decoding: line.datagram, as: UTF8.self), "+ 192.0.2.7 198.51.100.2 GET /some/path?q=1 HTTP/1.1\n")
    }

    func testRequestStartIsCutAtTheFirstLineEndAndAtPensLimit() {
        XCTAssertEqual(PenLogLine.requestStart(bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), bytes("GET / HTTP/1.1"))
        XCTAssertEqual(PenLogLine.requestStart(bytes("line one\nline two")), bytes("line one"))
        let long = "GET /" + String(repeating: "a", count: 300) + " HTTP/1.0\r\n"
        XCTAssertEqual(PenLogLine.requestStart(bytes(long)), bytes("GET /" + String(repeating: "a", count: 95)),
                       "pen keeps 100 bytes")
    }

    func testBytesThatAreNotPrintableAreEscapedAsApacheEscapesThem() {
        XCTAssertEqual(PenLogLine.requestStart([0x68, 0x01, 0xFF, 0x1B, 0x09, 0x7F, 0x5C, 0x69]), bytes(#"h\x01\xff\x1b\t\x7f\i"#))
        let line = PenLogLine(client: "192.0.2.7", time: 1, server: "198.51.100.2", request: PenLogLine.requestStart(bytes("GET /\u{1b}[2J")))
        XCTAssertEqual(line.fileLine.filter { $0 < 0x20 }, [0x0A], "no control character but the line's end")
        XCTAssertEqual(PenLogLine(fileLine: line.fileLine), line, "the line reads back")
    }

    /// The field is the escaped request's first 100 bytes, an escape cut at the end too: what
    /// the log tools compare of a web server's (escaped) line.
    func testTheLimitCountsEscapedBytes() {
        let request = bytes("GET /" + String(repeating: "a", count: 93)) + [0x1B, 0x1B, 0x41]
        XCTAssertEqual(PenLogLine.requestStart(request), bytes("GET /" + String(repeating: "a", count: 93) + #"\x"#))
        XCTAssertEqual(PenLogLine.requestStart(Array(repeating: 0x01, count: 100)).count, PenLogLine.requestLimit)
    }

    func testNothingSentIsLoggedAsADash() {
        XCTAssertEqual(PenLogLine.requestStart([]), bytes("-"))
        XCTAssertEqual(PenLogLine.requestStart(bytes("\r\n")), bytes("-"), "an empty first line is no request either")
        XCTAssertEqual(PenLogLine(client: "a", time: 1, server: "b", request: []).request, bytes("-"))
    }

    func testFileLineReadsBack() {
        let line = PenLogLine(client: "2001:db8::5", time: 42, server: "203.0.113.9", request: bytes("POST /x HTTP/1.0"))
        XCTAssertEqual(PenLogLine(fileLine: line.fileLine), line)
        XCTAssertEqual(PenLogLine(fileLine: bytes("10.0.0.1 5 10.0.0.2 GET / HTTP/1.0\r\n"))?.request, bytes("GET / HTTP/1.0"))
    }

    func testDatagramReadsBack() {
        let line = PenLogLine(client: "192.0.2.7", time: 0, server: "198.51.100.2", request: bytes("GET / HTTP/1.1"))
        XCTAssertEqual(PenLogLine(datagram: line.datagram), line)
    }

    func testPensOwnLinesWithControlCharactersAreRead() {
        // pen 0.34 writes bytes below 128 as they are.
        XCTAssertEqual(PenLogLine(fileLine: bytes("127.0.0.1 1 127.0.0.2 hello\u{01}.world"))?.request,
                       bytes("hello\u{01}.world"))
    }

    func testMalformedFileLinesAreRefused() {
        for text in ["", "\n", "garbage", "a b c", "127.0.0.1 notatime 127.0.0.2 GET /", "127.0.0.1 5 127.0.0.2 ",
                     "127.0.0.1  5 127.0.0.2 GET /", "+ 127.0.0.1 127.0.0.2 GET /", "127.0.0.1 5 127.0.0.2 GET\n/ x\n",
                     "127.0.0.1 99999999999999999999999 127.0.0.2 GET /"] {
            XCTAssertNil(PenLogLine(fileLine: bytes(text)), text)
        }
        let overlong = "127.0.0.1 5 127.0.0.2 GET /" + String(repeating: "x", count: PenLogLine.maxLineBytes)
        XCTAssertNil(PenLogLine(fileLine: bytes(overlong)))
    }

    func testMalformedDatagramsAreRefused() {
        for text in ["", "+", "+ ", "+ a b", "+ a b ", "- a b GET /", "+a b GET /", "+ a b GET\n+ c d GET /",
                     "127.0.0.1 5 127.0.0.2 GET /"] {
            XCTAssertNil(PenLogLine(datagram: bytes(text)), text)
        }
        XCTAssertNil(PenLogLine(datagram: bytes("+ a\u{01}b c GET /")), "an address with a control character")
        XCTAssertNil(PenLogLine(datagram: bytes("+ a b GET /" + String(repeating: "x", count: PenLogLine.maxLineBytes))))
    }

    func testAReadRequestIsCutToWhatPenKeeps() {
        let long = "1 1 s GET /" + String(repeating: "b", count: 200)
        XCTAssertEqual(PenLogLine(fileLine: bytes(long))?.request.count, PenLogLine.requestLimit)
    }
}
