import PenhaCommandLine
import XCTest

/// Hostile review of the program's own requests (`--help`, `--version`, `--generate-*`).
final class ProgramReviewTests: XCTestCase {
    private struct Values {
        var force = false
    }

    private let program = Program(name: "p", abstract: "A program.", version: "1", commands: [
        CommandSpec(name: "try", abstract: "Try.", defaults: Values(), options: [.flag("-f", help: "Force.", \.force)]).outline,
    ])

    private func assertRefused(_ words: [String], _ message: String, line: UInt = #line) {
        XCTAssertThrowsError(try program.request(words), "\(words)", line: line) { error in
            XCTAssertEqual(error as? UsageError, UsageError(message), "\(words)", line: line)
        }
    }

    /// `--generate-completion-script=fish` names the bad shell as the spaced form does, not
    /// the option as unknown to the default subcommand.
    func testAnUnknownShellIsNamedInBothForms() {
        assertRefused(["--generate-completion-script=fish"], "The value 'fish' is invalid for '--generate-completion-script <shell>'")
        assertRefused(["--generate-completion-script="], "The value '' is invalid for '--generate-completion-script <shell>'")
    }

    /// A word after a request of the program's own is refused, never silently dropped
    /// (`penha --version -f` prints no version and starts nothing).
    func testWordsAfterTheProgramsOwnRequestsAreRefused() {
        assertRefused(["--help", "x"], "Unexpected argument 'x'")
        assertRefused(["--version", "-f"], "Unexpected argument '-f'")
        assertRefused(["--generate-manual", "x"], "Unexpected argument 'x'")
        assertRefused(["--generate-completion-script", "bash", "zsh"], "Unexpected argument 'zsh'")
        assertRefused(["--generate-completion-script=bash", "x"], "Unexpected argument 'x'")
        XCTAssertEqual(try program.request(["--generate-completion-script=zsh"]), .completionScript(.zsh))
    }
}
