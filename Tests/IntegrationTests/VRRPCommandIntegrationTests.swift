import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The `vrrp` command parsed by a standalone penha (no root, no namespaces): out-of-bound
/// numbers are refused with the bound named, wherever the command comes from.
final class VRRPCommandIntegrationTests: XCTestCase {
    /// Trapped on an arithmetic overflow (issue 16): seconds were multiplied before any bound.
    static let overflowingCommand = "vrrp interface eth0 vrid 1 priority 100 vip 192.0.2.1/24 advert 99999999999999999s"
    static let bound = "up to 40950ms (40.95s)"

    func testOverflowingAdvertOnTheControlSocketIsAnErrorAndPenhaStaysUp() throws {
        let backend = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(backend.port)"])
        let answer = try penha.command(Self.overflowingCommand)
        XCTAssertEqual(answer.count, 1, "\(answer)")
        XCTAssertTrue(answer.first?.hasPrefix("error: vrrp: advert") == true, "\(answer)")
        XCTAssertTrue(answer.first?.contains(Self.bound) == true, "\(answer)")
        XCTAssertTrue(penha.process.isRunning, penha.stderr)
        XCTAssertEqual(try penha.command("status").first, "role STANDALONE", "still answering")
        XCTAssertEqual(try whoAnswers(penha), "A", "still relaying")
    }

    func testOverflowingAdvertInOptionsAndConfigFileExitsTwoNamingTheBound() throws {
        let fromOption = try runPenha(["-f", "-C", temporaryPath("c.sock"), "-O", Self.overflowingCommand,
                                       "127.0.0.1:\(freePort())", "127.0.0.1:9"])
        XCTAssertEqual(fromOption.status, 2, fromOption.stderr)
        XCTAssertEqual(fromOption.stderr.split(separator: "\n").count, 1, fromOption.stderr)
        XCTAssertTrue(fromOption.stderr.contains(Self.bound), fromOption.stderr)

        let config = temporaryPath("vrrp.conf")
        defer { unlink(config) }
        try "\(Self.overflowingCommand)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let fromFile = try runPenha(["-f", "-C", temporaryPath("c.sock"), "-F", config, "127.0.0.1:\(freePort())", "127.0.0.1:9"])
        XCTAssertEqual(fromFile.status, 2, fromFile.stderr)
        XCTAssertTrue(fromFile.stderr.contains("\(config):1") && fromFile.stderr.contains(Self.bound), fromFile.stderr)
    }

    /// A `vrrp` command adds an instance at runtime; one that cannot start (here: no such
    /// interface, so nothing touches this host's network) is an error and leaves no instance in
    /// the configuration, and `no vrrp` of one that does not run is an error too.
    func testARuntimeInstanceThatCannotStartChangesNothing() throws {
        let backend = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(backend.port)"])
        let answer = try penha.command("vrrp interface penha-none0 vrid 9 priority 100 vip 192.0.2.1/24")
        XCTAssertEqual(answer.count, 1, "\(answer)")
        XCTAssertTrue(answer.first?.hasPrefix("error: vrrp not changed: ") == true, "\(answer)")
        XCTAssertTrue(answer.first?.contains("penha-none0") == true, "\(answer)")
        let written = temporaryPath("written.conf")
        defer { unlink(written) }
        _ = try penha.command("write \(written)")
        XCTAssertFalse(try String(contentsOfFile: written, encoding: .utf8).contains("vrrp"), "not in the configuration")
        XCTAssertEqual(try penha.command("no vrrp vrid 9"), ["error: no vrrp instance with vrid 9"])
        XCTAssertEqual(try penha.command("status").first, "role STANDALONE")
        XCTAssertEqual(try whoAnswers(penha), "A", "still relaying")
        // In a batch, the lines before it do not apply either.
        let batch = temporaryPath("batch.conf")
        defer { unlink(batch) }
        try "blacklist 9\nvrrp interface penha-none0 vrid 9 priority 100 vip 192.0.2.1/24\n".write(toFile: batch, atomically: true, encoding: .utf8)
        XCTAssertTrue(try penha.command("include \(batch)").first?.hasPrefix("error: vrrp not changed: ") == true)
        XCTAssertEqual(try penha.command("blacklist"), ["30"])
    }
}
