import XCTest
@testable import Balancer
@testable import BalancerCore

/// One error type: each failure says its kind, a configuration line where it came from, and
/// the kind alone decides the exit status.
final class PenhaErrorTests: XCTestCase {
    private func thrown(_ body: () throws -> Void) -> PenhaError? {
        do {
            try body()
        } catch {
            return error as? PenhaError
        }
        return nil
    }

    func testEachFailureSaysItsKind() throws {
        XCTAssertEqual(thrown { _ = try Command.parse("timeout 0") }?.kind, .configuration)
        XCTAssertEqual(thrown { _ = try FileAccess.read("/nonexistent/penha-test", maxBytes: 16) }?.kind, .io)
        XCTAssertEqual(thrown { try FileAccess.replace("/nonexistent/penha-test", with: "x") }?.kind, .io)
        let configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [])
        var runtime = Runtime(configuration: configuration, state: makeState(configuration, clients: 1))
        let facts = Runtime.Facts(now: at(0), started: at(0), vrrp: [], listen: "127.0.0.1:80", control: nil, pid: 1,
                                  exitEnabled: false, configFile: nil)
        XCTAssertEqual(thrown { _ = try runtime.execute([ConfigLine(.close(7), origin: "f:1")], facts: facts, resolved: [:]) },
                       PenhaError.command("no connection 7"), "a command that cannot run here is not given a line")
    }

    /// A configuration error knows its line apart from its reason, an included file's line
    /// inside the line that included it.
    func testAConfigurationErrorCarriesItsOrigin() throws {
        let error = thrown { _ = try ConfigFile.parse("roundrobin\ninclude inner\n", name: "outer", reading: { _ in "tracking x\n" }) }
        XCTAssertEqual(error?.kind, .configuration)
        XCTAssertEqual(error?.origin, "inner:1")
        XCTAssertEqual(error?.reason, "'tracking' needs a non-negative number, not 'x'")
        let nested = PenhaError("no such list", kind: .configuration).at("inner:2").at("-O 'include inner'")
        XCTAssertEqual(nested.origin, "-O 'include inner': inner:2")
        XCTAssertEqual("\(nested)", "-O 'include inner': inner:2: no such list")
        XCTAssertEqual(PenhaError.file("open", "/x", "no such file").at("f:1").kind, .io, "an origin keeps the kind")
    }

    /// pen's convention: what was asked wrongly exits 2, an operation that failed exits 1.
    func testTheKindDecidesTheExitStatus() {
        XCTAssertEqual(PenhaError("bad", kind: .usage).exitStatus, 2)
        XCTAssertEqual(ConfigurationError("bad").exitStatus, 2)
        XCTAssertEqual(PenhaError.command("no connection 7").exitStatus, 2)
        XCTAssertEqual(PenhaError.file("open", "/x", "permission denied").exitStatus, 1)
    }
}
