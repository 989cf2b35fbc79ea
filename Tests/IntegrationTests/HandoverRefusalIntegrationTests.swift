import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A handover that fails leaves the old penha serving, with the reason in its log and in
/// the answer (issue 20): a taker of another user, and a taker that sends a malformed,
/// truncated or oversized frame or nothing at all.
final class HandoverRefusalIntegrationTests: XCTestCase {
    /// Plays a new process that asks for a handover, then answers the listener's frame with
    /// `answer` (nil: nothing, until the old process gives up). Returns the old one's answer.
    private func fakeTakeover(_ penha: Penha, answer: [UInt8]?) throws -> String {
        let path = temporaryPath("handover.sock")
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer {
            close(listener)
            unlink(path)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8.prefix(107)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        // Open to every user: whether the taker may take over is penha's to check (SO_PEERCRED), not the file's.
        guard bound == 0, chmod(path, 0o666) == 0, listen(listener, 1) == 0 else { throw TestFailure("cannot listen on \(path): errno \(errno)") }
        let control = try Client(unixPath: penha.control, timeout: 15)
        try control.send("PENHA-HANDOVER 1 \(path)\n")
        var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, 5000) == 1 else { return try control.readLine() ?? "no answer" }
        let connection = accept(listener, nil, nil)
        defer { close(connection) }
        // The listener's frame (its descriptor, not asked for here, is closed by the kernel).
        var header = [UInt8](repeating: 0, count: 12)
        guard recv(connection, &header, 12, Int32(MSG_WAITALL)) == 12, Array(header[0..<4]) == Array("PNHO".utf8) else {
            throw TestFailure("no listener frame")
        }
        if let answer {
            _ = send(connection, answer, answer.count, Int32(MSG_NOSIGNAL))
            // As a taker that crashed after it: a frame cut short is never completed.
            shutdown(connection, Int32(SHUT_WR))
        }
        return try control.readLine() ?? "no answer"
    }

    /// The old process serves on: new clients are answered, and it still relays the stream.
    private func assertServing(_ penha: Penha, _ stream: Client, _ round: String) {
        XCTAssertEqual(try? whoAnswers(penha), "A", "\(round): new clients are served")
        XCTAssertNoThrow(try stream.send("still here \(round)\n"))
        XCTAssertEqual(try? stream.readLine(), "still here \(round)", "\(round): the stream goes on")
    }

    func testMalformedTruncatedOversizedOrMissingFramesAreRefusedAndTheOldPenhaServesOn() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        let frame = { (kind: UInt8, descriptors: UInt16, length: UInt32) -> [UInt8] in
            Array("PNHO".utf8) + [1, kind, UInt8(descriptors >> 8), UInt8(descriptors & 0xff),
                                  UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
        }
        let cases: [(String, [UInt8]?, String)] = [
            ("malformed", Array("HTTP/1.1 200 OK\r\n".utf8), "not a handover frame (bad magic)"),
            ("another version", Array("PNHO".utf8) + [9, 2, 0, 0, 0, 0, 0, 0], "handover version 9"),
            ("truncated", Array(frame(2, 0, 0).prefix(7)), "the other process closed the handover"),
            ("oversized", frame(3, 0, 64 << 20), "a body of 67108864 bytes"),
            ("out of order", frame(4, 0, 0), "done where accepting was due"),
            ("nothing", nil, "no whole frame within 5"),
        ]
        for (name, answer, reason) in cases {
            let reply = try fakeTakeover(penha, answer: answer)
            XCTAssertTrue(reply.hasPrefix("error: handover failed, the old process serves on: ") && reply.contains(reason), "\(name): \(reply)")
            // The log comes through a pipe read apart from the answer: bounded wait for it.
            XCTAssertTrue(waitFor(timeout: 2) { penha.stderr.contains(reason) }, "\(name): the reason is logged: \(penha.stderr)")
            assertServing(penha, stream, name)
        }
        XCTAssertTrue(penha.process.isRunning)
    }

    func testARequestThatIsNotAHandoverOfThisVersionIsRefusedBeforeTheParser() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        for line in ["PENHA-HANDOVER 1 relative/path", "PENHA-HANDOVER 2 /tmp/x", "PENHA-HANDOVER"] {
            let answer = try penha.command(line)
            XCTAssertEqual(answer.count, 1, "\(line): \(answer)")
            XCTAssertTrue(answer.first?.hasPrefix("error: handover refused: a handover is asked for on a Unix control socket") ?? false,
                          "\(line): \(answer)")
        }
        XCTAssertEqual(try whoAnswers(penha), "A")
    }

    /// A handover request from uid 1 (daemon): the old process answers with the refusal.
    static let otherUserRequest = """
        import socket, sys
        control = socket.socket(socket.AF_UNIX)
        control.settimeout(10)
        control.connect(sys.argv[1])
        control.sendall(b"PENHA-HANDOVER 1 /tmp/penha-handover-nowhere\\n")
        print(control.makefile().readline().strip())
        """

    func testOnlyRootOrAProcessOfPenhasOwnUserMayTakeOver() throws {
        try NetworkLab.requireRoot()
        let a = try Backend("A")
        // The old penha runs as nobody; uid 1 can reach its control socket (opened for it here), but is not its user.
        let penha = try Penha(["-u", "nobody"], servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        XCTAssertEqual(chmod(penha.control, 0o666), 0)
        let reply = try runProgram("/usr/bin/env", ["setpriv", "--reuid=1", "--regid=1", "--clear-groups", "/usr/bin/python3", "-c",
                                                    Self.otherUserRequest, penha.control]).stdout
        XCTAssertEqual(reply.trimmingCharacters(in: .whitespacesAndNewlines),
                       "error: handover failed, the old process serves on: only root or penha's own user (uid 65534) may take over, not uid 1")
        XCTAssertTrue(penha.stderr.contains("only root or penha's own user"), penha.stderr)
        assertServing(penha, stream, "another user")
    }
}
