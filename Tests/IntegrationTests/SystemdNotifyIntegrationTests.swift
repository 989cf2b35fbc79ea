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
