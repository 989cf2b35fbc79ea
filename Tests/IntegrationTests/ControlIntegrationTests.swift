import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The control plane, driven only through the control socket, signals and files.
final class ControlIntegrationTests: XCTestCase {
    private var paths: [String] = []

    override func tearDown() {
        for path in paths { unlink(path) }
        paths = []
    }

    /// A temporary file with `text`, removed after the test.
    private func file(_ text: String, name: String = "penha.conf") throws -> String {
        let path = temporaryPath(name)
        paths.append(path)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testTheUnixControlSocketIsForItsOwnerOnly() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        var info = stat()
        XCTAssertEqual(stat(penha.control, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        // The umask penha set for the bind is gone again: files it writes later get the usual modes.
        let written = temporaryPath("written.conf")
        paths.append(written)
        XCTAssertEqual(try runPenha(["ctl", penha.control, "write \(written)"]).status, 0)
        XCTAssertEqual(stat(written, &info), 0)
        XCTAssertNotEqual(info.st_mode & 0o777, 0o600, "umask restored after the bind")
    }

    func testChangingAServerAddressMovesNewTrafficAndKeepsEstablishedConnections() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let penha = try Penha(["-r"], servers: ["127.0.0.1:\(a.port)"])
        let established = try Client(port: penha.port)
        XCTAssertEqual(try established.readLine(), "A")
        XCTAssertEqual(try penha.command("server 0 address 127.0.0.1 port \(b.port)"), [])
        XCTAssertEqual(try whoAnswers(penha), "B")
        try established.send("still here\n")
        XCTAssertEqual(try established.readLine(), "still here", "the change leaves established connections alone")
        XCTAssertEqual(try penha.command("server 1 address localhost port \(a.port)"), [], "server 1 is added")
        XCTAssertEqual(Set(try (0..<2).map { _ in try whoAnswers(penha) }), ["A", "B"])
    }

    func testBlacklistAndTakeBack() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let penha = try Penha(["-r"], servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        XCTAssertEqual(try penha.command("server 0 blacklist 60"), [])
        XCTAssertEqual(try (0..<3).map { _ in try whoAnswers(penha) }, ["B", "B", "B"])
        let server0 = try XCTUnwrap(try penha.command("status").first { $0.hasPrefix("server 0 ") })
        XCTAssertTrue(server0.contains("state blacklisted"), server0)
        XCTAssertEqual(try penha.command("server 0 blacklist 0"), [])
        XCTAssertEqual(Set(try (0..<2).map { _ in try whoAnswers(penha) }), ["A", "B"])
    }

    func testWriteThenASecondPenhaFromTheFileHasTheSameServers() throws {
        let a = try Backend("A")
        let first = try Penha(["-W", "-b", "7"], servers: ["127.0.0.1:\(a.port):10:20:3:1", "localhost:\(a.port)"])
        XCTAssertEqual(try first.command("server 1 weight 5"), [])
        let path = temporaryPath("written.conf")
        paths.append(path)
        XCTAssertEqual(try first.command("write \(path)"), ["wrote \(path)"])
        let second = try Penha(["-F", path], servers: [])
        XCTAssertEqual(try second.command("servers"), try first.command("servers"))
        XCTAssertEqual(try second.command("blacklist"), ["7"])
        XCTAssertEqual(try second.command("mode"), try first.command("mode"))
        XCTAssertEqual(try whoAnswers(second), "A")
    }

    func testHangupReloadsTheChangedFile() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let config = try file("# the one server\nserver 0 address 127.0.0.1 port \(a.port)\nroundrobin\n")
        let penha = try Penha(["-F", config], servers: [])
        XCTAssertEqual(try whoAnswers(penha), "A")
        let established = try Client(port: penha.port)
        XCTAssertEqual(try established.readLine(), "A")
        try "server 0 address 127.0.0.1 port \(b.port)\nblacklist 9\n".write(toFile: config, atomically: true, encoding: .utf8)
        try penha.signal(SIGHUP, thenLogs: "reloaded")
        XCTAssertEqual(try whoAnswers(penha), "B")
        XCTAssertEqual(try penha.command("blacklist"), ["9"])
        try established.send("ping\n")
        XCTAssertEqual(try established.readLine(), "ping", "a reload drops no connection")
    }

    /// Every log line is escaped in one place: a path with a terminal's escape sequence in
    /// it (here from the file, as it could come from a command) is logged harmless.
    func testLogLinesEscapeControlCharacters() throws {
        let a = try Backend("A")
        let config = try file("server 0 address 127.0.0.1 port \(a.port)\n")
        let penha = try Penha(["-F", config], servers: [])
        let log = temporaryPath("x\u{1b}]0;owned\u{07}\u{1b}[2J.log")
        paths.append(log)
        try "server 0 address 127.0.0.1 port \(a.port)\nlog \(log)\n".write(toFile: config, atomically: true, encoding: .utf8)
        try penha.signal(SIGHUP, thenLogs: "reloaded")
        let logged = try XCTUnwrap(penha.stderr.split(separator: "\n").first { $0.contains("reload: log ") }, penha.stderr)
        XCTAssertTrue(logged.hasSuffix(#"x\x1b]0;owned\x07\x1b[2J.log"#), String(logged))
        XCTAssertFalse(penha.stderr.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, penha.stderr)
    }

    func testABrokenFileOnReloadLeavesTheRunningConfiguration() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let config = try file("server 0 address 127.0.0.1 port \(a.port)\nblacklist 5\n")
        let penha = try Penha(["-F", config], servers: [])
        try "blacklist 11\nserver 0 port \(b.port)\nfrobnicate\n".write(toFile: config, atomically: true, encoding: .utf8)
        try penha.signal(SIGHUP, thenLogs: "reload failed")
        XCTAssertTrue(penha.stderr.contains("\(config):3"), "the log names file and line: \(penha.stderr)")
        XCTAssertEqual(try whoAnswers(penha), "A")
        XCTAssertEqual(try penha.command("blacklist"), ["5"], "no line of the broken file applied")
        try "server 0 address no-such-host.invalid\n".write(toFile: config, atomically: true, encoding: .utf8)
        try penha.signal(SIGHUP, thenLogs: "reload failed")
        XCTAssertEqual(try whoAnswers(penha), "A")
    }

    /// `penha ctl reload` is the unit's ExecReload: its exit status is what `systemctl reload` reports.
    func testCtlReloadAnswersWhenDoneAndExitsNonZeroWhenTheFileIsRefused() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let config = try file("server 0 address 127.0.0.1 port \(a.port)\nblacklist 5\n")
        let penha = try Penha(["-F", config], servers: [])
        try "server 0 address 127.0.0.1 port \(b.port)\nblacklist 6\n".write(toFile: config, atomically: true, encoding: .utf8)
        let good = try runPenha(["ctl", penha.control, "reload"])
        XCTAssertEqual(good.status, 0, good.stdout + good.stderr)
        XCTAssertEqual(good.stdout, "reloaded \(config), log reopened\n")
        XCTAssertEqual(try whoAnswers(penha), "B")
        XCTAssertEqual(try penha.command("blacklist"), ["6"])
        try "blacklist 11\nserver 0 port \(a.port)\nfrobnicate\n".write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try runPenha(["ctl", penha.control, "reload"])
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertEqual(refused.stdout, "error: reload failed, configuration unchanged: \(config):3: unknown command 'frobnicate'\n")
        XCTAssertEqual(try whoAnswers(penha), "B")
        XCTAssertEqual(try penha.command("blacklist"), ["6"], "no line of the refused file applied")
        XCTAssertTrue(penha.stderr.contains("reload failed, configuration unchanged: \(config):3"), penha.stderr)
        XCTAssertEqual(try penha.command("reload now"), ["error: 'reload' takes no argument"])
    }

    func testGarbageOnTheControlSocketGetsAnErrorAndPenhaKeepsServing() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        for garbage in ["frobnicate", "\u{1}\u{ff}\u{0}zz", "server x", "server 0 port 0", "blacklist -3", "no", "acl 1 permit 1.2.3", "exit"] {
            let answer = try penha.command(garbage)
            XCTAssertEqual(answer.count, 1, "\(garbage): \(answer)")
            XCTAssertTrue(answer.first?.hasPrefix("error: ") == true, "\(garbage): \(answer)")
        }
        let long = try Client(unixPath: penha.control)
        try long.send(String(repeating: "x", count: 10_000))
        XCTAssertEqual(try long.readLine()?.hasPrefix("error: "), true)
        let silent = try Client(unixPath: penha.control)
        silent.shutdownWrite()
        XCTAssertEqual(try silent.readLine()?.hasPrefix("error: "), true, "an empty command is an error too")
        XCTAssertEqual(try whoAnswers(penha), "A")
        XCTAssertEqual(try penha.command("pid"), ["\(penha.process.processIdentifier)"])
    }

    func testStatusForPeopleAndForScripts() throws {
        let a = try Backend("A")
        let penha = try Penha(["-r"], servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(freePort())"])
        XCTAssertEqual(try whoAnswers(penha), "A")
        XCTAssertEqual(try penha.command("server 1 blacklist 50"), [])
        let human = try runPenha(["status", "-C", penha.control])
        XCTAssertEqual(human.status, 0, human.stderr)
        XCTAssertTrue(human.stdout.contains("STANDALONE"), human.stdout)
        XCTAssertTrue(human.stdout.contains("127.0.0.1:\(penha.port)"), human.stdout)
        XCTAssertTrue(human.stdout.contains("127.0.0.1:\(a.port)"), human.stdout)
        XCTAssertTrue(human.stdout.contains("blacklisted"), human.stdout)
        XCTAssertTrue(human.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, human.stdout)

        let json = try runPenha(["status", "-C", penha.control, "--json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["role"] as? String, "STANDALONE")
        XCTAssertEqual(object["listen"] as? String, "127.0.0.1:\(penha.port)")
        let servers = try XCTUnwrap(object["servers"] as? [[String: Any]])
        XCTAssertEqual(servers.count, 2)
        XCTAssertEqual(servers[0]["index"] as? Int, 0)
        XCTAssertEqual(servers[0]["address"] as? String, "127.0.0.1")
        XCTAssertEqual(servers[0]["port"] as? Int, a.port)
        XCTAssertEqual(servers[0]["state"] as? String, "up")
        XCTAssertEqual(servers[1]["state"] as? String, "blacklisted")
        for key in ["connections", "sent", "received"] { XCTAssertNotNil(servers[0][key], key) }
        // What it printed is penha's own answer to `status json`: one line, the same model.
        let answered = try penha.command("status json")
        XCTAssertEqual(answered.count, 1, "\(answered)")
        let fromSocket = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(answered[0].utf8)) as? [String: Any])
        XCTAssertEqual(fromSocket["role"] as? String, "STANDALONE")
        XCTAssertEqual((fromSocket["servers"] as? [[String: Any]])?.map { $0["state"] as? String }, ["up", "blacklisted"])
        XCTAssertEqual(try penha.command("status xml"), ["error: 'status' takes nothing or 'json'"])

        penha.stop()
        let gone = try runPenha(["status", "-C", penha.control])
        XCTAssertEqual(gone.status, 1)
        XCTAssertTrue(gone.stderr.contains("cannot connect"), gone.stderr)
    }

    func testCtlPrintsTheAnswerAndSaysWhenItFails() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let servers = try runPenha(["ctl", penha.control, "servers"])
        XCTAssertEqual(servers.status, 0, servers.stderr)
        XCTAssertTrue(servers.stdout.hasPrefix("0 addr 127.0.0.1 port \(a.port) conn 0"), servers.stdout)
        let set = try runPenha(["ctl", penha.control, "timeout", "7"])
        XCTAssertEqual([set.status.description, set.stdout], ["0", "7\n"])
        let bad = try runPenha(["ctl", penha.control, "frobnicate"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stdout.contains("error: unknown command 'frobnicate'"), bad.stdout)
        let nowhere = try runPenha(["ctl", temporaryPath("absent.sock"), "servers"])
        XCTAssertEqual(nowhere.status, 1)
        XCTAssertTrue(nowhere.stderr.contains("cannot connect"), nowhere.stderr)
        let empty = try runPenha(["ctl", penha.control])
        XCTAssertEqual(empty.status, 2, empty.stderr)
        // -C names the socket as status's does (it was taken as the command's first word),
        // and what follows is the command, options or not.
        let named = try runPenha(["ctl", "-C", penha.control, "servers"])
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertEqual(named.stdout, servers.stdout)
        let attached = try runPenha(["ctl", "-C\(penha.control)", "timeout", "-1"])
        XCTAssertEqual(attached.status, 1, attached.stderr)
        XCTAssertTrue(attached.stdout.contains("error: "), attached.stdout)
    }

    func testTCPControlPortOnLoopbackWorks() throws {
        let a = try Backend("A")
        let port = freePort()
        let penha = try Penha(["-C", "127.0.0.1:\(port)"], servers: ["127.0.0.1:\(a.port)"])
        let answer = try runPenha(["ctl", "127.0.0.1:\(port)", "control"])
        XCTAssertEqual(answer.stdout, "127.0.0.1:\(port)\n", answer.stderr)
        XCTAssertEqual(try whoAnswers(penha), "A")
    }

    func testExitOnlyWithX() throws {
        let a = try Backend("A")
        let plain = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try plain.command("exit").first?.hasPrefix("error: exit is not enabled"), true)
        let exitable = try Penha(["-X"], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try exitable.command("exit"), ["exiting"])
        XCTAssertEqual(exitable.waitForExit(timeout: 10), 0)
    }

    func testConfigFileErrorsAtStartNameFileAndLine() throws {
        let config = try file("roundrobin\n\n  timeout 0 # too short\n")
        let (status, stderr, _) = try runPenha(["-f", "-C", temporaryPath("c.sock"), "-F", config, "127.0.0.1:\(freePort())", "127.0.0.1:9"])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(stderr.contains("\(config):3") && stderr.contains("timeout"), stderr)
        let missing = try runPenha(["-f", "-F", temporaryPath("absent.conf"), "127.0.0.1:\(freePort())"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("cannot read"), missing.stderr)
    }

    func testConnectionLogPidFileAndStatisticsSignal() throws {
        let a = try Backend("A")
        let log = temporaryPath("connections.log")
        let pid = temporaryPath("penha.pid")
        paths += [log, pid]
        let penha = try Penha(["-l", log, "-p", pid], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try String(contentsOfFile: pid, encoding: .utf8), "\(penha.process.processIdentifier)\n")
        let client = try Client(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        try client.send("hello\n")
        client.shutdownWrite()
        _ = try client.readToEnd()
        let deadline = Date() + 10
        var logged = ""
        while Date() < deadline {
            logged = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if logged.hasSuffix("\n") { break }
            usleep(10_000)
        }
        // pen's format: CLIENT UNIXTIME SERVER REQUEST-START (LogToolsIntegrationTests has the rest).
        let words = logged.trimmingCharacters(in: .newlines).split(separator: " ").map(String.init)
        XCTAssertEqual(words.count, 4, logged)
        XCTAssertTrue(words.count == 4 && words[0] == "127.0.0.1" && Int(words[1]) != nil && words[2] == "127.0.0.1"
                      && words[3] == "hello", logged)
        try penha.signal(SIGUSR1, thenLogs: "role STANDALONE")
        try penha.signal(SIGTERM, thenLogs: "stopped")
        XCTAssertEqual(penha.waitForExit(timeout: 10), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pid), "the pid file goes with the process")
    }
}
