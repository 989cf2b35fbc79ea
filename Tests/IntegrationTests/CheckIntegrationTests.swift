import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `penha check` and `penha --version`: the real binary, nothing bound.
final class CheckIntegrationTests: XCTestCase {
    func testVersionPrintsOneVersionLine() throws {
        let result = try runPenha(["--version"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertNotNil(result.stdout.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression), result.stdout)
    }

    func testAGoodConfigurationIsOkAndNothingIsBound() throws {
        let port = freePort()
        let file = try configFile("server 0 address 127.0.0.1 port 9\nroundrobin\n")
        defer { unlink(file) }
        let control = temporaryPath("check.sock")
        let result = try runPenha(["check", "-F", file, "-C", control, "-O", "blacklist 5", "127.0.0.1:\(port)"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "configuration ok\n")
        // run would have made the control socket; check makes nothing.
        XCTAssertFalse(FileManager.default.fileExists(atPath: control))
    }

    /// Settings that each parse but cannot work together: penha would have ignored them.
    func testSettingsThatCannotWorkTogetherAreEachAnError() throws {
        let udp = try runPenha(["check", "-U", "-C", temporaryPath("c.sock"), "-O", "accept_proxy",
                                "-O", "server 0 proxy_protocol v2", "127.0.0.1:1", "127.0.0.1:9"])
        XCTAssertEqual(udp.status, 2, udp.stderr)
        XCTAssertTrue(udp.stderr.contains("penha: accept_proxy reads a PROXY protocol header from TCP clients; with -U"), udp.stderr)
        XCTAssertTrue(udp.stderr.contains("penha: server 0 proxy_protocol sends a header on TCP connections; with -U"), udp.stderr)
        let path = temporaryPath("listen.sock")
        let unix = try runPenha(["check", "-C", temporaryPath("c.sock"), "-O", "freebind", path, "127.0.0.1:9"])
        XCTAssertEqual(unix.status, 2, unix.stderr)
        XCTAssertTrue(unix.stderr.contains("penha: freebind is for an IP listen address, not the Unix socket \(path)"), unix.stderr)
    }

    func testEveryErrorIsPrintedWithItsFileAndLineAndExits2() throws {
        let included = try configFile("timeout 0\n")
        defer { unlink(included) }
        let file = try configFile("""
            # a comment
            roundrobin
            frobnicate
            server 0 address no-such-host.invalid port 80
            include \(included)
            vrrp interface penha-none0 vrid 7 priority 100 vip 192.0.2.10/24 advert 100ms
            bgp table 201 vip 203.0.113.10 interface penha-none0 second_chance 192.0.2.2 192.0.2.3
            """)
        defer { unlink(file) }
        let result = try runPenha(["check", "-F", file, "-C", temporaryPath("c.sock"), "-O", "conn_max -1", "127.0.0.1:1"])
        XCTAssertEqual(result.status, 2, result.stderr)
        XCTAssertEqual(result.stdout, "")
        let lines = result.stderr.split(separator: "\n").map(String.init)
        for expected in ["-O 'conn_max -1': ", "\(file):3: unknown command 'frobnicate'", "\(included):1: timeout",
                         "\(file):4: server 0: cannot resolve host 'no-such-host.invalid'", "\(file):6: vrrp vrid 7: ",
                         "\(file):7: bgp second_chance: "] {
            XCTAssertTrue(lines.contains { $0.hasPrefix("penha: \(expected)") }, "no '\(expected)' in:\n\(result.stderr)")
        }
        XCTAssertEqual(lines.count, 6, result.stderr)
    }

    func testTheLogAndPidFilesRunRefusesAreRefusedAndNothingIsCreated() throws {
        let directory = temporaryPath("files")
        XCTAssertEqual(mkdir(directory, 0o755), 0)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fifo = "\(directory)/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let missing = "\(directory)/missing/x"
        let cases: [([String], String)] = [
            (["-l", fifo], "cannot open log \(fifo): not a regular file"),
            (["-l", "/dev/full"], "cannot open log /dev/full: not a regular file"),
            (["-l", missing], "cannot open log \(missing): no such file or directory"),
            (["-p", fifo], "cannot write \(fifo): not a regular file"),
            (["-p", missing], "cannot write \(missing): no such file or directory"),
        ]
        let servers = ["127.0.0.1:\(freePort())", "127.0.0.1:9"]
        for (options, message) in cases {
            let control = ["-C", temporaryPath("c.sock")]
            let checked = try runPenha(["check"] + control + options + servers)
            XCTAssertEqual(checked.status, 2, "\(options): \(checked.stderr)")
            XCTAssertEqual(checked.stderr, "penha: \(message)\n", "\(options)")
            let ran = try runPenha(["-f"] + control + options + servers)
            XCTAssertNotEqual(ran.status, 0, "\(options): run refuses it too")
            XCTAssertTrue(ran.stderr.contains(message), "\(options): \(ran.stderr)")
        }
        let file = try configFile("log \(fifo)\n")
        defer { unlink(file) }
        let fromFile = try runPenha(["check", "-C", temporaryPath("c.sock"), "-F", file] + servers)
        XCTAssertEqual(fromFile.stderr, "penha: \(file):1: cannot open log \(fifo): not a regular file\n")
        let (log, pid) = ("\(directory)/penha.log", "\(directory)/penha.pid")
        let good = try runPenha(["check", "-C", temporaryPath("c.sock"), "-l", log, "-p", pid] + servers)
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["fifo"], "check creates neither file")
    }

    func testAMalformedListenAddressIsOneLineAndExit2() throws {
        let result = try runPenha(["check", "127.0.0.1:notaport", "127.0.0.1:80"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.stderr.hasPrefix("penha: bad listen address"), result.stderr)
    }

    /// Root reads a 0600 file that the packaged unit's dynamic user cannot, and writes where
    /// the unit's ProtectSystem=strict does not let it: warnings, and the check still passes.
    func testAsRootFilesTheUnitsUserCannotUseAreWarnedOf() throws {
        guard geteuid() == 0 else {
            if ProcessInfo.processInfo.environment["PENHA_REQUIRE_NETNS"] == "1" {
                throw TestFailure("PENHA_REQUIRE_NETNS=1 but not running as root: the service user's view cannot be checked")
            }
            throw XCTSkip("needs root: the warnings are for files root can read; CI runs it as root")
        }
        let secret = try configFile(String(repeating: "k", count: 32))
        let open = try configFile(String(repeating: "k", count: 32))
        defer { unlink(secret); unlink(open) }
        chmod(secret, 0o600)
        chmod(open, 0o644)
        for (key, warned) in [(secret, true), (open, false)] {
            let file = try configFile("""
                server 0 address 127.0.0.1 port 9
                sync listen 127.0.0.1:7000 peer 127.0.0.2:7000 key \(key)
                log /var/log/penha-check-test.log
                """)
            chmod(file, 0o644)
            defer { unlink(file) }
            let result = try runPenha(["check", "-F", file, "127.0.0.1:1"])
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertEqual(result.stdout, "configuration ok\n")
            let lines = result.stderr.split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.contains("penha: warning: the sync key \(key): penha's systemd unit runs as a dynamic user, which "
                                          + "cannot read it (mode 0600, owner root); put it in /etc/penha/sync.key, which the unit "
                                          + "passes as a credential"), warned, result.stderr)
            XCTAssertTrue(lines.contains { $0.hasPrefix("penha: warning: log /var/log/penha-check-test.log: penha's systemd unit "
                                                        + "can write only under /var/log/penha/") }, result.stderr)
            XCTAssertEqual(lines.count, warned ? 2 : 1, result.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/var/log/penha-check-test.log"), "check opens no log")
    }

    private func configFile(_ text: String) throws -> String {
        let path = temporaryPath("check.conf")
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
            throw TestFailure("cannot create \(path)")
        }
        return path
    }
}

/// `listen ADDRESS` in the -F file: a unit's ExecStart then names no address.
final class ListenLineIntegrationTests: XCTestCase {
    func testTheFileCarriesTheListenAddressAndWriteKeepsIt() throws {
        let a = try Backend("A")
        defer { a.stop() }
        let port = freePort()
        let file = temporaryPath("listen.conf")
        defer { unlink(file) }
        try "listen 127.0.0.1:\(port)\nserver 0 address 127.0.0.1 port \(a.port)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let penha = try Penha(["-F", file], listen: "", servers: [])
        defer { penha.stop() }
        XCTAssertEqual(try Client(port: port).readLine(), "A")
        XCTAssertEqual(try penha.command("write"), ["wrote \(file)"])
        XCTAssertTrue(try String(contentsOfFile: file, encoding: .utf8).contains("\nlisten 127.0.0.1:\(port)\n"))
        // The written file reloads: its listen line restates the running address.
        kill(penha.process.processIdentifier, SIGHUP)
        XCTAssertTrue(waitFor(timeout: 10) { penha.stderr.contains("reload") }, penha.stderr)
        XCTAssertTrue(penha.stderr.contains("reloaded \(file)"), penha.stderr)
    }

    func testWithoutOneAnywhereCheckSaysSo() throws {
        let none = try runPenha(["check", "-O", "blacklist 3", "-F", "/dev/null"])
        XCTAssertEqual(none.status, 2)
        XCTAssertTrue(none.stderr.contains("no listen address"), none.stderr)
    }
}
