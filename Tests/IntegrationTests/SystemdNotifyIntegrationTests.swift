import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// systemd's side of `$NOTIFY_SOCKET`: a datagram socket the test owns, penha told its path.
final class SystemdNotifyIntegrationTests: XCTestCase {
    func testReadyReloadingWatchdogStatusAndStopping() throws {
        let socket = try UnixDatagramListener()
        let backend = try Backend("a")
        defer { backend.stop() }
        // 400 ms: pings every 200 ms, so several arrive within the test's waits.
        let penha = try Penha([], servers: ["127.0.0.1:\(backend.port)"],
                              environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "400000"])
        defer { penha.stop() }

        let ready = try socket.next { $0.contains("READY=1") }
        XCTAssertTrue(ready.contains("STATUS=STANDALONE, 0 connections"), ready)
        _ = try socket.next { $0 == "WATCHDOG=1" }
        _ = try socket.next { $0 == "WATCHDOG=1" }
        _ = try socket.next { $0.hasPrefix("STATUS=STANDALONE") }

        let before = monotonicMicroseconds()
        kill(penha.process.processIdentifier, SIGHUP)
        let reloading = try socket.next { $0.contains("RELOADING=1") }
        let stamp = reloading.split(separator: "\n").first { $0.hasPrefix("MONOTONIC_USEC=") }
            .flatMap { Int64($0.dropFirst("MONOTONIC_USEC=".count)) }
        XCTAssertNotNil(stamp, reloading)
        if let stamp {
            // systemd compares it with its own CLOCK_MONOTONIC: it must be that clock, now.
            XCTAssertTrue((before...monotonicMicroseconds()).contains(stamp), "\(stamp) not in \(before)...")
        }
        _ = try socket.next { $0.contains("READY=1") }

        kill(penha.process.processIdentifier, SIGTERM)
        _ = try socket.next { $0 == "STOPPING=1" }
        XCTAssertEqual(penha.waitForExit(timeout: 10), 0)
    }

    func testAWatchdogForAnotherProcessIsNotPinged() throws {
        let socket = try UnixDatagramListener()
        let backend = try Backend("a")
        defer { backend.stop() }
        let penha = try Penha([], servers: ["127.0.0.1:\(backend.port)"],
                              environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"])
        defer { penha.stop() }
        _ = try socket.next { $0.contains("READY=1") }
        let received = socket.all(for: 0.6)
        XCTAssertFalse(received.contains("WATCHDOG=1"), "\(received)")
    }

    /// A wedged engine thread (frozen with ptrace) stops the watchdog's pings, so systemd
    /// restarts penha; they come back once the thread turns again. Before, the pings came from
    /// the control event loop alone and went on.
    func testAFrozenEngineThreadStopsTheWatchdogPings() throws {
        let socket = try UnixDatagramListener()
        let backend = try Backend("a")
        defer { backend.stop() }
        let penha = try Penha(["-O", "threads 2"], servers: ["127.0.0.1:\(backend.port)"],
                              environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "400000"])
        defer { penha.stop() }
        _ = try socket.next { $0.contains("READY=1") }
        _ = try socket.next { $0 == "WATCHDOG=1" }
        let freezer = try ThreadFreezer(penha, thread: "penha-engine-1")
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("not feeding systemd's watchdog") }, penha.stderr)
        XCTAssertTrue(penha.stderr.contains("on penha-engine-1"), "the log names the thread: \(penha.stderr)")
        _ = socket.all(for: 0.1)  // what was sent before the look that found it
        XCTAssertFalse(socket.all(for: 1).contains("WATCHDOG=1"), "no ping while an engine thread is frozen")
        freezer.release()
        _ = try socket.next(timeout: 5) { $0 == "WATCHDOG=1" }
    }

    /// STATUS= says MASTER as soon as the node becomes master, not at the next 5-second update.
    func testTheStatusChangesAtOnceWhenTheRoleChanges() throws {
        let lab = try NetworkLab()
        let socket = try UnixDatagramListener()
        let penha = try Penha(["-O", "vrrp interface eth0 vrid 51 priority 200 vip 192.0.2.10/24 advert 100ms"],
                              listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("a"),
                              environment: ["NOTIFY_SOCKET": socket.path])
        defer { penha.stop() }
        let ready = try socket.next { $0.contains("READY=1") }
        XCTAssertFalse(ready.contains("STATUS=MASTER"), "alone, it becomes master after the master-down interval: \(ready)")
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("-> MASTER") }, penha.stderr)
        _ = try socket.next(timeout: 1) { $0.hasPrefix("STATUS=MASTER") }
    }

    private func monotonicMicroseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }
}

/// A bound AF_UNIX datagram socket, as systemd listens on; removed when the test ends.
final class UnixDatagramListener {
    let path = temporaryPath("notify")
    private let fd: Int32

    init() throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw TestFailure("cannot bind \(path): errno \(errno)")
        }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// The next message that `matches`, skipping others; fails after `timeout` seconds.
    func next(timeout: Double = 10, _ matches: (String) -> Bool) throws -> String {
        let deadline = Date() + timeout
        var seen: [String] = []
        while Date() < deadline {
            guard let message = receive(within: deadline.timeIntervalSinceNow) else { break }
            if matches(message) { return message }
            seen.append(message)
        }
        throw TestFailure("no matching notification within \(timeout) s; received \(seen)")
    }

    /// Every message in the next `seconds`.
    func all(for seconds: Double) -> [String] {
        let deadline = Date() + seconds
        var messages: [String] = []
        while let message = receive(within: deadline.timeIntervalSinceNow) { messages.append(message) }
        return messages
    }

    private func receive(within seconds: Double) -> String? {
        guard seconds > 0 else { return nil }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(seconds * 1000) + 1) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
    }
}
