import Foundation
import NIOCore
import NIOPosix
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.0 request from `source` to `host`:`port`; the answer's body (the backend's name).
@discardableResult
func httpGet(host: String = "127.0.0.1", port: Int, path: String, source: String) throws -> String {
    let client = try Client(port: port, host: host, source: source)
    try client.send("GET \(path) HTTP/1.0\r\nHost: test\r\n\r\n")
    let answer = String(decoding: try client.readToEnd(), as: UTF8.self)
    guard answer.hasPrefix("HTTP/1.1 200") else { throw TestFailure("GET \(path) from \(source): \(answer)") }
    return answer.range(of: "\r\n\r\n").map { String(answer[$0.upperBound...]) } ?? ""
}

/// A long-running program (penha logd, pen, penlogd) with stderr in a file; killed at the
/// end of the test if it is still running.
final class BackgroundProgram {
    let process = Process()
    private let stderrPath = temporaryPath("stderr")

    init(_ executable: String, _ arguments: [String], ready: (BackgroundProgram) -> Bool) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        guard FileManager.default.createFile(atPath: stderrPath, contents: nil) else { throw TestFailure("cannot create \(stderrPath)") }
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        guard waitFor(timeout: 10, { ready(self) || !process.isRunning }), process.isRunning else {
            stop()
            throw TestFailure("\(executable) \(arguments) did not start; stderr: \(stderr)")
        }
    }

    var stderr: String { String(decoding: FileManager.default.contents(atPath: stderrPath) ?? Data(), as: UTF8.self) }

    /// Sends `signal` and waits at most `timeout` seconds; the exit status, nil if still running.
    func signal(_ number: Int32, waitForExit timeout: Double = 0) -> Int32? {
        kill(process.processIdentifier, number)
        guard timeout > 0 else { return nil }
        guard waitFor(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit {
        stop()
        unlink(stderrPath)
    }
}

/// Whether a TCP connect to 127.0.0.1:`port` succeeds now.
func accepts(port: Int) -> Bool {
    (try? Client(port: port, timeout: 1)) != nil
}

/// A free UDP port on 127.0.0.1.
func unusedUDPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    let address = try! SocketAddress(ipAddress: "127.0.0.1", port: 0)
    _ = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
    return freePortOf(fd)
}

/// Sends one datagram to 127.0.0.1:`port`.
func sendDatagram(_ bytes: [UInt8], port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    let address = try! SocketAddress(ipAddress: "127.0.0.1", port: port)
    _ = address.withSockAddr { pointer, length in
        bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, pointer, socklen_t(length)) }
    }
}

/// The lines of a file (empty when it does not exist).
func fileLines(_ path: String) -> [String] {
    let text = String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    return text.split(separator: "\n").map(String.init)
}

/// Debian's pen package, or a skip that says how to get it.
func requirePenTools(_ tools: String...) throws {
    for tool in tools {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/\(tool)"),
                          "/usr/bin/\(tool) missing: Debian's pen package is not installed (apt-get install pen)")
    }
}
