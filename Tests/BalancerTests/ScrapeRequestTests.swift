import NIOCore
import XCTest

@testable import BalancerCore

/// The metrics server's request heads: what NIOHTTP1 read for it before, bounded.
final class ScrapeRequestTests: XCTestCase {
    private func read(_ pieces: [String]) -> [ScrapeRequestReader.Outcome] {
        var reader = ScrapeRequestReader()
        return pieces.map { reader.read(ByteBuffer(string: $0)) }
    }

    func testAHeadIsReadWhateverItsPieces() {
        let head = "GET /metrics?name[]=x HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"
        for split in 0...head.utf8.count {
            let bytes = Array(head.utf8)
            let outcomes = read([String(decoding: bytes[..<split], as: UTF8.self), String(decoding: bytes[split...], as: UTF8.self)])
            XCTAssertEqual(outcomes.last, .request(method: "GET", path: "/metrics"), "split at \(split)")
            XCTAssertEqual(outcomes.first, split == bytes.count ? .request(method: "GET", path: "/metrics") : .incomplete)
        }
        XCTAssertEqual(read(["\r\nHEAD / HTTP/1.0\n\n"]), [.request(method: "HEAD", path: "/")], "LF alone, an empty line first")
    }

    func testWhatIsNotAnHTTP1HeadIsMalformed() {
        for text in ["SSH-2.0-OpenSSH_9.2\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
                     "PRI * HTTP/2.0\r\n\r\n", "GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n"] {
            XCTAssertEqual(read([text]).last, .malformed, text)
        }
        // Bounded: a head that never ends is refused once it passes the bound.
        var reader = ScrapeRequestReader()
        XCTAssertEqual(reader.read(ByteBuffer(string: "GET /metrics HTTP/1.1\r\n")), .incomplete)
        let field = "X-Padding: " + String(repeating: "a", count: 100) + "\r\n"
        var outcome = ScrapeRequestReader.Outcome.incomplete
        var fields = 0
        while outcome == .incomplete && fields < 1000 {
            outcome = reader.read(ByteBuffer(string: field))
            fields += 1
        }
        XCTAssertEqual(outcome, .malformed)
        XCTAssertLessThanOrEqual(fields * field.utf8.count, ScrapeRequestReader.maxHeadBytes + field.utf8.count)
    }

    func testAResponseAnnouncesItsLengthAndCloses() {
        let response = ScrapeRequestReader.response(status: 200, reason: "OK", contentType: "text/plain", body: [], length: 42)
        XCTAssertEqual(String(decoding: response, as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 42\r\nConnection: close\r\n\r\n")
    }
}
