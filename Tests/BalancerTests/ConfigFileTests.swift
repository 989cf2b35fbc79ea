import TestSupport
import XCTest
@testable import BalancerCore

/// `include` expansion against files in memory: each file read once per load, loops named
/// once per include, and one load's work and errors bounded whatever the includes do.
final class ConfigFileTests: XCTestCase {
    /// f0 includes f1 `copies` times, f1 includes f2 as often, and so on; the last holds `hash`.
    private func multiplying(files count: Int, copies: Int) -> InMemoryFiles {
        var texts = ["f\(count - 1)": "hash\n"]
        for index in 0..<(count - 1) {
            texts["f\(index)"] = String(repeating: "include f\(index + 1)\n", count: copies)
        }
        return InMemoryFiles(texts)
    }

    func testIncludesThatMultiplyStopAtTheLineBudgetWithOneError() {
        // 6^6 copies of the last file, 6^0 + ... + 6^5 copies of the others: about 160,000
        // lines, the includes and each copy's empty last line.
        let files = multiplying(files: 7, copies: 6)
        XCTAssertThrowsError(try ConfigFile.parse("include f0\n", name: "main", reading: files.read)) { error in
            XCTAssertTrue("\(error)".contains("over \(ConfigFile.maxLines) lines"), "\(error)")
        }
        let (_, errors) = ConfigFile.parseAll("include f0\n", name: "main", reading: files.read)
        XCTAssertEqual(errors.count, 1, "\(errors.prefix(3))")
        XCTAssertTrue(errors.first.map { "\($0)".contains("each file counted as often as it is included") } ?? false,
                      "\(errors.prefix(3))")
    }

    func testEachFileIsReadOncePerLoad() throws {
        let files = multiplying(files: 4, copies: 3)
        let lines = try ConfigFile.parse("include f0\ninclude f0\n", name: "main", reading: files.read)
        XCTAssertEqual(lines.count, 2 * 27, "every copy's commands")
        XCTAssertEqual(files.reads, ["f0": 1, "f1": 1, "f2": 1, "f3": 1])
        XCTAssertEqual(lines.first?.origin, "f3:1")
    }

    func testAFileIncludingItselfIsOneErrorAtEachOfItsIncludes() {
        let files = InMemoryFiles(["loop": String(repeating: "include loop\n", count: 5) + "hash\n"])
        let (lines, errors) = ConfigFile.parseAll("include loop\n", name: "main", reading: files.read)
        XCTAssertEqual(errors.map(\.description), (1...5).map { "loop:\($0): loop includes itself: main -> loop -> loop" })
        XCTAssertEqual(lines.map(\.command), [.flag(.hash, true)])
        XCTAssertThrowsError(try ConfigFile.expandIncludes([ConfigLine(.include("loop"), origin: "-O")], reading: files.read)) {
            XCTAssertEqual("\($0)", "loop:1: loop includes itself: loop -> loop")
        }
    }

    func testALoopThroughOtherFilesIsNamedWithItsPath() {
        let files = InMemoryFiles(["a": "include b\n", "b": "roundrobin\ninclude a\n"])
        XCTAssertThrowsError(try ConfigFile.parse("include a", name: "main", reading: files.read)) {
            XCTAssertEqual("\($0)", "b:2: a includes itself: main -> a -> b -> a")
        }
    }

    func testAChainDeeperThanTheLimitEnds() {
        var texts: [String: String] = [:]
        for index in 0..<20 { texts["f\(index)"] = "include f\(index + 1)\n" }
        let files = InMemoryFiles(texts)
        XCTAssertThrowsError(try ConfigFile.parse("include f0", name: "main", reading: files.read)) {
            XCTAssertEqual("\($0)", "f\(ConfigFile.maxDepth - 1): includes nested more than \(ConfigFile.maxDepth) deep")
        }
    }

    func testIncludedCopiesCountAgainstTheByteBudget() {
        // One long comment: no lines to speak of, but every copy is scanned.
        let files = InMemoryFiles(["big": "#" + String(repeating: "x", count: ConfigFile.maxBytes - 1024)])
        let copies = ConfigFile.maxLoadBytes / ConfigFile.maxBytes + 1
        let text = String(repeating: "include big\n", count: copies)
        XCTAssertThrowsError(try ConfigFile.parse(text, name: "main", reading: files.read)) { error in
            XCTAssertEqual("\(error)", "big: the configuration with its includes is over \(ConfigFile.maxLoadBytes) bytes, "
                + "each file counted as often as it is included")
        }
        XCTAssertNoThrow(try ConfigFile.parse(String(repeating: "include big\n", count: copies - 1), name: "main",
                                              reading: files.read))
    }

    func testCheckStopsAfterMaxErrorsWithALastLineSayingSo() {
        let text = String(repeating: "frobnicate\n", count: 3 * ConfigFile.maxErrors)
        let (_, errors) = ConfigFile.parseAll(text, name: "main", reading: InMemoryFiles([:]).read)
        XCTAssertEqual(errors.count, ConfigFile.maxErrors + 1)
        XCTAssertEqual(errors.first?.description, "main:1: unknown command 'frobnicate'")
        XCTAssertEqual(errors.last?.description, "over \(ConfigFile.maxErrors) errors: the rest of the configuration is not checked")
    }

    func testLineNumbersCountEveryLineWhateverItsEnding() throws {
        let lines = try ConfigFile.parse("\n\r\nhash\r\n\n# x\nstubborn", name: "f", reading: InMemoryFiles([:]).read)
        XCTAssertEqual(lines, [ConfigLine(.flag(.hash, true), origin: "f:3"), ConfigLine(.flag(.stubborn, true), origin: "f:6")])
        XCTAssertEqual(try ConfigFile.parse("", name: "f", reading: InMemoryFiles([:]).read), [])
    }
}
