import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// What root's `penha upgrade` trusts of a penha that runs as another user (`-u`): that
/// user's process can rewrite its own command line (argv is its memory), so the binary root
/// starts must not be the one /proc/PID/cmdline names.
final class UpgradeTrustIntegrationTests: XCTestCase {
    func testRootDoesNotStartTheBinaryAnotherUsersProcessNamesInItsCommandLine() throws {
        try NetworkLab.requireRoot()
        let directory = temporaryPath("upgrade-trust")
        XCTAssertEqual(mkdir(directory, 0o755), 0)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A file of nobody's: what a process running as nobody would name.
        let chosen = directory + "/chosen", ran = directory + "/ran"
        try "#!/bin/sh\nid -u > \(ran)\n".write(toFile: chosen, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(chosen, 0o755), 0)
        XCTAssertEqual(chown(chosen, 65534, 65534), 0)
        // nobody's process, its command line saying it is `chosen`.
        let decoy = Process()
        decoy.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        decoy.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/bash", "-c", "exec -a \(chosen) /bin/sleep 30"]
        try decoy.run()
        defer { kill(decoy.processIdentifier, SIGKILL); decoy.waitUntilExit() }
        // Bounded: bash execs at once.
        for _ in 0..<250 {
            if let line = try? String(contentsOfFile: "/proc/\(decoy.processIdentifier)/cmdline", encoding: .utf8), line.hasPrefix(chosen) { break }
            usleep(20_000)
        }
        // The control socket, answering `pid` with the decoy's once (as nobody's penha would).
        let control = directory + "/control.sock"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: control.utf8.prefix(107)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(listener, 4), 0)
        let pid = decoy.processIdentifier
        let server = Thread {
            let connection = accept(listener, nil, nil)
            close(listener)
            guard connection >= 0 else { return }
            var line = [UInt8](repeating: 0, count: 256)
            _ = read(connection, &line, line.count)
            let answer = Array("\(pid)\n".utf8)
            _ = write(connection, answer, answer.count)
            close(connection)
        }
        server.start()
        let upgrade = try runPenha(["upgrade", "-C", control], timeout: 40)
        XCTAssertNotEqual(upgrade.status, 0, "nothing took over: \(upgrade.stdout)")
        let who = (try? String(contentsOfFile: ran, encoding: .utf8)) ?? "nobody ran it"
        XCTAssertFalse(FileManager.default.fileExists(atPath: ran), "root ran the file nobody's process named: uid \(who)")
    }
}

/// An upgrade after the configuration's `listen` changed: the new process must not serve the
/// old address while it says it listens on the new one.
final class UpgradeListenIntegrationTests: XCTestCase {
    func testAnUpgradeWhoseListenAddressChangedIsRefusedAndTheOldProcessServesOn() throws {
        let a = try Backend("A")
        let file = temporaryPath("listen.conf")
        defer { unlink(file) }
        let before = freePort(), after = freePort()
        try "listen 127.0.0.1:\(before)\nserver 0 address 127.0.0.1 port \(a.port)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let penha = try Penha(["-F", file], listen: "", servers: [])
        XCTAssertEqual(try Client(port: before).readLine(), "A")
        try "listen 127.0.0.1:\(after)\nserver 0 address 127.0.0.1 port \(a.port)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let upgrade = try runPenha(["upgrade", "-C", penha.control])
        if upgrade.status == 0, let new = upgrade.stdout.split(separator: " ").last.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            kill(new, SIGTERM)
        }
        XCTAssertNotEqual(upgrade.status, 0, "the new process took over the listener on \(before) with listen \(after) configured")
        XCTAssertTrue(upgrade.stderr.contains("\(after)"), upgrade.stderr)
        XCTAssertEqual(try penha.command("pid"), ["\(penha.process.processIdentifier)"], "the old process serves on")
        XCTAssertEqual(try Client(port: before).readLine(), "A")
    }
}
