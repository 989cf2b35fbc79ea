import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Running as a daemon, dropping privileges, chroot and the HTML report.
final class LifecycleIntegrationTests: XCTestCase {
    func testWithoutFPenhaDetachesOnceReadyAndReportsStartupFailures() throws {
        let a = try Backend("A")
        let control = temporaryPath("daemon.sock")
        let pidFile = temporaryPath("daemon.pid")
        defer { unlink(control); unlink(pidFile) }
        let port = freePort()
        let started = try runPenha(["-C", control, "-p", pidFile, "127.0.0.1:\(port)", "127.0.0.1:\(a.port)"])
        XCTAssertEqual(started.status, 0, started.stderr)
        let pid = try XCTUnwrap(Int32((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .newlines)))
        defer { kill(pid, SIGKILL) }
        XCTAssertEqual(getsid(pid), pid, "the daemon leads its own session")
        XCTAssertEqual(try Client(port: port).readLine(), "A")
        XCTAssertEqual(try runPenha(["ctl", control, "pid"]).stdout, "\(pid)\n")

        // With its own pid file, so that a second daemon that wrongly started is stopped too.
        let busyPidFile = temporaryPath("busy.pid")
        defer {
            if let text = try? String(contentsOfFile: busyPidFile, encoding: .utf8),
               let busyPid = Int32(text.trimmingCharacters(in: .newlines)) { kill(busyPid, SIGKILL) }
            unlink(busyPidFile)
        }
        let busy = try runPenha(["-C", temporaryPath("busy.sock"), "-p", busyPidFile, "127.0.0.1:\(port)", "127.0.0.1:\(a.port)"])
        XCTAssertEqual(busy.status, 1, "the port is taken: \(busy.stderr)")
        XCTAssertTrue(busy.stderr.contains("cannot listen"), busy.stderr)
        kill(pid, SIGTERM)
        let deadline = Date() + 10
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        XCTAssertNotEqual(kill(pid, 0), 0, "the daemon stops on SIGTERM")
    }

    func testUserAndChrootAfterBinding() throws {
        guard getuid() == 0 else { throw XCTSkip("-u and -j need root") }
        let a = try Backend("A")
        let jail = temporaryPath("jail")
        try FileManager.default.createDirectory(atPath: jail, withIntermediateDirectories: false)
        defer { rmdir(jail) }
        let penha = try Penha(["-u", "nobody", "-j", jail], servers: ["127.0.0.1:\(a.port)"])
        let status = try String(contentsOfFile: "/proc/\(penha.process.processIdentifier)/status", encoding: .utf8)
        let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
        XCTAssertEqual(uid?.split(whereSeparator: \.isWhitespace).dropFirst().first.map(String.init), "\(getpwnam("nobody").pointee.pw_uid)")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(penha.process.processIdentifier)/root"), jail)
        XCTAssertEqual(try whoAnswers(penha), "A")
        XCTAssertEqual(try penha.command("servers").count, 1, "the control socket still answers")
        let refusedControl = temporaryPath("u.sock")
        defer { unlink(refusedControl) }
        let refused = try runPenha(["-f", "-u", "no-such-user-penha", "-C", refusedControl,
                                    "127.0.0.1:\(freePort())", "127.0.0.1:\(a.port)"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("no user 'no-such-user-penha'"), refused.stderr)
    }

    func testHTMLReportOnUSR1() throws {
        let a = try Backend("A")
        let report = temporaryPath("status.html")
        defer { unlink(report) }
        let penha = try Penha(["-w", report], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try whoAnswers(penha), "A")
        try penha.signal(SIGUSR1, thenLogs: "role STANDALONE")
        let deadline = Date() + 10
        var page = ""
        while !page.contains("</html>") && Date() < deadline {
            page = (try? String(contentsOfFile: report, encoding: .utf8)) ?? ""
            usleep(10_000)
        }
        XCTAssertTrue(page.contains("<td>127.0.0.1</td><td>\(a.port)</td><td>up</td>"), page)
        XCTAssertEqual(try penha.command("web_stats"), [report])
    }
}
