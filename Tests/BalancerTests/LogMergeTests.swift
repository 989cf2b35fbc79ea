import XCTest
@testable import Balancer
@testable import BalancerCore

final class LogMergeTests: XCTestCase {
    /// 2026-12-01 12:00:00 UTC.
    private let noon = 1796126400

    /// A source handing out `lines` in order (an overlong one as `BoundedLines` reports it).
    private func source(_ lines: [String]) -> LogMerge.Source {
        var remaining = lines[...]
        return {
            guard let line = remaining.popFirst() else { return nil }
            return line == "OVERLONG" ? .overlong : .line(Array(line.utf8))
        }
    }

    private func web(_ client: String, _ time: Int, _ request: String, status: String = "200 2") -> String {
        "\(client) - - [\(AccessLogLine.formatTime(time))] \"\(request)\" \(status)"
    }

    private func merge(pen: [String], servers: [String: [String]], jitter: Int = 600, offset: Int = 0) -> ([String], LogMerge.Counts) {
        let names = servers.keys.sorted()
        var merge = LogMerge(servers: names, serverLogs: names.map { source(servers[$0]!) }, penLog: source(pen),
                             jitter: jitter, offset: offset)
        var lines: [String] = []
        while let line = merge.next() { lines.append(String(decoding: line, as: UTF8.self)) }
        return (lines, merge.counts)
    }

    private func clients(_ lines: [String]) -> [String] {
        lines.map { String($0.prefix { $0 != " " }) }
    }

    func testEachLineGetsTheClientOfItsPenLine() {
        let pen = ["192.0.2.1 \(noon) 10.0.0.2 GET /a HTTP/1.0",
                   "192.0.2.2 \(noon + 1) 10.0.0.3 GET /b HTTP/1.0",
                   "192.0.2.3 \(noon + 2) 10.0.0.2 GET /c HTTP/1.0"]
        let (lines, counts) = merge(pen: pen, servers: [
            "10.0.0.2": [web("10.0.0.1", noon, "GET /a HTTP/1.0"), web("10.0.0.1", noon + 2, "GET /c HTTP/1.0")],
            "10.0.0.3": [web("10.0.0.1", noon + 1, "GET /b HTTP/1.0", status: "404 9 \"-\" \"agent\"")],
        ])
        XCTAssertEqual(lines, [
            "192.0.2.1 - - [01/Dec/2026:12:00:00 +0000] \"GET /a HTTP/1.0\" 200 2\n",
            "192.0.2.2 - - [01/Dec/2026:12:00:01 +0000] \"GET /b HTTP/1.0\" 404 9 \"-\" \"agent\"\n",
            "192.0.2.3 - - [01/Dec/2026:12:00:02 +0000] \"GET /c HTTP/1.0\" 200 2\n",
        ], "in time order across the servers")
        XCTAssertEqual(counts, LogMerge.Counts(matched: 3))
    }

    func testTheServerMustBeTheSame() {
        let pen = ["192.0.2.1 \(noon) 10.0.0.3 GET /a HTTP/1.0"]
        let (lines, counts) = merge(pen: pen, servers: ["10.0.0.2": [web("10.0.0.1", noon, "GET /a HTTP/1.0")]])
        XCTAssertEqual(clients(lines), ["10.0.0.2"], "pen's fallback: the server's name as the client")
        XCTAssertEqual(counts.unmatched, 1)
    }

    func testTheRequestMustBeTheSame() {
        let pen = ["192.0.2.1 \(noon) 10.0.0.2 GET /a HTTP/1.0"]
        let (lines, counts) = merge(pen: pen, servers: ["10.0.0.2": [web("10.0.0.1", noon, "GET /b HTTP/1.0")]])
        XCTAssertEqual(clients(lines), ["10.0.0.2"])
        XCTAssertEqual(counts.unmatched, 1)
    }

    func testRequestsAreComparedInWhatPenKeeps() {
        let long = "GET /" + String(repeating: "x", count: 200) + " HTTP/1.0"
        let pen = ["192.0.2.1 \(noon) 10.0.0.2 " + long.prefix(PenLogLine.requestLimit)]
        let (lines, _) = merge(pen: pen, servers: ["10.0.0.2": [web("10.0.0.1", noon, long)]])
        XCTAssertEqual(clients(lines), ["192.0.2.1"])
    }

    func testTheTimeMustBeWithinTheJitterAndTheClosestWins() {
        let pen = ["192.0.2.1 \(noon - 5) 10.0.0.2 GET / HTTP/1.0",
                   "192.0.2.2 \(noon + 2) 10.0.0.2 GET / HTTP/1.0",
                   "192.0.2.3 \(noon + 3) 10.0.0.2 GET / HTTP/1.0"]
        XCTAssertEqual(clients(merge(pen: pen, servers: ["10.0.0.2": [web("x", noon, "GET / HTTP/1.0")]], jitter: 10).0),
                       ["192.0.2.2"])
        XCTAssertEqual(clients(merge(pen: pen, servers: ["10.0.0.2": [web("x", noon + 8, "GET / HTTP/1.0")]], jitter: 5).0),
                       ["192.0.2.3"], "5 seconds away is within the jitter, 6 is not")
        XCTAssertEqual(clients(merge(pen: pen, servers: ["10.0.0.2": [web("x", noon + 20, "GET / HTTP/1.0")]], jitter: 5).0),
                       ["10.0.0.2"], "all too far")
        XCTAssertEqual(clients(merge(pen: pen, servers: ["10.0.0.2": [web("x", noon - 1, "GET / HTTP/1.0")]], jitter: 10).0),
                       ["192.0.2.2"], "3 seconds after beats 4 before")
        let tie = ["192.0.2.8 \(noon - 1) 10.0.0.2 GET / HTTP/1.0", "192.0.2.9 \(noon + 1) 10.0.0.2 GET / HTTP/1.0"]
        XCTAssertEqual(clients(merge(pen: tie, servers: ["10.0.0.2": [web("x", noon, "GET / HTTP/1.0")]]).0), ["192.0.2.8"],
                       "the first of equally close ones")
    }

    func testTheOffsetIsTakenFromPensTimes() {
        let pen = ["192.0.2.1 \(noon + 3600) 10.0.0.2 GET / HTTP/1.0"]
        let servers = ["10.0.0.2": [web("x", noon, "GET / HTTP/1.0")]]
        XCTAssertEqual(clients(merge(pen: pen, servers: servers, jitter: 5).0), ["10.0.0.2"])
        XCTAssertEqual(clients(merge(pen: pen, servers: servers, jitter: 5, offset: 3600).0), ["192.0.2.1"])
    }

    func testBadLinesAreSkippedAndCounted() {
        let pen = ["garbage", "OVERLONG", "", "192.0.2.1 x 10.0.0.2 GET / HTTP/1.0",
                   "192.0.2.1 \(noon) 10.0.0.2 GET / HTTP/1.0", "\u{01}\u{02}"]
        let (lines, counts) = merge(pen: pen, servers: ["10.0.0.2": [
            "garbage", "OVERLONG", "", "10.0.0.1 - - [bad time] \"GET / HTTP/1.0\" 200 2",
            "192.0.2.1 \(noon) 10.0.0.2 GET / HTTP/1.0",
            web("10.0.0.1", noon, "GET / HTTP/1.0"), "trailing garbage",
        ]])
        XCTAssertEqual(clients(lines), ["192.0.2.1"])
        XCTAssertEqual(counts, LogMerge.Counts(matched: 1, skippedServerLines: 6, skippedPenLines: 5))
    }

    func testPenTimesBeyondAnyWebServersAreSkippedInsteadOfOverflowing() {
        let servers = ["10.0.0.2": [web("x", noon, "GET / HTTP/1.0")]]
        let far = { (time: Int) in "192.0.2.9 \(time) 10.0.0.2 GET / HTTP/1.0" }
        let valid = { (offset: Int) in "192.0.2.1 \(self.noon + offset) 10.0.0.2 GET / HTTP/1.0" }
        let upper = LogMerge.offsetRange.upperBound
        for (pen, offset) in [([valid(-1), far(Int.max)], -1), ([far(Int.min), valid(1)], 1),
                              ([far(Int.min + upper - 1), valid(upper)], upper)] {
            let (lines, counts) = merge(pen: pen, servers: servers, offset: offset)
            XCTAssertEqual(clients(lines), ["192.0.2.1"], "\(pen) -t \(offset)")
            XCTAssertEqual(counts, LogMerge.Counts(matched: 1, skippedPenLines: 1), "\(pen) -t \(offset)")
        }
        // The earliest web server time there is, and a pen line with the same request far
        // ahead of it: their distance would not fit an Int.
        let earliest = "10.0.0.1 - - [01/Jan/1970:00:00:00 +1459] \"GET / HTTP/1.0\" 200 2"
        let (lines, counts) = merge(pen: ["192.0.2.9 \(Int.max) 10.0.0.2 GET / HTTP/1.0"], servers: ["10.0.0.2": [earliest]])
        XCTAssertEqual(clients(lines), ["10.0.0.2"])
        XCTAssertEqual(counts, LogMerge.Counts(unmatched: 1, skippedPenLines: 1))
    }

    func testPenTimesAtTheEdgesOfTheWebServersRangeStillMatch() {
        let latest = "10.0.0.1 - - [31/Dec/9999:23:59:60 -1459] \"GET / HTTP/1.0\" 200 2"
        let earliest = "10.0.0.1 - - [01/Jan/1970:00:00:00 +1459] \"GET / HTTP/1.0\" 200 2"
        let (upper, lower) = (AccessLogLine.timeRange.upperBound, AccessLogLine.timeRange.lowerBound)
        XCTAssertEqual(AccessLogLine(Array(latest.utf8))?.time, upper)
        XCTAssertEqual(AccessLogLine(Array(earliest.utf8))?.time, lower)
        XCTAssertEqual(clients(merge(pen: ["192.0.2.1 \(upper + 10) 10.0.0.2 GET / HTTP/1.0"],
                                     servers: ["10.0.0.2": [latest]], jitter: 10).0), ["192.0.2.1"])
        XCTAssertEqual(clients(merge(pen: ["192.0.2.1 \(lower - 10) 10.0.0.2 GET / HTTP/1.0"],
                                     servers: ["10.0.0.2": [earliest]], jitter: 10).0), ["192.0.2.1"])
    }

    func testEmptyLogsMergeToNothing() {
        let (lines, counts) = merge(pen: [], servers: ["10.0.0.2": [], "10.0.0.3": ["junk"]])
        XCTAssertEqual(lines, [])
        XCTAssertEqual(counts.skippedServerLines, 1)
    }

    func testOnlyPenLinesWithinTheJitterAreHeld() {
        // A pen line a second for four hours, a web line every half hour: the merge holds
        // no more than the jitter's worth of pen lines, and reads the pen log only as far
        // as the last web line needs.
        var time = noon
        var remainingPen = 4 * 3600
        let penLog: LogMerge.Source = {
            guard remainingPen > 0 else { return nil }
            remainingPen -= 1
            time += 1
            return .line(Array("192.0.2.1 \(time) 10.0.0.2 GET /\(time) HTTP/1.0".utf8))
        }
        var step = 0
        let webLog: LogMerge.Source = {
            guard step < 4 else { return nil }
            step += 1
            let at = self.noon + step * 1800
            return .line(Array(self.web("x", at, "GET /\(at) HTTP/1.0").utf8))
        }
        var merge = LogMerge(servers: ["10.0.0.2"], serverLogs: [webLog], penLog: penLog, jitter: 60)
        var matched = 0
        var mostHeld = 0
        while let line = merge.next() {
            if line.starts(with: Array("192.0.2.1 ".utf8)) { matched += 1 }
            mostHeld = max(mostHeld, merge.heldPenLines)
        }
        XCTAssertEqual(matched, 4)
        XCTAssertLessThanOrEqual(mostHeld, 2 * 60 + 2, "the lines within 60 seconds either side, and the one after")
        XCTAssertEqual(remainingPen, 4 * 3600 - (4 * 1800 + 61), "read up to the first line past the last one's jitter")
    }
}
