import XCTest

@testable import penha

/// The pass that gives swift-argument-parser pen's getopt forms: `-x500`, `-fd`, `-fx500`.
final class PenArgumentsTests: XCTestCase {
    func testAttachedValuesAndBundledFlagsAreSplitAsGetoptReadsThem() {
        let cases: [([String], [String])] = [
            (["-x500", "-c4096", "80", "h"], ["-x", "500", "-c", "4096", "80", "h"]),
            (["-fdx500", "80", "h"], ["-f", "-d", "-x", "500", "80", "h"]),
            (["-dd", "80", "h"], ["-d", "-d", "80", "h"]),
            (["-C/tmp/p.sock", "80", "h"], ["-C", "/tmp/p.sock", "80", "h"]),
            (["run", "-Ovrrp vrid 1", "80", "h"], ["run", "-O", "vrrp vrid 1", "80", "h"]),
            // The value after a separate value option is a value: `-1` and `-fd` stay as they are.
            (["-x", "-1", "-O", "-fd", "80", "h"], ["-x", "-1", "-O", "-fd", "80", "h"]),
            // What is not an option cluster is left to the parser, which names it.
            (["-Y5", "--help", "-", "-1"], ["-Y5", "--help", "-", "-1"]),
            (["-fY"], ["-fY"]),
            (["80", "--", "-x500"], ["80", "--", "-x500"]),
            // penctl commands are not options.
            (["ctl", "server", "-x500"], ["ctl", "server", "-x500"]),
            (["status", "-C/tmp/p.sock"], ["status", "-C/tmp/p.sock"]),
        ]
        for (given, expected) in cases {
            XCTAssertEqual(PenArguments.split(given), expected, "\(given)")
        }
    }

    /// The letter sets against `run`'s declarations, read from its help: a new option is
    /// split right or this fails.
    func testLetterSetsAreRunsOptionsWithAndWithoutValues() throws {
        var values = Set<Character>()
        var flags = Set<Character>()
        for line in RunCommand.helpMessage(includeHidden: true).split(separator: "\n") {
            guard line.hasPrefix("  -"), !line.hasPrefix("  --") else { continue }
            // "  -O, -o <O>   A penctl command..." or "  -r   Round-robin..."
            let words = line.split(separator: " ")
            let names = words.prefix { $0.hasPrefix("-") }.map { $0.trimmingCharacters(in: [","]) }
            let takesValue = words.dropFirst(names.count).first?.hasPrefix("<") ?? false
            for name in names where name.count == 2 {
                if takesValue { values.insert(name.last!) } else { flags.insert(name.last!) }
            }
        }
        XCTAssertEqual(values, PenArguments.valueLetters)
        XCTAssertEqual(flags, PenArguments.flagLetters)
    }

    /// The help and the man page name what an option takes (`-e <host:port>`), not its letter
    /// again (`-e <e>`, which the man page rendered as "-e e").
    func testEveryValueOptionNamesWhatItTakes() {
        var checked = 0
        for line in RunCommand.helpMessage().split(separator: "\n") {
            let words = line.split(separator: " ")
            guard let first = words.first, first.hasPrefix("-"), !first.hasPrefix("--"),
                  let value = words.first(where: { $0.hasPrefix("<") }) else { continue }
            checked += 1
            let letters = words.prefix { $0.hasPrefix("-") }.map { $0.trimmingCharacters(in: ["-", ","]) }
            XCTAssertFalse(letters.contains(String(value.dropFirst().dropLast())), String(line))
        }
        XCTAssertGreaterThan(checked, 20)
    }
}
