import Foundation
import XCTest

/// Hostile review of penha's own command line: the completion scripts on odd file names.
final class CommandLineReviewTests: XCTestCase {
    /// A file name with a space or a glob character completes as itself, one word: bash splits
    /// and globs an unquoted `$(compgen -f ...)`.
    func testBashCompletesFileNamesWithSpacesAndGlobCharactersWhole() throws {
        let script = try runPenha(["--generate-completion-script", "bash"])
        XCTAssertEqual(script.status, 0, script.stderr)
        let directory = temporaryPath("completion")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/penha.bash"
        try script.stdout.write(toFile: path, atomically: true, encoding: .utf8)
        for name in ["my config.pen", "a*", "b*c"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: "\(directory)/\(name)", contents: nil))
        }
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(directory)/abc", contents: nil))
        // One completion a line, as bash holds them in COMPREPLY.
        let complete = { (words: [String]) throws -> [String] in
            let line = words.map { "'\($0)'" }.joined(separator: " ")
            let result = try runProgram("/bin/bash", ["-c", "cd '\(directory)' && source penha.bash; COMP_WORDS=(\(line)); "
                                                          + "COMP_CWORD=\(words.count - 1); _penha; printf '%s\\n' \"${COMPREPLY[@]}\""])
            XCTAssertEqual(result.status, 0, result.stderr)
            return result.stdout.split(separator: "\n").map(String.init).sorted()
        }
        XCTAssertEqual(try complete(["penha", "-f", "-F", "my"]), ["my config.pen"], "an option's value")
        XCTAssertEqual(try complete(["penha", "-f", "80", "my"]), ["my config.pen"], "an operand")
        XCTAssertEqual(try complete(["penha", "my"]), ["my config.pen"], "the first word")
        XCTAssertEqual(try complete(["penha", "-f", "-F", "a"]), ["a*", "abc"], "a* is a name, not a pattern")
        XCTAssertEqual(try complete(["penha", "-f", "-F", "b"]), ["b*c"])
    }
}
