import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Where log lines go without a terminal: syslog when detached, priority-prefixed stderr
/// under the journal. The test owns the syslog socket through PENHA_SYSLOG_SOCKET: the
/// machine's /dev/log is not the test's to replace.
final class SystemLogIntegrationTests: XCTestCase {
    func testADetachedPenhaKeepsItsNameAndLogsToSyslogAsDaemon() throws {
        let syslog = try UnixDatagramListener()
        let backend = try Backend("a")
        defer { backend.stop() }
        let pidFile = temporaryPath("syslog.pid")
        let control = temporaryPath("syslog.sock")
        defer { unlink(pidFile); unlink(control) }
        let process = Process()
        process.executableURL = penhaBinary
        process.arguments = ["-C", control, "-p", pidFile, "127.0.0.1:\(freePort())", "127.0.0.1:\(backend.port)"]
        process.environment = ProcessInfo.processInfo.environment.merging(["PENHA_SYSLOG_SOCKET": syslog.path]) { $1 }
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        guard let text = FileManager.default.contents(atPath: pidFile), let pid = Int32(String(decoding: text, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestFailure("no pid file")
        }
        defer { kill(pid, SIGKILL) }
        // The detached copy is found by name (pgrep penha): its own argv[0] and binary name.
        let comm = try String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)
        XCTAssertEqual(comm, "penha\n")
        let argv0 = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8).split(separator: "\0").first
        XCTAssertEqual(argv0.map(String.init), penhaBinary.path)
        // <29>: facility daemon (3 * 8) + notice (5); RFC 3164's timestamp, then ident[pid].
        let pattern = #"^<29>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d penha\[\#(pid)\]: listening on 127\.0\.0\.1:"#
        let listening = try syslog.next { $0.contains("listening") }
        XCTAssertNotNil(listening.range(of: pattern, options: .regularExpression), listening)
        // After start-up stderr is /dev/null: a later line must still arrive.
        kill(pid, SIGTERM)
        let stopped = try syslog.next { $0.contains("stopped by SIGTERM") }
        XCTAssertTrue(stopped.hasPrefix("<29>"), stopped)
    }

    func testUnderTheJournalStderrLinesCarryTheirPriority() throws {
        let backend = try Backend("a")
        defer { backend.stop() }
        let journal = try JournalStream()
        defer { journal.remove() }
        let control = temporaryPath("journal.sock")
        defer { unlink(control) }
        let process = journal.penha(["-f", "-C", control, "127.0.0.1:\(freePort())", "127.0.0.1:\(backend.port)"])
        try process.run()
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let lines = journal.text
        XCTAssertTrue(waitFor(timeout: 10) { lines().contains("listening") || !process.isRunning }, lines())
        // The notice and the info line before it, each with its own priority.
        let printed = lines().split(separator: "\n")
        XCTAssertEqual(printed.first { $0.contains("listening") }.map { String($0.prefix(3)) }, "<5>", lines())
        XCTAssertEqual(printed.first { $0.contains("control socket on") }.map { String($0.prefix(3)) }, "<6>", lines())
    }

    /// `penha check`'s errors and a refused start's are errors to the journal, not info: what
    /// `journalctl -p err` and `systemctl status` show of a unit that did not start.
    func testUnderTheJournalCheckAndStartErrorsArePriorityErr() throws {
        let file = temporaryPath("journal.conf")
        defer { unlink(file) }
        try "server 0 address 127.0.0.1 port 9\nfrobnicate\nblacklist -1\n".write(toFile: file, atomically: true, encoding: .utf8)
        for arguments in [["check", "-F", file, "127.0.0.1:1"], ["-f", "-C", temporaryPath("journal.sock"), "-F", file, "127.0.0.1:1"]] {
            let journal = try JournalStream()
            defer { journal.remove() }
            let process = journal.penha(arguments)
            try process.run()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 2, journal.text())
            let lines = journal.text().split(separator: "\n")
            XCTAssertFalse(lines.isEmpty)
            XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("<3>penha: \(file):") }, journal.text())
        }
    }
}

/// A file standing in for the journal's stream: `$JOURNAL_STREAM` names its device and inode,
/// as systemd does for a unit's stderr.
private struct JournalStream {
    let path = temporaryPath("journal.stderr")
    let handle: FileHandle
    let variable: String

    init() throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw TestFailure("cannot create \(path)") }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var status = stat()
        fstat(handle.fileDescriptor, &status)
        variable = "\(status.st_dev):\(status.st_ino)"
    }

    /// penha with `arguments`, its stderr this stream.
    func penha(_ arguments: [String]) -> Process {
        let process = Process()
        process.executableURL = penhaBinary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["JOURNAL_STREAM": variable]) { $1 }
        process.standardError = handle
        return process
    }

    func text() -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }

    func remove() { unlink(path) }
}
