import Foundation
import PenhaCommandLine
import XCTest

@testable import penha

/// pen's getopt forms on `run`'s own table: `-x500`, `-fd`, `-fx500`, and the subcommands'
/// help naming what each option takes.
final class PenArgumentsTests: XCTestCase {
    private func parse(_ words: [String]) throws -> RunCommand {
        guard case .values(let command) = try RunCommand.spec.parse(words) else { throw TestFailure("help for \(words)") }
        return command
    }

    func testAttachedValuesAndBundledFlagsAreReadAsGetoptReadsThem() throws {
        let attached = try parse(["-x500", "-c4096", "80", "h"])
        XCTAssertEqual([attached.connections, attached.clients], [500, 4096])
        XCTAssertEqual([attached.listen, attached.servers.first], ["80", "h"])
        let bundled = try parse(["-fdx500", "80", "h"])
        XCTAssertEqual([bundled.foreground, bundled.debug == 1, bundled.connections == 500], [true, true, true])
        XCTAssertEqual(try parse(["-dd", "80", "h"]).debug, 2)
        XCTAssertEqual(try parse(["-C/tmp/p.sock", "80", "h"]).control, "/tmp/p.sock")
        XCTAssertEqual(try parse(["-Ovrrp vrid 1", "-o", "server 0", "80", "h"]).commands, ["vrrp vrid 1", "server 0"])
        // The value after a separate value option is a value: `-1` and `-fd` stay as they are.
        let values = try parse(["-x", "-1", "-O", "-fd", "80", "h"])
        XCTAssertEqual(values.connections, -1)
        XCTAssertEqual(values.commands, ["-fd"])
        XCTAssertFalse(values.foreground)
        // Options between the operands, and none after `--`.
        let mixed = try parse(["80", "-f", "h", "--", "-x500"])
        XCTAssertEqual(mixed.servers, ["h", "-x500"])
        XCTAssertTrue(mixed.foreground)
        XCTAssertEqual(mixed.connections, 500, "the default: -x500 is a server after --")
    }

    func testWhatIsNotAnOptionOfRunIsNamed() {
        for (words, message) in [(["-Y5", "80"], "Unknown option '-Y'"), (["-fY"], "Unknown option '-Y'"),
                                 (["--json", "80"], "Unknown option '--json'"), (["-x"], "Missing value for '-x <connections>'"),
                                 (["-xabc", "80", "h"], "The value 'abc' is invalid for '-x <connections>'")] {
            XCTAssertThrowsError(try RunCommand.spec.parse(words), "\(words)") { error in
                XCTAssertEqual(error as? UsageError, UsageError(message), "\(words)")
            }
        }
    }

    /// The help and the man page name what an option takes (`-e <host:port>`), not its letter
    /// again (`-e <e>`, which the man page rendered as "-e e"; `status -C <C>`).
    func testEveryValueOptionNamesWhatItTakes() {
        var checked = 0
        for command in penha.Penha.program.commands {
            for option in command.options {
                guard let value = option.valueName else { continue }
                checked += 1
                XCTAssertFalse(option.names.contains { $0.dropFirst() == value }, "\(command.name) \(option.label)")
                XCTAssertTrue(penha.Penha.program.help(for: command).contains("  \(option.label)"), option.label)
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 30)
    }

    /// `ctl -C SOCKET` takes the socket; the command after it is not options.
    func testCtlTakesItsSocketOptionBeforeTheCommand() throws {
        guard case .values(let ctl) = try CtlCommand.spec.parse(["-C", "/run/p.sock", "server", "0", "-x500"]) else {
            throw TestFailure("help")
        }
        XCTAssertEqual(ctl.control, "/run/p.sock")
        XCTAssertEqual(ctl.words, ["server", "0", "-x500"])
        guard case .values(let positional) = try CtlCommand.spec.parse(["/run/p.sock", "servers"]) else { throw TestFailure("help") }
        XCTAssertNil(positional.control)
        XCTAssertEqual(positional.words, ["/run/p.sock", "servers"])
    }

    /// The bash completion package.sh installs, run by bash: subcommands first, then the
    /// options of the subcommand named (run's without one).
    func testBashCompletesSubcommandsAndTheirOptions() throws {
        let script = try runPenha(["--generate-completion-script", "bash"])
        XCTAssertEqual(script.status, 0, script.stderr)
        let path = temporaryPath("penha.bash")
        try script.stdout.write(toFile: path, atomically: true, encoding: .utf8)
        let complete = { (words: [String]) throws -> String in
            let line = words.map { "'\($0)'" }.joined(separator: " ")
            let result = try runProgram("/bin/bash", ["-c", "source \(path); COMP_WORDS=(\(line)); COMP_CWORD=\(words.count - 1); "
                                                          + "_penha; echo \"${COMPREPLY[*]}\""])
            XCTAssertEqual(result.status, 0, result.stderr)
            return result.stdout
        }
        XCTAssertEqual(try complete(["penha", "st"]), "status\n")
        XCTAssertEqual(try complete(["penha", "status", "-"]), "-C --json --help\n")
        XCTAssertEqual(try complete(["penha", "ctl", "-"]), "-C --help\n")
        XCTAssertTrue(try complete(["penha", "-"]).hasPrefix("-b -c -e -B -t -x"))
        XCTAssertTrue(try complete(["penha", "-f", "-F", path]).contains(path), "a value option's value is a file")
    }
}
