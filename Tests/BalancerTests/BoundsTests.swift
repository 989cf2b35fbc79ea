import XCTest
@testable import Balancer
@testable import BalancerCore

/// Every number a command or option takes is bounded where it is parsed: a huge value is an
/// error naming the bound, never an allocation or an arithmetic trap.
final class BoundsTests: XCTestCase {
    private func error(_ line: String) -> String? {
        do {
            _ = try Command.parse(line)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testEverySettingRefusesAValuePastItsBoundByName() {
        for setting in Command.Setting.allCases {
            let past = setting.range.upperBound + 1
            let message = error("\(setting.rawValue) \(past)")
            XCTAssertNotNil(message, "\(setting.rawValue) \(past) was accepted")
            XCTAssertTrue(message?.contains(setting.rawValue) == true, message ?? "")
            XCTAssertEqual(try Command.parse("\(setting.rawValue) \(setting.range.upperBound)"),
                           .setting(setting, setting.range.upperBound), "the bound itself is taken")
        }
    }

    func testTheCommandsThatCrashedPenhaAreErrors() {
        XCTAssertEqual(error("clients_max 99999999999"), "clients_max must be at most 1000000, not 99999999999")
        XCTAssertEqual(error("blacklist 99999999999"), "blacklist must be at most 31536000, not 99999999999")
        XCTAssertEqual(error("tracking 9999999999999"), "tracking must be at most 31536000, not 9999999999999")
        XCTAssertEqual(error("clients_max 0"), "clients_max must be at least 1, not 0")
        XCTAssertNotNil(error("clients_max 99999999999999999999999"), "past Int is not a number")
        XCTAssertEqual(error("recent 99999999999"), "'recent' must be at most 31536000, not 99999999999")
    }

    func testServerFieldsAreBounded() {
        for (field, bound) in [("max", Limits.connections), ("hard", Limits.connections), ("weight", Limits.weight),
                               ("prio", Limits.weight), ("blacklist", Limits.seconds)] {
            XCTAssertEqual(error("server 0 \(field) \(bound + 1)"), "server: '\(field)' must be at most \(bound), not \(bound + 1)")
            XCTAssertNil(error("server 0 \(field) \(bound)"))
        }
        XCTAssertThrowsError(try ServerSpec.parse("host:80:99999999999", defaultPort: nil)) { error in
            XCTAssertEqual("\(error)", "bad server 'host:80:99999999999': maxc must be at most 1000000, not 99999999999")
        }
    }

    func testACommandMadeInCodeIsCheckedWhenApplied() {
        var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [])
        XCTAssertThrowsError(try configuration.apply(.setting(.clientsMax, 5_000_000)))
        XCTAssertEqual(configuration.clientsMax, 2048)
    }

    func testALargeClientTableCostsOnlyTheClientsSeen() {
        var table = ClientTable(capacity: Limits.clients)
        table.connect(client(1), now: at(0), tracking: nil)
        XCTAssertEqual(table.count, 1)
        XCTAssertEqual(table.capacity, Limits.clients)
    }
}
