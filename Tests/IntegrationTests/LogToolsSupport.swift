import Foundation
import NIOCore
import NIOPosix
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A web server on loopback that answers every request `200 ok` and closes, and keeps an
/// access log in Apache's common format, written here by the test (not by penha's code):
/// `PEER - - [dd/Mon/yyyy:HH:MM:SS +0000] "REQUEST LINE" 200 2`.
final class WebBackend {
    let host: String
    let port: Int
    private let channel: Channel
    private let log: AccessLog

    final class AccessLog: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [String] = []
        var lines: [String] { lock.lock(); defer { lock.unlock() }; return entries }
        func append(_ line: String) { lock.lock(); entries.append(line); lock.unlock() }
    }

    init(host: String) throws {
        self.host = host
        let log = AccessLog()
        self.log = log
        channel = try ServerBootstrap(group: Backend.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WebHandler(log: log))
                }
            }
            .bind(host: host, port: 0).wait()
        port = channel.localAddress!.port!
    }

    /// `host:port`, as penha's server argument.
    var address: String { "\(host):\(port)" }
    var accessLines: [String] { log.lines }

    /// Writes the access log so far to `path`, one line each.
    func writeLog(to path: String, extra: [String] = []) throws {
        try (accessLines + extra).map { $0 + "\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
    }

    func stop() { try? channel.close().wait() }
    deinit { stop() }

    /// Apache's `%t` for now, in UTC.
    static func apacheTime(_ time: time_t = time(nil)) -> String {
        var seconds = time
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%d/%b/%Y:%H:%M:%S +0000", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

private final class WebHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let log: WebBackend.AccessLog
    private var head: [UInt8] = []

    init(log: WebBackend.AccessLog) { self.log = log }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        head += unwrapInboundIn(data).readableBytesView
        guard let end = head.firstRange(of: Array("\r\n\r\n".utf8)) ?? (head.count > 16384 ? head.indices : nil) else { return }
        let requestLine = String(decoding: head[..<end.lowerBound].prefix { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
        let peer = context.channel.remoteAddress?.ipAddress ?? "?"
        log.append("\(peer) - - [\(WebBackend.apacheTime())] \"\(requestLine)\" 200 2")
        head = []
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")))
            .whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// One HTTP/1.0 request from `source` to `host`:`port`; the answer's body ("ok").
@discardableResult
func httpGet(host: String = "127.0.0.1", port: Int, path: String, source: String) throws -> String {
    let client = try Client(port: port, host: host, source: source)
    try client.send("GET \(path) HTTP/1.0\r\nHost: test\r\n\r\n")
    let answer = String(decoding: try client.readToEnd(), as: UTF8.self)
    guard answer.hasPrefix("HTTP/1.0 200") else { throw TestFailure("GET \(path) from \(source): \(answer)") }
    return answer.range(of: "\r\n\r\n").map { String(answer[$0.upperBound...]) } ?? ""
}

/// A program run to completion: its status, stdout and stderr; stdin from `input`.
func runProgram(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                input: String = "", timeout: Double = 20) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    // Files, not pipes: neither a large output nor a large input can block either side.
    let stdoutPath = temporaryPath("stdout"), stderrPath = temporaryPath("stderr"), stdinPath = temporaryPath("stdin")
    defer { for path in [stdoutPath, stderrPath, stdinPath] { unlink(path) } }
    try input.write(toFile: stdinPath, atomically: true, encoding: .utf8)
    for path in [stdoutPath, stderrPath] {
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw TestFailure("cannot create \(path)") }
    }
    process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: stdinPath))
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
    try process.run()
    let deadline = Date() + timeout
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw TestFailure("\(executable) \(arguments) did not exit")
    }
    let read = { (path: String) in String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
    return (process.terminationStatus, read(stdoutPath), read(stderrPath))
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
