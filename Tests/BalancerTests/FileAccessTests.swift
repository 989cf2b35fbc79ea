import Foundation
import XCTest
@testable import Balancer
@testable import BalancerCore

/// Files penha opens by name: never a blocking open, never anything but a regular file,
/// never written through a planted symlink.
final class FileAccessTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = makeTemporaryDirectory("files")
    }

    override func tearDown() {
        removeTemporaryDirectory(directory)
    }

    private func fifo() -> String {
        let path = directory + "/fifo"
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        return path
    }

    /// "ok", or the error as an operator reads it.
    private func outcome(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "ok"
        } catch {
            return "\(error)"
        }
    }

    func testReadingAFIFOIsRefusedAtOnce() {
        let path = fifo()
        XCTAssertThrowsError(try FileAccess.read(path, maxBytes: 10)) { error in
            XCTAssertEqual("\(error)", "cannot read \(path): not a regular file")
        }
    }

    func testReadingADirectoryOrADeviceIsRefused() {
        XCTAssertThrowsError(try FileAccess.read(directory, maxBytes: 10)) { XCTAssertTrue("\($0)".hasSuffix("not a regular file")) }
        XCTAssertThrowsError(try FileAccess.read("/dev/zero", maxBytes: 10)) { XCTAssertTrue("\($0)".hasSuffix("not a regular file")) }
    }

    func testAFileLargerThanTheBoundIsRefused() throws {
        let path = directory + "/big"
        try String(repeating: "x", count: 100).write(toFile: path, atomically: false, encoding: .utf8)
        XCTAssertEqual(try FileAccess.read(path, maxBytes: 100).count, 100)
        XCTAssertThrowsError(try FileAccess.read(path, maxBytes: 99)) { XCTAssertTrue("\($0)".contains("larger than 99 bytes")) }
    }

    func testAppendingToAFIFOOrADeviceIsRefused() {
        let path = fifo()
        XCTAssertThrowsError(try FileAccess.openForAppending(path, action: "open log")) { error in
            XCTAssertEqual("\(error)", "cannot open log \(path): not a regular file")
        }
        XCTAssertThrowsError(try FileAccess.openForAppending("/dev/full", action: "open log"))
    }

    func testCheckingForAppendingAgreesWithOpeningAndCreatesNothing() throws {
        let existing = directory + "/existing.log", readOnly = directory + "/read-only.log"
        for path in [existing, readOnly] { try "line\n".write(toFile: path, atomically: false, encoding: .utf8) }
        XCTAssertEqual(chmod(readOnly, 0o444), 0)
        let missing = directory + "/new.log"
        for path in [fifo(), "/dev/full", directory, directory + "/missing/x.log", existing + "/x.log", readOnly, existing, missing] {
            let checked = outcome { try FileAccess.checkAppendable(path, action: "open log") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: missing), "checking \(path) created nothing")
            XCTAssertEqual(checked, outcome { close(try FileAccess.openForAppending(path, action: "open log")) }, path)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: missing), "opening it created it")
    }

    func testReplacingADeviceIsRefusedAndLeavesIt() {
        XCTAssertThrowsError(try FileAccess.replace("/dev/full", with: "x")) { error in
            XCTAssertEqual("\(error)", "cannot write /dev/full: not a regular file")
        }
        var status = stat()
        XCTAssertEqual(stat("/dev/full", &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFCHR, "still a character device")
    }

    func testASymlinkAtTheOldTemporaryNameIsNotFollowed() throws {
        let victim = directory + "/victim"
        try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let target = directory + "/penha.conf"
        XCTAssertEqual(symlink(victim, target + ".tmp"), 0)
        try FileAccess.replace(target, with: "blacklist 5\n")
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious\n")
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "blacklist 5\n")
        let left = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        XCTAssertEqual(left, ["penha.conf", "penha.conf.tmp", "victim"], "no temporary file left behind")
    }

    func testReplacingKeepsTheFilesMode() throws {
        let target = directory + "/report.html"
        try "old".write(toFile: target, atomically: false, encoding: .utf8)
        XCTAssertEqual(chmod(target, 0o640), 0)
        try FileAccess.replace(target, with: "new")
        var status = stat()
        XCTAssertEqual(stat(target, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o640)
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "new")
    }

    func testAMissingDirectoryIsFoundWhenTheCommandIsGiven() {
        XCTAssertThrowsError(try FileAccess.checkReplaceable(directory + "/missing/report.html")) { error in
            XCTAssertEqual("\(error)", "cannot write \(directory)/missing/report.html: no such file or directory")
        }
        XCTAssertNoThrow(try FileAccess.checkReplaceable(directory + "/report.html"))
        XCTAssertThrowsError(try FileAccess.checkReplaceable("/dev/null"))
    }

    func testConfigFilesWithCRLFLineEndingsParseLineByLine() throws {
        let lines = try ConfigFile.parse("blacklist 5\r\nroundrobin\r\n# comment\r\ntracking 9\r\n", name: "f")
        XCTAssertEqual(lines.map(\.command), [.setting(.blacklist, 5), .flag(.roundRobin, true), .setting(.tracking, 9)])
        XCTAssertEqual(lines.map(\.origin), ["f:1", "f:2", "f:4"])
    }

    func testIncludingAFIFOIsAConfigurationError() {
        let path = fifo()
        XCTAssertThrowsError(try ConfigFile.parse("include \(path)\n", name: "f")) { error in
            XCTAssertEqual((error as? PenhaError)?.kind, .configuration)
            XCTAssertEqual("\(error)", "cannot read \(path): not a regular file")
        }
    }
}
