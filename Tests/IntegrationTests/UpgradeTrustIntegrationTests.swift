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

/// SIGTERM to the old process while a handover is under way: the handover is seen through
/// before the old process stops (its drain would otherwise end the moment its connections
/// left, and the process exit under the handover), and what the new one made its own (the
/// pid file) stays.
final class HandoverStopIntegrationTests: XCTestCase {
    func testSIGTERMDuringAHandoverLeavesTheNewProcesssFilesAlone() throws {
        try NetworkLab.requireRoot()
        let a = try Backend("A")
        let pidFile = temporaryPath("penha.pid"), path = temporaryPath("taker.sock")
        defer { unlink(pidFile); unlink(path) }
        let penha = try Penha(["-p", pidFile, "-O", "drain 10"], servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        // The taker, by hand: its socket, then the request on the control socket.
        let listening = try Self.unixSocket(path, listen: true)
        defer { close(listening) }
        let control = try Self.unixSocket(penha.control, listen: false)
        defer { close(control) }
        Self.write(control, Array("PENHA-HANDOVER 1 \(path)\n".utf8))
        var ready = pollfd(fd: listening, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&ready, 1, 5000), 1)
        let handover = accept(listening, nil, nil)
        defer { close(handover) }
        XCTAssertGreaterThanOrEqual(handover, 0)
        var time = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(handover, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        XCTAssertEqual(Self.frameKind(handover), 1, "the listener")
        // The old process is stopped while it waits for `accepting`.
        kill(penha.process.processIdentifier, SIGTERM)
        usleep(200_000)
        Self.write(handover, Self.frame(kind: 2))
        var kinds: [UInt8] = []
        // Bounded: at most a few frames (client table, one connection, counters) before done.
        while kinds.count < 16, let kind = Self.frameKind(handover) {
            kinds.append(kind)
            if kind == 4 { break }
        }
        XCTAssertEqual(kinds.last, 4, "done: \(kinds)")
        // What a new process makes before it answers: its pid file (and its control socket).
        try "999999\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        Self.write(handover, Self.frame(kind: 5))
        setsockopt(control, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var answer = [UInt8](repeating: 0, count: 4096)
        let count = answer.withUnsafeMutableBytes { recv(control, $0.baseAddress, $0.count, 0) }
        let text = String(decoding: answer.prefix(max(0, count)), as: UTF8.self)
        XCTAssertTrue(text.contains("handed over to pid"), "the handover was not seen through: '\(text)' \(penha.stderr)")
        XCTAssertNotNil(penha.waitForExit(timeout: 15), "the old process exits")
        XCTAssertEqual(try? String(contentsOfFile: pidFile, encoding: .utf8), "999999\n",
                       "the old process removed the pid file the new one wrote: \(penha.stderr)")
    }

    private static func frame(kind: UInt8) -> [UInt8] {
        Array("PNHO".utf8) + [1, kind, 0, 0, 0, 0, 0, 0]
    }

    /// The next frame's kind, its body read and any descriptors dropped; nil when none came.
    private static func frameKind(_ socket: Int32) -> UInt8? {
        guard let header = read(socket, 12) else { return nil }
        let length = header[8..<12].reduce(0) { $0 << 8 | Int($1) }
        guard read(socket, length) != nil else { return nil }
        return header[5]
    }

    private static func read(_ socket: Int32, _ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = bytes[offset...].withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard got > 0 else { return nil }
            offset += got
        }
        return bytes
    }

    private static func write(_ socket: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private static func unixSocket(_ path: String, listen: Bool) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8.prefix(107)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                listen ? bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) : connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0, !listen || Glibc.listen(descriptor, 1) == 0 else {
            close(descriptor)
            throw TestFailure("\(path): errno \(errno)")
        }
        return descriptor
    }
}

/// The new process's side: the first process of penha's user to connect to its handover
/// socket is taken for the old penha; it must be the one serving the control socket.
final class TakeoverPeerIntegrationTests: XCTestCase {
    func testTheTakerRefusesAProcessThatIsNotThePenhaOnTheControlSocket() throws {
        try NetworkLab.requireRoot()
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        // The old penha held still, so that another process of its user connects first.
        kill(penha.process.processIdentifier, SIGSTOP)
        defer { kill(penha.process.processIdentifier, SIGCONT) }
        let taker = Process()
        taker.executableURL = penhaBinary
        taker.arguments = ["run", "--takeover", penha.control, "-f", "-C", temporaryPath("taker.sock"),
                           "127.0.0.1:\(freePort())", "127.0.0.1:\(a.port)"]
        let errors = Pipe()
        taker.standardError = errors
        try taker.run()
        defer { if taker.isRunning { kill(taker.processIdentifier, SIGKILL) } }
        let directory = (penha.control as NSString).deletingLastPathComponent
        let path = "\(directory)/.penha-handover-\(taker.processIdentifier)"
        var connected: Int32 = -1
        // Bounded: the taker listens at once.
        for _ in 0..<500 where connected < 0 {
            connected = Self.connect(path)
            if connected < 0 { usleep(10_000) }
        }
        XCTAssertGreaterThanOrEqual(connected, 0, "the taker's handover socket")
        defer { close(connected) }
        for _ in 0..<1000 where taker.isRunning { usleep(10_000) }
        let text = String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
        XCTAssertNotEqual(taker.isRunning ? 0 : taker.terminationStatus, 0)
        XCTAssertTrue(text.contains("is not the penha on"), text)
        kill(penha.process.processIdentifier, SIGCONT)
        XCTAssertEqual(try penha.command("pid"), ["\(penha.process.processIdentifier)"], "the old penha serves on")
    }

    private static func connect(_ path: String) -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8.prefix(107)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result == 0 { return descriptor }
        close(descriptor)
        return -1
    }
}
