import XCTest
@testable import BalancerCore

/// The control socket's answers: lines, then `error: ` lines, read back the same.
final class ReplyTests: XCTestCase {
    func testAnswersRoundTripThroughTheWire() {
        let replies = [Reply(lines: ["0 addr 127.0.0.1 port 80"]), Reply(errors: ["no connection 7"]),
                       Reply(lines: ["5"], errors: ["TLS not reloaded, keeping the previous certificates: x"]), Reply()]
        for reply in replies {
            XCTAssertEqual(Reply(wireLines: reply.wireLines), reply)
        }
        XCTAssertEqual(Reply(refusing: PenhaError.command("no connection 7")).wireLines, ["error: no connection 7"])
    }

    func testACommandThatCannotRunIsACommandErrorNotAConfigurationError() throws {
        let configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [])
        var runtime = Runtime(configuration: configuration, state: makeState(configuration, clients: 1))
        let facts = Runtime.Facts(now: at(0), started: at(0), vrrp: [], listen: "127.0.0.1:80", control: nil, pid: 1,
                                  exitEnabled: false, configFile: nil)
        for line in ["close 7", "exit", "write"] {
            XCTAssertThrowsError(try runtime.execute([ConfigLine(try Command.parse(line))], facts: facts, resolved: [:])) {
                XCTAssertEqual(($0 as? PenhaError)?.kind, .command, "\(line): \($0)")
            }
        }
        XCTAssertThrowsError(try runtime.execute([ConfigLine(.setting(.clientsMax, nil)), ConfigLine(try Command.parse("server 3 port 1"))],
                                                 facts: facts, resolved: [:])) {
            XCTAssertEqual(($0 as? PenhaError)?.kind, .configuration, "\($0)")
        }
    }
}
