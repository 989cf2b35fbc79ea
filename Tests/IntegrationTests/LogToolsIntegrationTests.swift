import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// pen's log tools: a real penha (or pen) in front of two web backends whose access logs the
/// test writes, clients on distinct loopback addresses, and the merge (offline, or live over
/// UDP) checked to give each request its real client, with pen's own tools on either side.
final class LogToolsIntegrationTests: XCTestCase {
    /// The clients; the web servers see penha's address (127.0.0.1) instead.
    private let sources = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]
    /// Garbage, an overlong line and a line in pen's format: none is an access-log line.
    private let badWebLines = ["garbage \u{01}\u{02}", String(repeating: "x", count: 10000),
                               "127.0.0.1 1796161500 127.0.0.2 GET /page/0 HTTP/1.0"]

    private var penha: String { penhaBinary.path }

    /// Requests `/page/N` for N in `range` through `port`, from the sources in turn; path -> source.
    private func sendRequests(port: Int, _ range: Range<Int>) throws -> [String: String] {
        var expected: [String: String] = [:]
        for number in range {
            let source = sources[number % sources.count]
            try httpGet(port: port, path: "/page/\(number)", source: source)
            expected["/page/\(number)"] = source
        }
        return expected
    }

    /// Each line's client is the one that sent its request (`expected`), or `fallback[path]`.
    private func assertClients(_ lines: [String], _ expected: [String: String], count: Int,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(lines.count, count, "lines: \(lines)", file: file, line: line)
        for text in lines {
            let client = String(text.prefix { $0 != " " })
            guard let start = text.range(of: "\"GET ")?.upperBound else {
                XCTFail("not an access-log line: \(text)", file: file, line: line)
                continue
            }
            let path = String(text[start...].prefix { $0 != " " })
            XCTAssertEqual(client, expected[path], "\(path): \(text)", file: file, line: line)
        }
    }

    // MARK: mergelogs

    /// Merged lines compared without their times, in order of their text. pen 0.34's
    /// mergelogs reads the time with mktime on a `struct tm` whose tm_isdst it never sets,
    /// so now and then it writes a line an hour early (and sorts it so): its times cannot
    /// be compared, the clients, requests and everything else can. The same bug can put a
    /// line outside its pen-log cache, so it runs with `-c` (no cache: the closest pen line
    /// at any distance), which for these distinct requests is the match penha's rules give.
    private func comparable(_ output: String) -> [String] {
        output.split(separator: "\n").map { line in
            guard let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]") else { return String(line) }
            return String(line[...open] + line[close...])
        }.sorted()
    }

    private struct MergeScenario {
        let penLog: String
        let serverLogs: [String]
        /// Path -> the client the merge must give it.
        let expected: [String: String]
    }

    /// penha with `-l FILE`, requests through it and one request straight to the first web
    /// server (which the merge cannot match: it keeps the server's name), the access logs
    /// written with bad lines among them, pen's log with bad lines appended.
    private func penhaMergeScenario(_ web2: HTTPBackend, _ web3: HTTPBackend) throws -> MergeScenario {
        let penLog = temporaryPath("penha.log")
        let balancer = try Penha(["-r", "-l", penLog], servers: [web2.address, web3.address])
        var expected = try sendRequests(port: balancer.port, 0..<8)
        try httpGet(host: web2.host, port: web2.port, path: "/direct", source: "127.0.0.15")
        expected["/direct"] = "127.0.0.2"
        // A connection that sends nothing is logged too, with `-` for its request.
        _ = try Client(port: balancer.port)
        XCTAssertTrue(waitFor(timeout: 5) { fileLines(penLog).count == 9 }, "penha's log: \(fileLines(penLog))")
        balancer.stop()
        return try writeLogs(penLog: penLog, web2, web3, expected: expected)
    }

    private func writeLogs(penLog: String, _ web2: HTTPBackend, _ web3: HTTPBackend, expected: [String: String]) throws -> MergeScenario {
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: penLog))
        handle.seekToEndOfFile()
        handle.write(Data(("garbage\n" + String(repeating: "y", count: 10000) + "\n").utf8))
        handle.closeFile()
        let log2 = temporaryPath("web2.log"), log3 = temporaryPath("web3.log")
        try web2.writeLog(to: log2, extra: badWebLines)
        try web3.writeLog(to: log3, extra: badWebLines)
        addTeardownBlock { for path in [penLog, log2, log3] { unlink(path) } }
        return MergeScenario(penLog: penLog, serverLogs: ["127.0.0.2:\(log2)", "127.0.0.3:\(log3)"], expected: expected)
    }

    func testPenhasLogIsPensFormat() throws {
        let web = try HTTPBackend("ok", host: "127.0.0.2")
        let penLog = temporaryPath("penha.log")
        defer { unlink(penLog) }
        let balancer = try Penha(["-l", penLog], servers: [web.address])
        let before = time(nil)
        try httpGet(port: balancer.port, path: "/some/path?q=1", source: "127.0.0.11")
        let binary = try Client(port: balancer.port, source: "127.0.0.12")
        // Not HTTP: the web server never answers it, penha logs it all the same.
        try binary.send([0x68, 0x69, 0x01, 0xFF, 0x0D, 0x0A, 0x6D, 0x6F, 0x72, 0x65])
        XCTAssertTrue(waitFor(timeout: 5) { fileLines(penLog).count == 2 }, "\(fileLines(penLog))")
        let lines = fileLines(penLog).map { $0.split(separator: " ", maxSplits: 3).map(String.init) }
        XCTAssertEqual(lines.map { [$0[0], $0[2], $0[3]] }, [["127.0.0.11", "127.0.0.2", "GET /some/path?q=1 HTTP/1.0"],
                                                            ["127.0.0.12", "127.0.0.2", #"hi\x01\xff"#]],
                       "CLIENT UNIXTIME SERVER REQUEST-START, addresses without ports, cut at the line end")
        let after = time(nil)
        for line in lines {
            let logged = try XCTUnwrap(Int(line[1]))
            XCTAssertTrue((Int(before)...Int(after)).contains(logged), "the request's time: \(line)")
        }
    }

    /// What a client sends reaches the log escaped (no control character a terminal or a
    /// shell would act on), and the line stays pen's: both mergelogs read it, and it matches
    /// the web server's line for the request, which Apache escapes alike.
    func testARequestWithControlCharactersIsLoggedEscapedAndStillMatched() throws {
        try requirePenTools("mergelogs")
        let web = try HTTPBackend("ok", host: "127.0.0.2")
        let penLog = temporaryPath("penha.log"), webLog = temporaryPath("web.log")
        defer { for path in [penLog, webLog] { unlink(path) } }
        let balancer = try Penha(["-l", penLog], servers: [web.address])
        let client = try Client(port: balancer.port, source: "127.0.0.11")
        try client.send(Array("GET /;id>/tmp/x #\u{1b}]0;owned\u{07}\u{1b}[2J".utf8) + [0xFF, 0x09] + Array("end HTTP/1.0\r\n\r\n".utf8))
        XCTAssertEqual(String(decoding: try client.readToEnd(), as: UTF8.self).prefix(12), "HTTP/1.1 200")
        XCTAssertTrue(waitFor(timeout: 5) { fileLines(penLog).count == 1 }, "\(fileLines(penLog))")
        let logged = try XCTUnwrap(FileManager.default.contents(atPath: penLog))
        XCTAssertEqual(logged.filter { $0 < 0x20 || $0 > 0x7E }, Data([0x0A]), "only the line's end is not printable")
        XCTAssertEqual(fileLines(penLog).first?.split(separator: " ", maxSplits: 3).last,
                       #"GET /;id>/tmp/x #\x1b]0;owned\x07\x1b[2J\xff\tend HTTP/1.0"#)
        try web.writeLog(to: webLog)
        let ours = try runProgram(penha, ["mergelogs", "-p", penLog, "127.0.0.2:\(webLog)"])
        XCTAssertTrue(ours.stderr.contains("1 lines, 1 with their client"), ours.stderr)
        XCTAssertTrue(ours.stdout.hasPrefix("127.0.0.11 "), ours.stdout)
        let pens = try runProgram("/usr/bin/mergelogs", ["-c", "-p", penLog, "127.0.0.2:\(webLog)"], environment: ["TZ": "UTC"])
        XCTAssertTrue(pens.stdout.hasPrefix("127.0.0.11 "), "pen's mergelogs: \(pens.stdout) \(pens.stderr)")
    }

    func testPenhaMergelogsGivesTheRealClients() throws {
        let web2 = try HTTPBackend("ok", host: "127.0.0.2"), web3 = try HTTPBackend("ok", host: "127.0.0.3")
        let scenario = try penhaMergeScenario(web2, web3)
        let result = try runProgram(penha, ["mergelogs", "-p", scenario.penLog] + scenario.serverLogs)
        XCTAssertEqual(result.status, 0, result.stderr)
        assertClients(result.stdout.split(separator: "\n").map(String.init), scenario.expected, count: 9)
        XCTAssertTrue(result.stderr.contains("9 lines, 8 with their client, 1 unmatched"), result.stderr)
        XCTAssertTrue(result.stderr.contains("skipped: 6 web server lines, 2 pen lines"), result.stderr)
    }

    func testPenTimesNoWebServerCouldHaveAreSkippedAndCounted() throws {
        let penLog = temporaryPath("pen.log"), webLog = temporaryPath("web.log")
        defer { for path in [penLog, webLog] { unlink(path) } }
        try "192.0.2.1 1796126400 127.0.0.2 GET / HTTP/1.0\n192.0.2.9 9223372036854775807 127.0.0.2 GET / HTTP/1.0\n"
            .write(toFile: penLog, atomically: true, encoding: .utf8)
        try "127.0.0.1 - - [01/Dec/2026:12:00:01 +0000] \"GET / HTTP/1.0\" 200 2\n".write(toFile: webLog, atomically: true, encoding: .utf8)
        // -t -1 takes the second line past the largest Int: once a crash (SIGILL).
        let result = try runProgram(penha, ["mergelogs", "-p", penLog, "-t", "-1", "127.0.0.2:\(webLog)"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "192.0.2.1 - - [01/Dec/2026:12:00:01 +0000] \"GET / HTTP/1.0\" 200 2\n")
        XCTAssertTrue(result.stderr.contains("1 lines, 1 with their client, 0 unmatched"), result.stderr)
        XCTAssertTrue(result.stderr.contains("skipped: 0 web server lines, 1 pen lines"), result.stderr)
    }

    func testDebiansMergelogsReadsPenhasLogWithTheSameResult() throws {
        try requirePenTools("mergelogs")
        let web2 = try HTTPBackend("ok", host: "127.0.0.2"), web3 = try HTTPBackend("ok", host: "127.0.0.3")
        let scenario = try penhaMergeScenario(web2, web3)
        let ours = try runProgram(penha, ["mergelogs", "-p", scenario.penLog] + scenario.serverLogs)
        // pen's mergelogs writes local time and calls it +0000: in UTC that is the truth.
        let pens = try runProgram("/usr/bin/mergelogs", ["-c", "-p", scenario.penLog] + scenario.serverLogs, environment: ["TZ": "UTC"])
        XCTAssertEqual(pens.status, 0, pens.stderr)
        assertClients(pens.stdout.split(separator: "\n").map(String.init), scenario.expected, count: 9)
        XCTAssertEqual(comparable(ours.stdout), comparable(pens.stdout))
    }

    func testPensLogMergedByPenhaAsByPensMergelogs() throws {
        try requirePenTools("pen", "mergelogs")
        let web2 = try HTTPBackend("ok", host: "127.0.0.2"), web3 = try HTTPBackend("ok", host: "127.0.0.3")
        let penLog = temporaryPath("pen.log")
        let port = freePort()
        let pen = try BackgroundProgram("/usr/bin/pen", ["-f", "-r", "-l", penLog, "127.0.0.1:\(port)", web2.address, web3.address]) { _ in
            accepts(port: port)
        }
        let expected = try sendRequests(port: port, 0..<8)
        // pen writes its log through stdio: complete once it has exited.
        XCTAssertNotNil(pen.signal(SIGTERM, waitForExit: 10), "pen did not stop")
        let scenario = try writeLogs(penLog: penLog, web2, web3, expected: expected)
        let ours = try runProgram(penha, ["mergelogs", "-p", scenario.penLog] + scenario.serverLogs)
        let pens = try runProgram("/usr/bin/mergelogs", ["-c", "-p", scenario.penLog] + scenario.serverLogs, environment: ["TZ": "UTC"])
        XCTAssertEqual(ours.status, 0, ours.stderr)
        assertClients(ours.stdout.split(separator: "\n").map(String.init), expected, count: 8)
        XCTAssertEqual(comparable(ours.stdout), comparable(pens.stdout))
    }

    // MARK: the live log: logd, logpipe, penlog, penlogd

    /// A log daemon on 127.0.0.1 and penha sending it pen's datagrams (`-l HOST:PORT`).
    private func liveScenario(daemon: (_ port: Int, _ combined: String) throws -> BackgroundProgram,
                              feed: (_ lines: [String], _ server: String, _ port: Int) throws -> Void) throws
        -> (daemon: BackgroundProgram, combined: String, expected: [String: String], penha: Penha, web2: HTTPBackend, port: Int) {
        let web2 = try HTTPBackend("ok", host: "127.0.0.2"), web3 = try HTTPBackend("ok", host: "127.0.0.3")
        let port = unusedUDPPort()
        let combined = temporaryPath("combined.log")
        addTeardownBlock { unlink(combined) }
        let logDaemon = try daemon(port, combined)
        let balancer = try Penha(["-r", "-l", "127.0.0.1:\(port)"], servers: [web2.address, web3.address])
        let expected = try sendRequests(port: balancer.port, 0..<6)
        // The web servers' piped loggers, each sending from its server's address.
        try feed(web2.accessLines, "127.0.0.2", port)
        try feed(web3.accessLines, "127.0.0.3", port)
        XCTAssertTrue(waitFor(timeout: 5) { fileLines(combined).count == 6 }, "combined: \(fileLines(combined))")
        assertClients(fileLines(combined), expected, count: 6)
        return (logDaemon, combined, expected, balancer, web2, port)
    }

    private func penhaLogd(port: Int, combined: String, pidFile: String? = nil) throws -> BackgroundProgram {
        try BackgroundProgram(penha, ["logd", "-f", "-l", combined] + (pidFile.map { ["-p", $0] } ?? []) + ["127.0.0.1:\(port)"]) {
            $0.stderr.contains("listening")
        }
    }

    private func penhaLogpipe(_ lines: [String], server: String, port: Int) throws {
        let result = try runProgram(penha, ["logpipe", "127.0.0.1", "\(port)", server],
                                    input: (lines + [String(repeating: "z", count: 9000)]).map { $0 + "\n" }.joined())
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("1 lines over 8192 bytes skipped"), "logpipe: \(result.stderr)")
    }

    func testLogdWritesTheCombinedLogFromLogpipeAndPenhasDatagrams() throws {
        let pidFile = temporaryPath("logd.pid")
        let live = try liveScenario(daemon: { try penhaLogd(port: $0, combined: $1, pidFile: pidFile) },
                                    feed: { try penhaLogpipe($0, server: $1, port: $2) })
        XCTAssertEqual(fileLines(pidFile), ["\(live.daemon.process.processIdentifier)"])
        // Bad datagrams: garbage, overlong, a malformed pen line, a line in the wrong format,
        // two lines in one. None is written, each is counted, the daemon goes on.
        let bad: [[UInt8]] = [Array("garbage".utf8), [0xFF, 0x00, 0x01], Array(repeating: 0x41, count: 9000),
                              Array("+ only-two\n".utf8), Array("127.0.0.1 1796161500 127.0.0.2 GET / HTTP/1.0\n".utf8),
                              Array("127.0.0.1 - - [\(HTTPBackend.apacheTime())] \"GET / HTTP/1.0\" 200 2\nforged\n".utf8)]
        for datagram in bad { sendDatagram(datagram, port: live.port) }
        // SIGHUP reopens the log: rotate it, and the next line goes to a new file.
        let rotated = live.combined + ".1"
        defer { unlink(rotated) }
        XCTAssertEqual(rename(live.combined, rotated), 0)
        _ = live.daemon.signal(SIGHUP)
        XCTAssertTrue(waitFor(timeout: 5) { live.daemon.stderr.contains("log reopened") }, live.daemon.stderr)
        let before = live.web2.accessLines.count
        try httpGet(port: live.penha.port, path: "/after/rotation", source: "127.0.0.13")
        try penhaLogpipe(Array(live.web2.accessLines[before...]), server: "127.0.0.2", port: live.port)
        XCTAssertTrue(waitFor(timeout: 5) { fileLines(live.combined).count == 1 }, "new log: \(fileLines(live.combined))")
        assertClients(fileLines(live.combined), ["/after/rotation": "127.0.0.13"], count: 1)
        XCTAssertEqual(fileLines(rotated).count, 6, "the rotated log is left as it was")
        XCTAssertEqual(live.daemon.signal(SIGTERM, waitForExit: 10), 0, "SIGTERM ends logd with status 0")
        XCTAssertTrue(live.daemon.stderr.contains("pen lines 7 rewritten 7 unmatched 0 skipped \(bad.count)"), live.daemon.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pidFile), "the pid file is removed")
    }

    func testPensPenlogFeedsPenhaLogd() throws {
        try requirePenTools("penlog")
        let live = try liveScenario(daemon: { try penhaLogd(port: $0, combined: $1) }, feed: { lines, server, port in
            let result = try runProgram("/usr/bin/penlog", ["127.0.0.1", "\(port)", server], input: lines.map { $0 + "\n" }.joined())
            XCTAssertEqual(result.status, 0, result.stderr)
        })
        XCTAssertEqual(live.daemon.signal(SIGTERM, waitForExit: 10), 0)
    }

    func testPenhaLogpipeFeedsPensPenlogd() throws {
        try requirePenTools("penlogd")
        // penlogd binds every IPv4 address of the host (it takes only a port); traffic to it
        // goes to 127.0.0.1 only. -b: unbuffered, so its lines can be read while it runs.
        let live = try liveScenario(daemon: { port, combined in
            try BackgroundProgram("/usr/bin/penlogd", ["-f", "-d", "-b", "-l", combined, "\(port)"]) {
                $0.stderr.contains("Enter main loop")
            }
        }, feed: { try penhaLogpipe($0, server: $1, port: $2) })
        XCTAssertNotNil(live.daemon.signal(SIGTERM, waitForExit: 10), "penlogd did not stop")
    }

    func testDatagramsNoDaemonTakesAreDroppedCountedAndTheRelayGoesOn() throws {
        let web = try HTTPBackend("ok", host: "127.0.0.2")
        let balancer = try Penha(["-l", "127.0.0.1:\(unusedUDPPort())"], servers: [web.address])
        for number in 0..<5 {
            XCTAssertEqual(try httpGet(port: balancer.port, path: "/\(number)", source: "127.0.0.11"), "ok")
            usleep(20_000)
        }
        XCTAssertTrue(waitFor(timeout: 5) { balancer.stderr.contains("dropped_total=") }, balancer.stderr)
        XCTAssertTrue(balancer.stderr.contains("connection log: datagram to 127.0.0.1:"), balancer.stderr)
    }

    // MARK: bad arguments

    func testBadArgumentsAreOneLineAndStatusTwo() throws {
        let existing = temporaryPath("exists.log")
        XCTAssertTrue(FileManager.default.createFile(atPath: existing, contents: Data()))
        defer { unlink(existing) }
        let cases: [([String], String)] = [
            (["mergelogs", "127.0.0.2:\(existing)"], "-p"),
            (["mergelogs", "-p", existing], "<server:logfile>"),
            (["mergelogs", "-p", existing, "nocolon"], "expected SERVER:LOGFILE"),
            (["mergelogs", "-p", existing, "-j", "100000", "a:\(existing)"], "-j must be at most 86400"),
            (["mergelogs", "-p", existing, "-t", "x", "a:\(existing)"], "-t"),
            (["logd", "-n", "0", "9999"], "-n must be at least 1"),
            (["logd", "-n", "2000000", "9999"], "-n must be at most 1000000"),
            (["logd", "/tmp/socket"], "bad logd address"),
            (["logd", "127.0.0.1:70000"], "not within 1-65535"),
            (["logpipe", "127.0.0.1", "0"], "PORT must be at least 1"),
            (["logpipe", "127.0.0.1"], "<port>"),
            (["-f", "-C", temporaryPath("c.sock"), "-l", "127.0.0.1:nope", "127.0.0.1:\(freePort())", "127.0.0.2:1"],
             "bad log address '127.0.0.1:nope'"),
        ]
        for (arguments, message) in cases {
            let result = try runProgram(penha, arguments)
            XCTAssertEqual(result.status, 2, "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stderr.hasPrefix("penha: ") && result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
        let missing = try runProgram(penha, ["mergelogs", "-p", "/nonexistent/pen.log", "a:\(existing)"])
        XCTAssertEqual(missing.status, 1, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("cannot read log /nonexistent/pen.log"), missing.stderr)
    }
}
