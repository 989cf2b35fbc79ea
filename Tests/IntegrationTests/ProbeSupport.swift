import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A command run in the background with its output to a file, for as long as the test needs
/// it (bounded: it is killed when it has not ended `seconds` plus 10 s after it started).
final class BackgroundCommand {
    private let process = Process()
    private let output: String
    private let deadline: Date

    init(_ arguments: [String], seconds: Double) throws {
        deadline = Date() + seconds + 10
        output = temporaryPath("background.txt")
        guard FileManager.default.createFile(atPath: output, contents: nil) else { throw TestFailure("cannot create \(output)") }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle(forWritingAtPath: output)
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        unlink(output)
    }

    /// Asks the command to stop (SIGINT), as Ctrl-C would; `finish` then collects its output.
    func interrupt() {
        if process.isRunning { kill(process.processIdentifier, SIGINT) }
    }

    /// Waits until the command ends; its output.
    func finish() throws -> String {
        while process.isRunning {
            guard Date() < deadline else {
                kill(process.processIdentifier, SIGKILL)
                throw TestFailure("\(process.arguments ?? []) did not finish")
            }
            usleep(20_000)
        }
        return try String(contentsOfFile: output, encoding: .utf8)
    }
}

/// The lab's probe (`lab.sh probe`) running in the background: from the client, a new
/// connection to an address every 20 ms, each given 200 ms, as the failover figures are measured
/// (or every `periodMilliseconds`, each given `timeoutMilliseconds`).
final class Probe {
    private let command: BackgroundCommand

    /// One attempt: when it began (ms after the probe started) and which node answered, nil for none.
    struct Attempt {
        let milliseconds: Int
        let answer: String?
    }

    init(_ lab: NetworkLab, address: String, port: Int = 80, seconds: Double,
         periodMilliseconds: Int = 20, timeoutMilliseconds: Int = 200) throws {
        command = try BackgroundCommand(["bash", NetworkLab.script, "probe", lab.name, address, "\(port)", "\(seconds)",
                                         "\(periodMilliseconds)", "\(timeoutMilliseconds)"],
                                        seconds: seconds)
    }

    /// Waits until the probe ends; its attempts.
    func finish() throws -> [Attempt] {
        try command.finish().split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 2, let milliseconds = Int(words[0]) else { return nil }
            return Attempt(milliseconds: milliseconds, answer: words[1] == "none" ? nil : String(words[1]))
        }
    }
}

extension Array where Element == Probe.Attempt {
    var failures: Int { filter { $0.answer == nil }.count }

    /// The longest time between two answered attempts, in ms: the probe period when nothing failed.
    var longestGapMilliseconds: Int {
        let answered = filter { $0.answer != nil }.map(\.milliseconds)
        return zip(answered, answered.dropFirst()).map { $1 - $0 }.max() ?? 0
    }

    /// The answers in order with repeats folded: ["node-a", "node-b"] for one switchover.
    var answerSequence: [String] {
        compactMap(\.answer).reduce(into: []) { sequence, answer in
            if sequence.last != answer { sequence.append(answer) }
        }
    }

    var summary: String {
        "\(count) attempts, \(failures) failed, longest gap \(longestGapMilliseconds) ms, answers \(answerSequence)"
    }
}
