import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A TCP control port is unauthenticated, as pen's: anyone who reaches it may send commands,
/// so it refuses those that name a file penha would write, read or run, unless
/// `control_tcp_files` was given; the Unix socket (mode 0600) runs them.
final class TCPControlIntegrationTests: XCTestCase {
    private func send(_ line: String, to port: Int) throws -> [String] {
        let client = try Client(port: port)
        try client.send(line + "\n")
        var lines: [String] = []
        while let answer = try client.readLine() { lines.append(answer) }
        return lines
    }

    func testATCPControlPortRefusesTheCommandsThatNameAFile() throws {
        let a = try Backend("A")
        let port = freePort()
        let penha = try Penha(["-C", "127.0.0.1:\(port)"], servers: ["127.0.0.1:\(a.port)"])
        let target = temporaryPath("cron.sh"), include = temporaryPath("include.conf")
        defer { for path in [target, include] { unlink(path) } }
        try "timeout 9\n".write(toFile: include, atomically: true, encoding: .utf8)
        let lines = ["log \(target)", "web_stats \(target)", "write \(target)", "write", "include \(include)",
                     "ssl_sni_path \(NSTemporaryDirectory())", "sync listen 127.0.0.1:\(freePort()) peer 127.0.0.2:7000 key \(include)",
                     "vrrp interface lo vrid 9 priority 100 vip 192.0.2.9/32 notify \(target)", "control_tcp_files"]
        for line in lines {
            let answer = try send(line, to: port)
            XCTAssertEqual(answer.count, 1, "\(line): \(answer)")
            XCTAssertTrue(answer.first?.hasPrefix("error: '\(line.prefix { $0 != " " })'") == true
                          && answer.first?.contains("refused on a TCP control port") == true, "\(line): \(answer)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: target), "nothing was written")
        XCTAssertEqual(try send("timeout", to: port), ["3"], "the included file was not read")
        XCTAssertEqual(try send("log", to: port), [], "asking is allowed: no log")
        XCTAssertEqual(try send("timeout 7", to: port), ["7"], "the rest of the language works")
        XCTAssertEqual(try whoAnswers(penha), "A")
    }

    func testTheUnixSocketAndATCPPortWithControlTCPFilesRunThem() throws {
        let a = try Backend("A")
        let viaUnix = temporaryPath("unix.log"), viaTCP = temporaryPath("tcp.log")
        defer { for path in [viaUnix, viaTCP] { unlink(path) } }
        let local = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try local.command("log \(viaUnix)"), [])
        XCTAssertTrue(FileManager.default.fileExists(atPath: viaUnix))
        let port = freePort()
        let allowing = try Penha(["-C", "127.0.0.1:\(port)", "-O", "control_tcp_files"], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try send("log \(viaTCP)", to: port), [])
        XCTAssertTrue(FileManager.default.fileExists(atPath: viaTCP))
        XCTAssertEqual(try send("no control_tcp_files", to: port), [], "turning it off is allowed")
        XCTAssertTrue(try send("log \(viaUnix)", to: port).first?.contains("refused on a TCP control port") == true)
        XCTAssertEqual(try whoAnswers(allowing), "A")
    }
}
