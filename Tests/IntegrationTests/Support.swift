import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The penha binary that `swift build` put next to this test bundle.
let penhaBinary = Bundle.main.bundleURL.appendingPathComponent("penha")

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A port nothing listens on right now: bind to port 0, read the port, close.
func freePort(host: String = "127.0.0.1") -> Int {
    let family = host.contains(":") ? AF_INET6 : AF_INET
    let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    let address = try! SocketAddress(ipAddress: host, port: 0)
    _ = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
    return freePortOf(fd)
}

/// The local port a socket is bound to.
func freePortOf(_ fd: Int32) -> Int {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return withUnsafeBytes(of: storage) { bytes in
        Int(UInt16(bytes[2]) << 8 | UInt16(bytes[3]))  // sin_port and sin6_port sit at the same offset
    }
}

/// A running penha, stopped when the test ends. Waits for its "listening" log line.
/// Sendable: its stderr grows on the pipe's reading thread, behind a lock.
final class Penha: Sendable {
    let process = Process()
    let port: Int
    /// The control socket: `-C` from the options, else a fresh temporary path.
    let control: String
    private let stderrPipe = Pipe()
    private let stderrText = Mutex("")

    /// Starts `penha -f ARGUMENTS... 127.0.0.1:PORT SERVERS...` unless `listen` says otherwise
    /// (empty: none, for a -F file that names it),
    /// inside the network namespace `namespace` if one is given, with `environment` added to the test's.
    init(_ options: [String], listen: String? = nil, servers: [String], namespace: String? = nil,
         environment: [String: String] = [:]) throws {
        let port = freePort()
        self.port = port
        let givenControl = options.firstIndex(of: "-C").map { options[$0 + 1] }
        control = givenControl ?? temporaryPath("control.sock")
        let arguments = ["-f"] + (givenControl == nil ? ["-C", control] : []) + options
            + [listen ?? "127.0.0.1:\(port)"].filter { !$0.isEmpty } + servers
        if let namespace {
            // `ip netns exec` execs penha in place, so the process id is penha's.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["ip", "netns", "exec", namespace, penhaBinary.path] + arguments
        } else {
            process.executableURL = penhaBinary
            process.arguments = arguments
        }
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let started = DispatchSemaphore(value: 0)
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            let (wasListening, isListening) = self.stderrText.withLock { text in
                let was = text.contains("listening")
                text += String(decoding: data, as: UTF8.self)
                return (was, text.contains("listening"))
            }
            if isListening && !wasListening { started.signal() }
        }
        try process.run()
        guard started.wait(timeout: .now() + 20) == .success else {
            stop()
            throw TestFailure("penha did not start listening; stderr: \(stderr)")
        }
    }

    var stderr: String { stderrText.withLock { $0 } }

    var openFileDescriptors: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.processIdentifier)/fd").count) ?? -1
    }

    /// `count` clients that connect to `port` and send nothing, and how many descriptors penha
    /// holds for them once it has accepted what it will (waited for at most 3 s, in steps of 50 ms).
    func idleClients(_ count: Int, port: Int) throws -> (clients: [Client], held: Int) {
        let before = openFileDescriptors
        let clients = try (0..<count).map { _ in try Client(port: port) }
        var held = 0
        for _ in 0..<60 {
            held = openFileDescriptors - before
            if held >= count { break }
            usleep(50_000)
        }
        return (clients, held)
    }

    /// What each open descriptor is, for failure messages.
    var descriptorListing: String {
        let directory = "/proc/\(process.processIdentifier)/fd"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.sorted().map { name in
            "\(name)->\((try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(name)")) ?? "?")"
        }.joined(separator: " ")
    }

    /// Waits for exit, at most `timeout` seconds; nil if it did not exit.
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date() + timeout
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        stderrPipe.fileHandleForReading.readabilityHandler = nil
        unlink(control)
    }

    deinit { stop() }
}

/// Runs penha to completion (for arguments it must refuse) and returns status and stderr.
func runPenha(_ arguments: [String], timeout: Double = 20) throws -> (status: Int32, stderr: String, stdout: String) {
    let result = try runProgram(penhaBinary.path, arguments, timeout: timeout)
    return (result.status, result.stderr, result.stdout)
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


/// A backend on loopback. In `identify` mode it greets each connection with its name and a
/// newline, echoes what it reads, and on the client's FIN sends "EOF name\n" and closes, so a
/// client can tell which backend it reached and that half-close was passed on.
final class Backend {
    enum Behaviour {
        case identify
        /// Answers every connection with RST.
        case reset
        /// Never answers; closes when the client's FIN arrives.
        case silent
        /// Never answers and ignores FIN: a hung process.
        case stuck
    }

    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let name: String
    let port: Int
    private let channel: Channel
    private let counters: Counters

    final class Counters: Sendable {
        private struct Tally {
            var accepted = 0
            var active = 0
            var peers: [String] = []
        }

        private let tally = Mutex(Tally())
        var accepted: Int { tally.withLock { $0.accepted } }
        var active: Int { tally.withLock { $0.active } }
        var peers: [String] { tally.withLock { $0.peers } }
        func opened(from peer: String?) {
            tally.withLock {
                $0.accepted += 1
                $0.active += 1
                $0.peers.append(peer ?? "?")
            }
        }
        func closed() { tally.withLock { $0.active -= 1 } }
    }

    init(_ name: String, host: String = "127.0.0.1", port: Int = 0, behaviour: Behaviour = .identify) throws {
        self.name = name
        let counters = Counters()
        self.counters = counters
        channel = try ServerBootstrap(group: Backend.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                counters.opened(from: channel.remoteAddress?.ipAddress)
                channel.closeFuture.whenComplete { _ in counters.closed() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(BackendHandler(name: name, behaviour: behaviour))
                }
            }
            .bind(host: host, port: port).wait()
        self.port = channel.localAddress!.port!
    }

    var accepted: Int { counters.accepted }
    /// The address each connection came from, in order.
    var peers: [String] { counters.peers }
    var active: Int { counters.active }

    func stop() {
        try? channel.close().wait()
    }

    deinit { stop() }
}

private final class BackendHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let name: String
    let behaviour: Backend.Behaviour

    init(name: String, behaviour: Backend.Behaviour) {
        self.name = name
        self.behaviour = behaviour
    }

    func channelActive(context: ChannelHandlerContext) {
        switch behaviour {
        case .identify:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "\(name)\n")), promise: nil)
        case .reset:
            // Linger 0: the close sends RST instead of FIN.
            let channel = context.channel
            (channel as? SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                channel.close(promise: nil)
            }
        case .silent, .stuck:
            break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if behaviour == .identify { context.write(data, promise: nil) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else { return }
        switch behaviour {
        case .identify:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "EOF \(name)\n"))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case .silent: context.close(promise: nil)
        case .reset, .stuck: break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Bytes received and not yet handed out, for clients read both by line and by chunk.
struct ReceiveBuffer {
    private var bytes: [UInt8] = []

    var isEmpty: Bool { bytes.isEmpty }

    /// The next line without its newline; asks `receive` for more until one is complete,
    /// nil when `receive` returns no bytes (EOF).
    mutating func readLine(_ receive: () throws -> [UInt8]) rethrows -> String? {
        while true {
            if let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: bytes[..<newline], as: UTF8.self)
                bytes.removeSubrange(...newline)
                return line
            }
            let chunk = try receive()
            if chunk.isEmpty { return nil }
            bytes += chunk
        }
    }

    /// At most `limit` of the buffered bytes, taken out.
    mutating func take(upTo limit: Int = .max) -> [UInt8] {
        let taken = Array(bytes.prefix(limit))
        bytes.removeFirst(taken.count)
        return taken
    }
}

/// A blocking client socket whose every wait is bounded by `timeout`.
final class Client {
    let fd: Int32
    private var buffered = ReceiveBuffer()

    init(port: Int, host: String = "127.0.0.1", source: String? = nil, timeout: Double = 5) throws {
        let address = try SocketAddress(ipAddress: host, port: port)
        fd = socket(host.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try configure(timeout: timeout)
        if let source {
            let local = try SocketAddress(ipAddress: source, port: 0)
            guard local.withSockAddr({ bind(fd, $0, socklen_t($1)) }) == 0 else {
                throw TestFailure("cannot bind client to \(source): errno \(errno)")
            }
        }
        guard address.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0 else {
            close(fd)
            throw TestFailure("cannot connect to \(host):\(port): errno \(errno)")
        }
    }

    init(unixPath: String, timeout: Double = 5) throws {
        let address = try SocketAddress(unixDomainSocketPath: unixPath)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try configure(timeout: timeout)
        guard address.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0 else {
            close(fd)
            throw TestFailure("cannot connect to \(unixPath): errno \(errno)")
        }
    }

    /// Bounds every later send and receive.
    func configure(timeout: Double) throws {
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Makes the close a reset (SO_LINGER 0): the peer sees RST, not FIN.
    func resetOnClose() {
        var abort = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
    }

    /// The sending half, for another thread to send on while this one reads; valid while
    /// the client lives.
    var sender: ClientSender { ClientSender(fd: fd) }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws { try sender.send(bytes) }

    func shutdownWrite() { sender.shutdownWrite() }

    /// Reads what is available; empty at EOF; throws on timeout or error.
    private func receive() throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw TestFailure(errno == EAGAIN ? "timed out waiting for data" : "recv failed: errno \(errno)") }
        return Array(chunk.prefix(count))
    }

    /// The next line without its newline, nil at EOF.
    func readLine() throws -> String? {
        try buffered.readLine(receive)
    }

    /// Everything until EOF.
    func readToEnd() throws -> [UInt8] {
        var result = buffered.take()
        while case let chunk = try receive(), !chunk.isEmpty { result += chunk }
        return result
    }

    /// Feeds everything until EOF to `consume`, chunk by chunk; returns the byte count.
    func drain(_ consume: ([UInt8]) -> Void) throws -> Int {
        let first = buffered.take()
        var total = first.count
        consume(first)
        while case let chunk = try receive(), !chunk.isEmpty {
            total += chunk.count
            consume(chunk)
        }
        return total
    }
}

/// A `Client`'s socket without its receive buffer: what sending needs, and Sendable.
struct ClientSender: Sendable {
    let fd: Int32

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw TestFailure("send failed: errno \(errno)") }
            offset += written
        }
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}

/// A listener whose accept queue is full and never drained: the kernel leaves further
/// SYNs unanswered, so a connect to it hangs until the connector's timeout.
final class FullListener {
    let port: Int
    private let listener: Int32
    private var fillers: [Int32] = []

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        guard address.withSockAddr({ bind(fd, $0, socklen_t($1)) }) == 0, listen(fd, 0) == 0 else {
            close(fd)
            throw TestFailure("cannot listen: errno \(errno)")
        }
        listener = fd
        port = freePortOf(fd)
        // A backlog of 0 holds one connection; two more make sure it is full.
        for _ in 0..<3 {
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
            _ = target.withSockAddr { connect(filler, $0, socklen_t($1)) }
            fillers.append(filler)
        }
    }

    deinit {
        fillers.forEach { close($0) }
        close(listener)
    }
}

/// Which backend answers one connection (its greeting line), from an optional source address.
func whoAnswers(_ penha: Penha, source: String? = nil) throws -> String? {
    try Client(port: penha.port, source: source).readLine()
}

/// Polls `condition` every 20 ms for at most `timeout` seconds.
func waitFor(timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date() + timeout
    repeat {
        if condition() { return true }
        usleep(20_000)
    } while Date() < deadline
    return false
}

/// FNV-1a, to compare streams without keeping them.
struct Checksum {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func add(_ bytes: [UInt8]) {
        for byte in bytes { value = (value ^ UInt64(byte)) &* 0x100_0000_01B3 }
    }
}
