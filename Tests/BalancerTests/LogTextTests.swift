import XCTest
@testable import BalancerCore

final class LogTextTests: XCTestCase {
    func testEveryByteOutsidePrintableASCIIIsEscapedAsApacheDoes() {
        let all = (0...255).map(UInt8.init)
        let escaped = LogText.escaped(all)
        XCTAssertTrue(escaped.allSatisfy { (0x20...0x7E).contains($0) }, "only printable ASCII comes out")
        XCTAssertEqual(LogText.escaped([0x08, 0x09, 0x0A, 0x0B, 0x0D, 0x00, 0x1B, 0x7F, 0x80, 0x9B, 0xFF]),
                       Array(#"\b\t\n\v\r\x00\x1b\x7f\x80\x9b\xff"#.utf8))
        XCTAssertEqual(LogText.escaped("café \u{1b}[31m"), #"caf\xc3\xa9 \x1b[31m"#)
    }

    /// Printable text, backslashes and quotes included, passes as it is: escaping twice
    /// changes nothing, so a web server's escaped line is kept byte for byte.
    func testEscapingIsIdempotent() {
        let printable = String(decoding: (0x20...0x7E).map(UInt8.init), as: UTF8.self)
        XCTAssertEqual(LogText.escaped(printable), printable)
        let once = LogText.escaped("a\u{1b}b\\x1b\"\n")
        XCTAssertEqual(LogText.escaped(once), once)
    }
}
