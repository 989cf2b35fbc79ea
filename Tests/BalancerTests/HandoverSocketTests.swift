import Foundation
import Synchronization
import XCTest
@testable import Engine

/// The handover socket's file, made by a process that may be root (`penha upgrade` of a
/// penha run with `-u`) beside the control socket, in a directory that user may own.
final class HandoverSocketTests: XCTestCase {
    /// Whoever can write the directory may swap the freshly bound socket for a symlink: the
    /// mode and owner the listening side sets must land on the socket or nowhere, never on
    /// what the symlink names (as root: any file on the host given to that user).
    func testTheSocketsModeAndOwnerAreNotSetThroughASymlinkSwappedIn() throws {
        let directory = makeTemporaryDirectory("handover-symlink")
        defer { removeTemporaryDirectory(directory) }
        let canary = directory + "/canary", path = directory + "/handover.sock"
        XCTAssertTrue(FileManager.default.createFile(atPath: canary, contents: Data("x".utf8)))
        XCTAssertEqual(chmod(canary, 0o644), 0)
        let ownerBefore = try XCTUnwrap(Self.status(canary)).st_uid
        // Root gives the socket to another user (chown), anyone else keeps it (chmod only).
        let otherUser: uid_t = geteuid() == 0 ? 65534 : geteuid()
        let stop = Atomic<Bool>(false)
        let swapper = Thread {
            // Bounded by the test's own loop, which sets `stop` when it ends.
            while !stop.load(ordering: .relaxed) {
                unlink(path)
                symlink(canary, path)
            }
        }
        swapper.start()
        defer { stop.store(true, ordering: .relaxed) }
        for _ in 0..<20_000 {
            if let listener = try? HandoverSocket.listen(at: path, connectableBy: otherUser) { close(listener) }
            let canaryNow = try XCTUnwrap(Self.status(canary))
            if canaryNow.st_mode & 0o7777 != 0o644 || canaryNow.st_uid != ownerBefore { break }
        }
        stop.store(true, ordering: .relaxed)
        let after = try XCTUnwrap(Self.status(canary))
        XCTAssertEqual(after.st_mode & 0o7777, 0o644, "the canary's mode was changed through the symlink")
        XCTAssertEqual(after.st_uid, ownerBefore, "the canary was given away through the symlink")
    }

    /// Without a swap, the socket is made for its user alone: mode 0600 (the socket's own,
    /// set before the bind), owned by `user`.
    func testTheSocketIsItsUsersAlone() throws {
        let directory = makeTemporaryDirectory("handover-mode")
        defer { removeTemporaryDirectory(directory) }
        let path = directory + "/handover.sock"
        let user: uid_t = geteuid() == 0 ? 65534 : geteuid()
        let previous = umask(0)
        defer { umask(previous) }
        let listener = try HandoverSocket.listen(at: path, connectableBy: user)
        defer { close(listener) }
        let made = try XCTUnwrap(Self.status(path))
        XCTAssertEqual(made.st_mode & 0o7777, 0o600)
        XCTAssertEqual(made.st_uid, user)
    }

    private static func status(_ path: String) -> stat? {
        var result = stat()
        return stat(path, &result) == 0 ? result : nil
    }
}
