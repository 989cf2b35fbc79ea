import NIOCore
import TestSupport
import XCTest
@testable import Balancer
@testable import BalancerCore

/// X-Forwarded-For in HTTP mode: the rewriter fed bytes directly, and the handler in a channel.
final class ForwardedForTests: XCTestCase {
    private static let client = "192.0.2.7"
    private static let added = "X-Forwarded-For: 192.0.2.7\r\n"

    /// The rewriter's output for `pieces`, fed one read each.
    private func rewrite(_ pieces: [[UInt8]], maxHeadLength: Int = ForwardedForRewriter.defaultMaxHeadLength) -> String {
        var rewriter = ForwardedForRewriter(clientAddress: Self.client, maxHeadLength: maxHeadLength)
        var output: [UInt8] = []
        for piece in pieces {
            output += rewriter.process(ByteBuffer(bytes: piece)).readableBytesView
        }
        return String(decoding: output, as: UTF8.self)
    }

    private func rewrite(_ pieces: String..., maxHeadLength: Int = ForwardedForRewriter.defaultMaxHeadLength) -> String {
        rewrite(pieces.map { Array($0.utf8) }, maxHeadLength: maxHeadLength)
    }

    func testEachHeadGetsTheHeaderBeforeItsBlankLine() {
        XCTAssertEqual(rewrite("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "GET / HTTP/1.1\r\nHost: a\r\n\(Self.added)\r\n")
        XCTAssertEqual(rewrite("GET /index.html HTTP/1.0\r\n\r\n"), "GET /index.html HTTP/1.0\r\n\(Self.added)\r\n")
        // Bare LF line ends: the new line ends the same way.
        XCTAssertEqual(rewrite("GET / HTTP/1.1\nHost: a\n\n"), "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 192.0.2.7\n\n")
        // RFC 9112 §2.2: empty lines before a request line are ignored, and passed on.
        XCTAssertEqual(rewrite("\r\nGET / HTTP/1.1\r\n\r\n"), "\r\nGET / HTTP/1.1\r\n\(Self.added)\r\n")
        XCTAssertEqual(rewrite("GET / HTTP/1.1\r\n"), "", "an incomplete head is held back")
    }

    func testAnExistingHeaderGetsTheAddressAppendedWhateverTheCaseOfItsName() {
        for name in ["X-Forwarded-For", "x-forwarded-for", "X-FORWARDED-FOR", "x-FoRwArDeD-fOr"] {
            XCTAssertEqual(rewrite("GET / HTTP/1.1\r\n\(name): 10.0.0.1\r\nHost: a\r\n\r\n"),
                           "GET / HTTP/1.1\r\n\(name): 10.0.0.1, 192.0.2.7\r\nHost: a\r\n\r\n")
        }
        // Several fields make one list: the address goes at its end. Whitespace stays where it was.
        XCTAssertEqual(rewrite("GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For:\t10.0.0.2 \r\n\r\n"),
                       "GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For:\t10.0.0.2, 192.0.2.7 \r\n\r\n")
        XCTAssertEqual(rewrite("GET / HTTP/1.1\r\nX-Forwarded-For: \r\n\r\n"), "GET / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n")
        // A name that merely starts the same is another field.
        XCTAssertEqual(rewrite("GET / HTTP/1.1\r\nX-Forwarded-Fort: 1\r\n\r\n"),
                       "GET / HTTP/1.1\r\nX-Forwarded-Fort: 1\r\n\(Self.added)\r\n")
    }

    func testPipelinedRequestsInOneReadEachGetTheHeader() {
        XCTAssertEqual(rewrite("GET /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\n"),
                       "GET /a HTTP/1.1\r\nHost: a\r\n\(Self.added)\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\(Self.added)\r\n")
    }

    func testAContentLengthBodyPassesUntouchedAndTheNextRequestIsRewritten() {
        let body = "x\r\n\r\nX-Forwarded-For: forged\r\n\r\nGET /inner HTTP/1.1\r\n\r\n"
        let post = "POST /form HTTP/1.1\r\ncontent-length: \(body.utf8.count)\r\n\r\n"
        let next = "GET /next HTTP/1.1\r\n\r\n"
        XCTAssertEqual(rewrite(post + body + next),
                       "POST /form HTTP/1.1\r\ncontent-length: \(body.utf8.count)\r\n\(Self.added)\r\n"
                           + body + "GET /next HTTP/1.1\r\n\(Self.added)\r\n")
        // RFC 9110 §8.6: a list of one length repeated is that length.
        XCTAssertEqual(rewrite("PUT / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nok" + next),
                       "PUT / HTTP/1.1\r\nContent-Length: 2, 2\r\n\(Self.added)\r\nok" + "GET /next HTTP/1.1\r\n\(Self.added)\r\n")
        // A length of zero: the next bytes are the next head.
        XCTAssertEqual(rewrite("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + next),
                       "POST / HTTP/1.1\r\nContent-Length: 0\r\n\(Self.added)\r\n" + "GET /next HTTP/1.1\r\n\(Self.added)\r\n")
    }

    private static let chunkedBody = "4;name=value\r\nWiki\r\n5 ; q=\"a;b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
        + "00;last\r\nTrailer-Field: GET / HTTP/1.1\r\nX-Forwarded-For: forged\r\n\r\n"

    func testAChunkedBodyWithExtensionsAndTrailersPassesUntouched() {
        let post = "POST /upload HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
        XCTAssertEqual(rewrite(post + Self.chunkedBody + "GET /next HTTP/1.1\r\n\r\n"),
                       "POST /upload HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\(Self.added)\r\n"
                           + Self.chunkedBody + "GET /next HTTP/1.1\r\n\(Self.added)\r\n")
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length. Bare LFs end the lines too.
        let body = "3\nabc\n0\n\n"
        XCTAssertEqual(rewrite("POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n" + body
                                   + "GET /next HTTP/1.1\r\n\r\n"),
                       "POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\(Self.added)\r\n" + body
                           + "GET /next HTTP/1.1\r\n\(Self.added)\r\n")
    }

    func testEverySplitOfTheStreamGivesTheSameOutputAsOneRead() {
        let stream = Array(("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + Self.chunkedBody
                            + "POST /b HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 9\r\n\r\nab\r\n\r\ncd\n"
                            + "GET /c HTTP/1.1\r\n\r\n").utf8)
        let whole = rewrite([stream])
        XCTAssertEqual(whole.components(separatedBy: "192.0.2.7").count, 4, whole)

        for split in 1..<stream.count {
            XCTAssertEqual(rewrite([Array(stream[..<split]), Array(stream[split...])]), whole, "split at \(split)")
        }
        XCTAssertEqual(rewrite(stream.map { [$0] }), whole, "byte by byte")

        var random = SplitMix64(seed: 5)
        for round in 0..<200 {
            var pieces: [[UInt8]] = []
            var start = 0
            while start < stream.count {
                let end = min(stream.count, start + Int.random(in: 1...40, using: &random))
                pieces.append(Array(stream[start..<end]))
                start = end
            }
            XCTAssertEqual(rewrite(pieces), whole, "round \(round): \(pieces.map(\.count))")
        }
    }

    func testBytesThatAreNotHTTPPassThroughUnchangedAtOnce() {
        let clientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]
        XCTAssertEqual(rewrite([clientHello]), String(decoding: clientHello, as: UTF8.self))
        for stream in [
            "SSH-2.0-OpenSSH_9.2p1\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  // HTTP/2's preface
            "GET / HTTP/0.9\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            " GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 \r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\nGET / HTTP/1.1\r\n\r\n",  // RFC 9112 §5.1
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  // obs-fold, §5.2
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
        ] {
            XCTAssertEqual(rewrite(stream), stream)
            XCTAssertEqual(rewrite(Array(stream.utf8).map { [$0] }), stream, "byte by byte")
        }
        // Nothing is held back once the stream cannot be a request.
        var rewriter = ForwardedForRewriter(clientAddress: Self.client)
        XCTAssertEqual(String(buffer: rewriter.process(ByteBuffer(string: "GE"))), "")
        XCTAssertEqual(String(buffer: rewriter.process(ByteBuffer(string: "T\u{1}"))), "GET\u{1}")
        // After a request, what is not a request passes on, and everything after it.
        XCTAssertEqual(rewrite("GET / HTTP/1.1\r\n\r\n\u{0}\u{1}GET / HTTP/1.1\r\n\r\n"),
                       "GET / HTTP/1.1\r\n\(Self.added)\r\n\u{0}\u{1}GET / HTTP/1.1\r\n\r\n")
    }

    func testAHeadLongerThanTheBoundPassesThroughAndSoDoesTheRest() {
        let long = "GET / HTTP/1.1\r\nCookie: \(String(repeating: "c", count: 200))\r\n\r\nGET / HTTP/1.1\r\n\r\n"
        XCTAssertEqual(rewrite(long, maxHeadLength: 100), long)
        XCTAssertEqual(rewrite(Array(long.utf8).map { [$0] }, maxHeadLength: 100), long)
        // At most the bound is held back.
        var rewriter = ForwardedForRewriter(clientAddress: Self.client, maxHeadLength: 100)
        let bytes = Array(long.utf8)
        XCTAssertEqual(rewriter.process(ByteBuffer(bytes: bytes[..<100])).readableBytes, 0)
        XCTAssertEqual(rewriter.process(ByteBuffer(bytes: bytes[100..<101])).readableBytes, 101)
        // A head exactly at the bound is still rewritten.
        let fields = "GET / HTTP/1.1\r\nA: \(String(repeating: "a", count: 100 - 23))\r\n"
        XCTAssertEqual((fields + "\r\n").utf8.count, 100)
        XCTAssertEqual(rewrite(fields + "\r\n", maxHeadLength: 100), fields + Self.added + "\r\n")
        // The default bound is 64 KiB.
        let huge = "GET / HTTP/1.1\r\nCookie: \(String(repeating: "c", count: 64 * 1024))\r\n\r\n"
        XCTAssertEqual(rewrite(huge), huge)
    }

    func testAfterUpgradeOrConnectTheStreamPassesThrough() {
        // What follows would be rewritten if it were still HTTP.
        let frames = "GET /tunnelled HTTP/1.1\r\n\r\n\u{81}\u{85}"
        XCTAssertEqual(rewrite("GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + frames),
                       "GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\(Self.added)\r\n" + frames)
        XCTAssertEqual(rewrite("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + frames),
                       "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\(Self.added)\r\n" + frames)
    }

    func testABodyOfUnknownLengthEndsTheRewriting() {
        let next = "GET /next HTTP/1.1\r\n\r\n"
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 12a\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n",  // RFC 9112 §6.3 rule 4
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n",  // §6.1
        ] {
            XCTAssertEqual(rewrite(head + "\r\n" + "0\r\n\r\n" + next), head + Self.added + "\r\n" + "0\r\n\r\n" + next, head)
        }
        let post = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        for body in ["zz\r\n", ";x\r\n", "10000000000000000\r\n", "1\r\nab\r\n"] {
            XCTAssertEqual(rewrite(post + "\r\n" + body + "0\r\n\r\n" + next),
                           post + Self.added + "\r\n" + body + "0\r\n\r\n" + next, body)
        }
    }
}

