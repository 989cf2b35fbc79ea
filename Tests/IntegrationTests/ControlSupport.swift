import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A path in the temporary directory no other test uses; the caller removes what it makes.
func temporaryPath(_ name: String) -> String {
    "\(NSTemporaryDirectory())penha-\(getpid())-\(UUID().uuidString.prefix(8))-\(name)"
}

extension Penha {
    /// One command over the control socket, as penctl sends it; the answer's lines.
    func command(_ line: String) throws -> [String] {
        let client = try Client(unixPath: control)
        try client.send(line + "\n")
        var lines: [String] = []
        while let answer = try client.readLine() { lines.append(answer) }
        return lines
    }

    /// Sends a signal and waits (bounded) until penha logs `marker` once more than before.
    func signal(_ number: Int32, thenLogs marker: String, timeout: Double = 10) throws {
        let before = stderr.components(separatedBy: marker).count
        kill(process.processIdentifier, number)
        let deadline = Date() + timeout
        while stderr.components(separatedBy: marker).count == before {
            guard Date() < deadline else { throw TestFailure("no '\(marker)' after signal \(number); log: \(stderr)") }
            usleep(10_000)
        }
    }
}
