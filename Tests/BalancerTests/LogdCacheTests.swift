import XCTest
@testable import Balancer
@testable import BalancerCore

final class LogdCacheTests: XCTestCase {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func pen(_ client: String, _ server: String, _ request: String) -> PenLogLine {
        PenLogLine(client: client, time: 0, server: server, request: bytes(request))
    }

    func testTheNewestLineForAServerAndRequestWins() {
        var cache = LogdCache(capacity: 10)
        cache.add(pen("192.0.2.1", "10.0.0.2", "GET / HTTP/1.0"))
        cache.add(pen("192.0.2.2", "10.0.0.2", "GET / HTTP/1.0"))
        cache.add(pen("192.0.2.3", "10.0.0.3", "GET / HTTP/1.0"))
        XCTAssertEqual(cache.client(server: "10.0.0.2", request: bytes("GET / HTTP/1.0")), "192.0.2.2")
        XCTAssertEqual(cache.client(server: "10.0.0.3", request: bytes("GET / HTTP/1.0")), "192.0.2.3")
        XCTAssertNil(cache.client(server: "10.0.0.4", request: bytes("GET / HTTP/1.0")))
        XCTAssertNil(cache.client(server: "10.0.0.2", request: bytes("GET /x HTTP/1.0")))
        XCTAssertEqual(cache.client(server: "10.0.0.2", request: bytes("GET / HTTP/1.0")), "192.0.2.2", "a match does not use it up")
    }

    func testRequestsAreComparedInWhatPenKeeps() {
        var cache = LogdCache()
        let long = "GET /" + String(repeating: "y", count: 300)
        cache.add(pen("192.0.2.1", "10.0.0.2", long))
        XCTAssertEqual(cache.client(server: "10.0.0.2", request: bytes(long + " HTTP/1.1")), "192.0.2.1")
    }

    func testTheCacheHoldsAtMostItsCapacityAndForgetsTheOldest() {
        var cache = LogdCache(capacity: 3)
        for index in 0..<10 { cache.add(pen("192.0.2.\(index)", "10.0.0.2", "GET /\(index)")) }
        XCTAssertEqual(cache.count, 3)
        XCTAssertNil(cache.client(server: "10.0.0.2", request: bytes("GET /6")))
        for index in 7..<10 { XCTAssertEqual(cache.client(server: "10.0.0.2", request: bytes("GET /\(index)")), "192.0.2.\(index)") }
    }

    func testDroppingAnOldLineKeepsANewerOneForTheSameKey() {
        var cache = LogdCache(capacity: 2)
        cache.add(pen("192.0.2.1", "10.0.0.2", "GET /"))
        cache.add(pen("192.0.2.2", "10.0.0.2", "GET /"))
        cache.add(pen("192.0.2.3", "10.0.0.2", "GET /other"))
        XCTAssertEqual(cache.client(server: "10.0.0.2", request: bytes("GET /")), "192.0.2.2",
                       "the dropped line was older than the one the key points at")
        cache.add(pen("192.0.2.4", "10.0.0.2", "GET /other"))
        XCTAssertNil(cache.client(server: "10.0.0.2", request: bytes("GET /")), "now both are gone")
    }

    func testTheDaemonRewritesWebLinesFromTheServersAddress() {
        var daemon = LogDaemon(capacity: 10)
        XCTAssertNil(daemon.receive(bytes("+ 192.0.2.7 10.0.0.2 GET /a HTTP/1.1\n"), from: "10.0.0.9"),
                     "a pen line is cached, not written; where it comes from does not matter")
        let web = "10.0.0.1 - - [01/Dec/2026:12:00:00 +0000] \"GET /a HTTP/1.1\" 200 2\n"
        XCTAssertEqual(daemon.receive(bytes(web), from: "10.0.0.2").map { String(decoding: $0, as: UTF8.self) },
                       "192.0.2.7 - - [01/Dec/2026:12:00:00 +0000] \"GET /a HTTP/1.1\" 200 2\n")
        XCTAssertEqual(daemon.receive(bytes(web), from: "10.0.0.3").map { String(decoding: $0, as: UTF8.self) }, web,
                       "another server's line is written as it came")
        XCTAssertEqual(daemon.receive(bytes(String(web.dropLast())), from: "10.0.0.3").map { String(decoding: $0, as: UTF8.self) },
                       web, "a line without its newline gets one")
        XCTAssertEqual(daemon.counts, LogDaemon.Counts(penLines: 1, rewritten: 1, unmatched: 2, skipped: 0))
    }

    func testTheDaemonSkipsAndCountsWhatIsNeitherLine() {
        var daemon = LogDaemon()
        let garbage: [[UInt8]] = [
            [], bytes("\n"), bytes("garbage"), bytes("+ only two"), bytes("+ a b GET /\n+ c d GET /"),
            [0xFF, 0xFE, 0x00, 0x01], bytes("10.0.0.1 - - [bad] \"GET /\" 200 1"),
            bytes("10.0.0.1 - - [01/Dec/2026:12:00:00 +0000] \"GET / HTTP/1.1\" 200 2\n10.0.0.1 forged line"),
            bytes("+ 1.2.3.4 5.6.7.8 " + String(repeating: "x", count: LogDaemon.maxDatagramBytes)),
            bytes("10.0.0.1 - - [01/Dec/2026:12:00:00 +0000] \"GET /" + String(repeating: "x", count: LogDaemon.maxDatagramBytes) + "\" 200 2"),
        ]
        for datagram in garbage { XCTAssertNil(daemon.receive(datagram, from: "10.0.0.2")) }
        XCTAssertEqual(daemon.counts, LogDaemon.Counts(skipped: garbage.count))
        XCTAssertEqual(daemon.cache.count, 0)
    }
}
