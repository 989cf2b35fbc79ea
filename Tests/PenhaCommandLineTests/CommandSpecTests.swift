import PenhaCommandLine
import XCTest

/// The parser, help, completions and man page on a small table of each kind of option and operand.
final class CommandSpecTests: XCTestCase {
    private struct Values: Equatable {
        var force = false
        var verbose = 0
        var limit = 10
        var size: Int?
        var name: String?
        var required = ""
        var commands: [String] = []
        var secret = false
        var target = ""
        var rest: [String] = []
    }

    private static var spec: CommandSpec<Values> { CommandSpec(
        name: "try", abstract: "Try the parser.", defaults: Values(),
        options: [
            .flag("-f", help: "Force.", \.force),
            .count("-v", help: "More; repeat for more.", \.verbose),
            .value("-l", valueName: "count", help: "A limit.", \.limit),
            .value("-s", valueName: "bytes", help: "A size.", \.size),
            .value("-n", "--name", valueName: "name", help: "A name.", \.name),
            .value("-r", valueName: "file", help: "Must be given.", \.required),
            .value("-O", valueName: "command", help: "Repeatable.", \.commands),
            .flag("-Z", help: nil, \.secret),
        ],
        operands: [.required("target", help: "Where to.", \.target), .list("rest", help: "The others.", \.rest)]) }

    private func parse(_ words: [String]) throws -> Values {
        guard case .values(let values) = try Self.spec.parse(words) else { throw UsageError("help for \(words)") }
        return values
    }

    private func assertRefused(_ words: [String], _ message: String, line: UInt = #line) {
        XCTAssertThrowsError(try Self.spec.parse(words), "\(words)", line: line) { error in
            XCTAssertEqual(error as? UsageError, UsageError(message), "\(words)", line: line)
        }
    }

    func testEachKindOfOptionIsStored() throws {
        let values = try parse(["-f", "-vv", "-l", "5", "-s7", "--name", "x", "-r", "file", "-O", "a", "-Ob", "-Z", "t", "u", "w"])
        XCTAssertEqual(values, Values(force: true, verbose: 2, limit: 5, size: 7, name: "x", required: "file",
                                      commands: ["a", "b"], secret: true, target: "t", rest: ["u", "w"]))
        XCTAssertEqual(try parse(["-r", "f", "t"]), Values(required: "f", target: "t"), "unset options keep their defaults")
    }

    func testGetoptForms() throws {
        // Bundled flags, then a value letter taking the rest of the word or the next word.
        XCTAssertEqual(try parse(["-fvl3", "-rf", "t"]), Values(force: true, verbose: 1, limit: 3, required: "f", target: "t"))
        XCTAssertEqual(try parse(["-fvl", "3", "-rf", "t"]).limit, 3)
        // The next word is the value whatever it looks like.
        XCTAssertEqual(try parse(["-l", "-3", "-r", "-f", "t"]), Values(limit: -3, required: "-f", target: "t"))
        XCTAssertEqual(try parse(["--name=a=b", "-rf", "t"]).name, "a=b")
        // Options between operands; after `--`, operands only.
        XCTAssertEqual(try parse(["t", "-f", "u", "-rf", "--", "-v", "--"]),
                       Values(force: true, required: "f", target: "t", rest: ["u", "-v", "--"]))
        XCTAssertEqual(try parse(["-rf", "-", "t"]).rest, ["t"], "a lone - is an operand")
    }

    func testErrorsNameWhatIsWrong() {
        assertRefused(["-rf", "-q", "t"], "Unknown option '-q'")
        assertRefused(["-rf", "-fq", "t"], "Unknown option '-q'")
        assertRefused(["-rf", "--quiet", "t"], "Unknown option '--quiet'")
        assertRefused(["-rf", "t", "-l"], "Missing value for '-l <count>'")
        assertRefused(["-rf", "t", "-lx"], "The value 'x' is invalid for '-l <count>'")
        assertRefused(["-rf", "-s", "", "t"], "The value '' is invalid for '-s <bytes>'")
        assertRefused(["t"], "Missing expected argument '-r <file>'")
        assertRefused(["-rf"], "Missing expected argument '<target>'")
        assertRefused(["-rf", "-f=1", "t"], "Unknown option '-='")
        XCTAssertEqual(try parse(["-rf", "t", "-ff"]).force, true, "a flag given twice is still set")
    }

    func testHelpIsAskedByHelpOnlyAndListsTheTable() throws {
        guard case .help = try Self.spec.parse(["-f", "--help", "-q"]) else { return XCTFail("--help") }
        let program = Program(name: "p", abstract: "A program.", version: "1", commands: [Self.spec.outline])
        let help = program.help(for: Self.spec.outline)
        XCTAssertTrue(help.hasPrefix("OVERVIEW: Try the parser.\n\nUSAGE: p try [-f] [-v] [-l <count>] [-s <bytes>] "))
        for line in ["  -l <count>              A limit. (default: 10)", "  -n, --name <name>       A name.",
                     "  <target>                Where to.", "  --help                  Show help information."] {
            XCTAssertTrue(help.contains(line + "\n"), line)
        }
        XCTAssertFalse(help.contains("-Z"), "a hidden option is accepted, not listed")
        XCTAssertTrue(help.split(separator: "\n").allSatisfy { $0.count < 80 }, help)
    }

    func testAPassthroughOperandTakesTheRestUnparsed() throws {
        struct Passed { var socket: String?, words: [String] = [] }
        let spec = CommandSpec(name: "send", abstract: "Send.", defaults: Passed(),
                               options: [.value("-C", valueName: "socket", help: "Where.", \.socket)],
                               operands: [.passthrough("command", help: "What.", \.words)])
        guard case .values(let given) = try spec.parse(["-C", "s", "server", "-x", "--help"]) else { return XCTFail("help") }
        XCTAssertEqual(given.socket, "s")
        XCTAssertEqual(given.words, ["server", "-x", "--help"])
        guard case .values(let unknown) = try spec.parse(["-x5", "-C", "s"]) else { return XCTFail("help") }
        XCTAssertEqual([unknown.socket], [nil], "-C after the first word is the command's")
        XCTAssertEqual(unknown.words, ["-x5", "-C", "s"])
        guard case .help = try spec.parse(["--help"]) else { return XCTFail("--help first is help") }
    }

    func testTheProgramRunsTheFirstCommandWhenNoneIsNamed() throws {
        let other = CommandSpec(name: "other", abstract: "Other.", defaults: Values())
        let program = Program(name: "p", abstract: "A program.", version: "1.2", commands: [Self.spec.outline, other.outline])
        XCTAssertEqual(try program.request(["-f", "t"]), .command("try", arguments: ["-f", "t"]))
        XCTAssertEqual(try program.request(["other", "-f"]), .command("other", arguments: ["-f"]))
        XCTAssertEqual(try program.request([]), .command("try", arguments: []))
        XCTAssertEqual(try program.request(["--version"]), .version)
        XCTAssertEqual(try program.request(["--help"]), .help)
        XCTAssertEqual(try program.request(["--generate-completion-script", "zsh"]), .completionScript(.zsh))
        XCTAssertEqual(try program.request(["--generate-completion-script=bash"]), .completionScript(.bash))
        XCTAssertThrowsError(try program.request(["--generate-completion-script", "fish"])) { error in
            XCTAssertEqual(error as? UsageError, UsageError("The value 'fish' is invalid for '--generate-completion-script <shell>'"))
        }
        XCTAssertTrue(program.help.contains("  try (default)           Try the parser.\n"), program.help)
    }

    func testCompletionsAndTheManualCarryEveryListedOption() {
        let program = Program(name: "p", abstract: "A program.", version: "1", commands: [Self.spec.outline])
        let bash = program.completionScript(.bash)
        let zsh = program.completionScript(.zsh)
        let manual = program.manual
        for option in Self.spec.outline.options {
            for name in option.names {
                XCTAssertTrue(bash.contains(" \(name) ") || bash.contains("'\(name) ") || bash.contains(" \(name)'"), name)
                XCTAssertTrue(zsh.contains("'\(option.repeats ? "*" : "")\(name)"), name)
                XCTAssertTrue(manual.contains("Fl \(name.dropFirst())"), name)
            }
        }
        XCTAssertFalse(bash.contains("-Z") || zsh.contains("-Z") || manual.contains("Fl Z"), "hidden")
        XCTAssertTrue(zsh.contains("'-l+[A limit. (default\\: 10)]:count:'"), zsh)
        XCTAssertTrue(zsh.contains("'-r+[Must be given.]:file:_files'"), zsh)
        XCTAssertTrue(manual.contains(".It Fl n , Fl -name Ar name\nA name.\n"), manual)
    }
}
