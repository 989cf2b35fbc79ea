import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `include` loops and includes that multiply, against the real binary: `penha check` and a
/// SIGHUP reload end at once with one error each instead of minutes of work and an error
/// per copy.
final class IncludeBudgetIntegrationTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = temporaryPath("includes")
        guard mkdir(directory, 0o755) == 0 else { throw TestFailure("cannot create \(directory)") }
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func write(_ name: String, _ text: String) throws -> String {
        let path = "\(directory)/\(name)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Seven files each including the next eight times: 8^6 copies of the last (once 30 s of work).
    private func multiplyingIncludes() throws -> String {
        var next = try write("f6.conf", "roundrobin\n")
        for index in (0..<6).reversed() {
            next = try write("f\(index).conf", String(repeating: "include \(next)\n", count: 8))
        }
        return next
    }

    func testCheckEndsIncludesThatMultiplyWithOneError() throws {
        let main = try write("main.conf", "server 0 address 127.0.0.1 port 9\ninclude \(try multiplyingIncludes())\n")
        let result = try runPenha(["check", "-F", main, "127.0.0.1:\(freePort())"], timeout: 10)
        XCTAssertEqual(result.status, 2, result.stderr)
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("is over 100000 lines, each file counted as often as it is included"), result.stderr)
    }

    func testCheckNamesAFileThatIncludesItselfOncePerInclude() throws {
        let loop = "\(directory)/loop.conf"
        _ = try write("loop.conf", String(repeating: "include \(loop)\n", count: 5) + "server 0 address 127.0.0.1 port 9\n")
        let result = try runPenha(["check", "-F", loop, "127.0.0.1:\(freePort())"], timeout: 10)
        XCTAssertEqual(result.status, 2, result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n"),
                       (1...5).map { "penha: \(loop):\($0): \(loop) includes itself: \(loop) -> \(loop)"[...] })
    }

    func testAReloadOfIncludesThatMultiplyFailsAtOnceAndPenhaAnswers() throws {
        let a = try Backend("A")
        let main = try write("main.conf", "server 0 address 127.0.0.1 port \(a.port)\n")
        let penha = try Penha(["-F", main], servers: [])
        defer { penha.stop() }
        _ = try write("main.conf", "server 0 address 127.0.0.1 port \(a.port)\nblacklist 7\ninclude \(try multiplyingIncludes())\n")
        // Before the budget this reload kept the blocking pool busy for half a minute.
        try penha.signal(SIGHUP, thenLogs: "reload failed", timeout: 5)
        XCTAssertTrue(penha.stderr.contains("over 100000 lines"), penha.stderr)
        XCTAssertEqual(try penha.command("blacklist"), ["30"], "nothing of the file applied")
    }
}
