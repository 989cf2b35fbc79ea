import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `penha ctl` against a listener that is not penha: an answer too long, or one that
/// trickles in forever, ends with a clear error instead of memory or time without bound.
final class ControlClientIntegrationTests: XCTestCase {
    /// A Unix socket that takes one connection, reads the command line, then runs `answer`
    /// on the connection (on a thread of its own) and closes it.
    private final class FakeControl: @unchecked Sendable {
        let path = temporaryPath("fake.sock")
        private let listener: Int32
        private let done = DispatchSemaphore(value: 0)

        init(answer: @escaping @Sendable (Int32) -> Void) throws {
            let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            self.listener = listener
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { buffer in
                for (index, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard listener >= 0, bound == 0, listen(listener, 1) == 0 else { throw TestFailure("cannot listen on \(path)") }
            Thread.detachNewThread { [done] in
                let connection = accept(listener, nil, nil)
                if connection >= 0 {
                    var byte: UInt8 = 0
                    while recv(connection, &byte, 1, 0) == 1, byte != UInt8(ascii: "\n") {}
                    answer(connection)
                    close(connection)
                }
                done.signal()
            }
        }

        /// Waits (bounded) for the answering thread, then removes the socket.
        func stop() {
            _ = done.wait(timeout: .now() + 5)
            close(listener)
            unlink(path)
        }
    }

    /// Sends every byte, or stops when the client has gone.
    private static func send(_ bytes: [UInt8], to fd: Int32) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    func testAnAnswerLongerThanTheBoundIsRefused() throws {
        // 17 MiB of one long "line": the bound is 16 MiB.
        let fake = try FakeControl { fd in
            let block = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
            for _ in 0..<17 where Self.send(block, to: fd) {}
        }
        defer { fake.stop() }
        let result = try runPenha(["ctl", fake.path, "status"], timeout: 15)
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stdout, "")
        XCTAssertEqual(result.stderr, "penha: the answer from \(fake.path) is longer than \(16 << 20) bytes\n")
    }

    func testAnAnswerThatTricklesEndsAtTheDeadline() throws {
        // A byte every half second: each wait is short, the whole answer never comes.
        let fake = try FakeControl { fd in
            for _ in 0..<60 {
                guard Self.send([UInt8(ascii: "x")], to: fd) else { return }
                usleep(500_000)
            }
        }
        defer { fake.stop() }
        let started = Date()
        let result = try runPenha(["ctl", fake.path, "status"], timeout: 25)
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stderr, "penha: no whole answer from \(fake.path) within 10 s\n")
        XCTAssertLessThan(Date().timeIntervalSince(started), 15, "the deadline is 10 s from the start")
    }
}
