import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Input that crashed, blocked or fooled penha, tried against the real binary.
final class ReliabilityIntegrationTests: XCTestCase {
    private var paths: [String] = []

    override func tearDown() {
        for path in paths { unlink(path) }
        paths = []
    }

    private func path(_ name: String) -> String {
        let path = temporaryPath(name)
        paths.append(path)
        return path
    }

    private func file(_ text: String, name: String = "penha.conf") throws -> String {
        let path = path(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// One command, answered within `timeout` seconds (a hang is a failure, not a stuck test).
    private func answer(_ penha: Penha, _ line: String, timeout: Double = 5) throws -> [String] {
        let client = try Client(unixPath: penha.control, timeout: timeout)
        try client.send(line + "\n")
        var lines: [String] = []
        while let answer = try client.readLine() { lines.append(answer) }
        return lines
    }

    func testTheCommandsThatCrashedPenhaAreAnsweredWithAnError() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try answer(penha, "clients_max 99999999999"), ["error: clients_max must be at most 1000000, not 99999999999"])
        XCTAssertEqual(try answer(penha, "blacklist 99999999999"), ["error: blacklist must be at most 31536000, not 99999999999"])
        XCTAssertEqual(try answer(penha, "clients_max"), ["2048"], "penha is alive and unchanged")
        XCTAssertEqual(try whoAnswers(penha), "A")

        let option = try runPenha(["-f", "-c", "99999999999", "127.0.0.1:\(freePort())", "127.0.0.1:\(a.port)"])
        XCTAssertEqual(option.status, 2)
        XCTAssertTrue(option.stderr.contains("option -c must be at most 1000000, not 99999999999"), option.stderr)
        let config = try file("server 0 address 127.0.0.1 port \(a.port)\nclients_max 99999999999\n")
        let fromFile = try runPenha(["-f", "-F", config, "127.0.0.1:\(freePort())"])
        XCTAssertEqual(fromFile.status, 2)
        XCTAssertTrue(fromFile.stderr.contains("\(config):2: clients_max must be at most 1000000"), fromFile.stderr)
    }

    func testALogOrIncludeThatIsNotARegularFileIsRefusedAndNothingStalls() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let fifo = path("fifo")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertEqual(try answer(penha, "log \(fifo)"), ["error: cannot open log \(fifo): not a regular file"])
        XCTAssertEqual(try answer(penha, "include \(fifo)"), ["error: cannot read \(fifo): not a regular file"])
        XCTAssertEqual(try answer(penha, "log /dev/full"), ["error: cannot open log /dev/full: not a regular file"])
        let missing = "/nonexistent-\(getpid())/report.html"
        XCTAssertEqual(try answer(penha, "web_stats \(missing)"), ["error: cannot write \(missing): no such file or directory"])
        XCTAssertEqual(try answer(penha, "log"), [], "no log was set by the refused commands")
        XCTAssertEqual(try answer(penha, "web_stats"), [])
        XCTAssertEqual(try whoAnswers(penha), "A", "the data path never stalled")
        XCTAssertEqual(try answer(penha, "clients_max"), ["2048"], "the pool thread is free")
    }

    func testWriteNeverReplacesADeviceNorFollowsASymlinkAtTheTemporaryName() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try answer(penha, "write /dev/full"), ["error: cannot write /dev/full: not a regular file"])
        var status = stat()
        XCTAssertEqual(stat("/dev/full", &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFCHR, "/dev/full is still a device")

        let victim = try file("precious\n", name: "victim")
        let target = path("written.conf")
        paths.append(target + ".tmp")
        XCTAssertEqual(symlink(victim, target + ".tmp"), 0)
        XCTAssertEqual(try answer(penha, "write \(target)"), ["wrote \(target)"])
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious\n", "the planted symlink was not followed")
        XCTAssertTrue(try String(contentsOfFile: target, encoding: .utf8).contains("server 0 address 127.0.0.1"))
    }

    func testAReloadConvergesOnTheFileAndKeepsConnections() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let config = try file("roundrobin\nblacklist 9\nserver 0 address 127.0.0.1 port \(a.port)\n"
                              + "server 1 address 127.0.0.1 port \(b.port)\n")
        let penha = try Penha(["-F", config], servers: [])
        // Round robin: one of two consecutive clients reaches B.
        let clients = try (0..<2).map { _ in try Client(port: penha.port) }
        let names = try clients.map { try $0.readLine() }
        let onB = try XCTUnwrap(names.firstIndex(of: "B").map { clients[$0] }, "\(names)")
        XCTAssertEqual(try answer(penha, "tracking 60"), ["60"], "a control-socket change the file does not make")

        try "server 0 address 127.0.0.1 port \(a.port)\n".write(toFile: config, atomically: true, encoding: .utf8)
        try penha.signal(SIGHUP, thenLogs: "reloaded")
        XCTAssertEqual(try answer(penha, "servers").count, 1, "server 1 is gone")
        XCTAssertEqual(try answer(penha, "mode"), ["no hash no roundrobin no stubborn no weight no prio"])
        XCTAssertEqual(try answer(penha, "blacklist"), ["30"], "back to the default")
        XCTAssertEqual(try answer(penha, "tracking"), ["0"], "back to the command line's")
        XCTAssertTrue(penha.stderr.contains("reload: server 1 removed"), penha.stderr)
        XCTAssertEqual(try (0..<3).map { _ in try whoAnswers(penha) }, ["A", "A", "A"])
        try onB.send("still here\n")
        XCTAssertEqual(try onB.readLine(), "still here", "the removed server's connection finishes")
    }

    /// Exit 1 is a runtime failure (a file that cannot be written), 2 bad usage or configuration.
    func testAnUnwritableLogExitsOneAndABadValueTwo() throws {
        let log = "/nonexistent-\(getpid())/penha.log"
        let unwritable = try runPenha(["-f", "-l", log, "127.0.0.1:\(freePort())", "127.0.0.1:9"])
        XCTAssertEqual(unwritable.status, 1, unwritable.stderr)
        XCTAssertTrue(unwritable.stderr.contains("cannot open log \(log): no such file or directory"), unwritable.stderr)
        let bad = try runPenha(["-f", "-b", "-1", "127.0.0.1:\(freePort())", "127.0.0.1:9"])
        XCTAssertEqual(bad.status, 2, bad.stderr)
    }

    func testAConfigFileWithCRLFLineEndingsIsRead() throws {
        let a = try Backend("A")
        let config = try file("blacklist 7\r\nserver 0 address 127.0.0.1 port \(a.port)\r\n")
        let penha = try Penha(["-F", config], servers: [])
        XCTAssertEqual(try answer(penha, "blacklist"), ["7"])
        XCTAssertEqual(try whoAnswers(penha), "A")
    }
}
