import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `penha ctl` against a listener that is not penha: an answer too long, or one that
/// trickles in forever, ends with a clear error instead of memory or time without bound.
final class ControlClientIntegrationTests: XCTestCase {
    /// A Unix socket that takes `connections` connections one after the other, reads each one's
    /// command line, then runs `answer` with it on the connection (on a thread of its own) and
    /// closes it.
    private final class FakeControl: @unchecked Sendable {
        let path = temporaryPath("fake.sock")
        private let listener: Int32
        private let done = DispatchSemaphore(value: 0)

        init(connections: Int = 1, answer: @escaping @Sendable (Int32, String) -> Void) throws {
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
                for _ in 0..<connections {
                    let connection = accept(listener, nil, nil)
                    guard connection >= 0 else { break }
                    var line: [UInt8] = []
                    var byte: UInt8 = 0
                    while line.count < 4096, recv(connection, &byte, 1, 0) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
                    answer(connection, String(decoding: line, as: UTF8.self))
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
        let fake = try FakeControl { fd, _ in
            let block = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
            for _ in 0..<17 where Self.send(block, to: fd) {}
        }
        defer { fake.stop() }
        let result = try runPenha(["ctl", fake.path, "status"], timeout: 15)
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stdout, "")
        XCTAssertEqual(result.stderr, "penha: the answer from \(fake.path) is longer than \(16 << 20) bytes\n")
    }

    /// `penha status --json` prints the JSON penha answers to `status json`; a penha from
    /// before that command (met during an upgrade) refuses it, and its `status` lines are
    /// encoded instead.
    func testStatusJSONFromAPenhaThatDoesNotKnowStatusJSON() throws {
        let lines = ["role STANDALONE", "listen 127.0.0.1:80", "uptime 5", "connections 0 total 3 refused 0"]
        let fake = try FakeControl(connections: 2) { fd, command in
            let answer = command == "status" ? lines.joined(separator: "\n") + "\n" : "error: 'status' takes no argument\n"
            _ = Self.send(Array(answer.utf8), to: fd)
        }
        defer { fake.stop() }
        let result = try runPenha(["status", "-C", fake.path, "--json"], timeout: 15)
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["role"] as? String, "STANDALONE")
        XCTAssertEqual(object["totalConnections"] as? Int, 3)
    }

    func testAnAnswerThatTricklesEndsAtTheDeadline() throws {
        // A byte every half second: each wait is short, the whole answer never comes.
        let fake = try FakeControl { fd, _ in
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
