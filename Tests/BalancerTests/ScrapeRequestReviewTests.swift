import BalancerCore
import NIOCore
import XCTest

/// Hostile review of the metrics request's head.
final class ScrapeRequestReviewTests: XCTestCase {
    private func outcome(_ text: String) -> ScrapeRequestReader.Outcome {
        var reader = ScrapeRequestReader()
        return reader.read(ByteBuffer(string: text))
    }

    /// RFC 9112 3.2.2: a server must accept the absolute form (`GET http://host/metrics`,
    /// what a client sends through a proxy); its path is the one the origin form has.
    func testTheAbsoluteFormNamesTheSamePath() {
        XCTAssertEqual(outcome("GET http://192.0.2.1:9100/metrics HTTP/1.1\r\nHost: 192.0.2.1:9100\r\n\r\n"),
                       .request(method: "GET", path: "/metrics"))
        XCTAssertEqual(outcome("GET HTTPS://[2001:db8::1]:9100/metrics?x=1 HTTP/1.1\r\n\r\n"),
                       .request(method: "GET", path: "/metrics"))
        XCTAssertEqual(outcome("GET http://192.0.2.1:9100 HTTP/1.1\r\n\r\n"), .request(method: "GET", path: "/"),
                       "an empty path is /")
        XCTAssertEqual(outcome("GET http://192.0.2.1:9100?metrics HTTP/1.1\r\n\r\n"), .request(method: "GET", path: "/"))
        XCTAssertEqual(outcome("GET /metrics HTTP/1.1\r\n\r\n"), .request(method: "GET", path: "/metrics"))
    }
}
