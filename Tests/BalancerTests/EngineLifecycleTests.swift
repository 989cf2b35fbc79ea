import NIOCore
import XCTest
@testable import Balancer
@testable import BalancerCore
@testable import Engine

#if canImport(Glibc)
import Glibc
#endif

private final class QuietEvents: EngineEvents {
    func isLogged(_ level: EngineLogLevel) -> Bool { false }
    func log(_ level: EngineLogLevel, _ message: String, _ metadata: [String: String]) {}
    var logsConnections: Bool { false }
    func logConnection(client: ClientKey, server: SocketAddress?, request: [UInt8]) {}
}

/// The engine stops: its threads are joined, and what it allocated (epoll and eventfd
/// descriptors, connection sockets, buffers, pipes, scratch space) is given back.
final class EngineLifecycleTests: XCTestCase {
    /// A blocking loopback socket with a 5 s bound on each receive and accept.
    private func socketWithTimeout() throws -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return descriptor
    }

    private func listen() throws -> (Int32, Int) {
        let descriptor = try socketWithTimeout()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        try address.withSockAddr { pointer, length in
            guard bind(descriptor, pointer, socklen_t(length)) == 0, Glibc.listen(descriptor, 16) == 0 else {
                throw IOError(errnoCode: errno, reason: "bind")
            }
        }
        return (descriptor, try XCTUnwrap(Socket.localAddress(descriptor)?.port))
    }

    private func connect(to port: Int) throws -> Int32 {
        let descriptor = try socketWithTimeout()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        try address.withSockAddr { pointer, length in
            guard Glibc.connect(descriptor, pointer, socklen_t(length)) == 0 else { throw IOError(errnoCode: errno, reason: "connect") }
        }
        return descriptor
    }

    private func openDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
    }

    private func threads() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count
    }

    /// Resident memory in KiB.
    private func residentKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return try XCTUnwrap(Int(line.split(separator: " ")[1]))
    }

    /// One engine's life: started, a client relayed to the backend (a buffer's worth, through
    /// the scratch space and a buffer, every page touched), stopped with the connection open,
    /// which gives the server's count back.
    private func startRelayAndStop(_ shared: SharedRuntime, backend: Int32) throws {
        let engine = try Engine(shared: shared, events: QuietEvents(), tls: nil, threads: 2, limit: 0, acceptProxy: false)
        let bound = try engine.start(.inet(try SocketAddress(ipAddress: "127.0.0.1", port: 0), freeBind: false), backlog: 16,
                                     noDelay: false)
        let client = try connect(to: try XCTUnwrap(bound?.port))
        defer { close(client) }
        let head = Array("POST / HTTP/1.0\r\nContent-Length: \(BufferPool.size)\r\n\r\n".utf8)
        let payload = head + [UInt8](repeating: 120, count: BufferPool.size - head.count)
        XCTAssertEqual(payload.withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) }, payload.count)
        let accepted = accept(backend, nil, nil)
        XCTAssertGreaterThanOrEqual(accepted, 0, "the engine connected to the backend")
        defer { close(accepted) }
        var received = [UInt8](repeating: 0, count: payload.count)
        var total = 0
        // Bounded: each read takes at least a byte or ends the loop (5 s receive timeout).
        while total < payload.count {
            let count = received.withUnsafeMutableBytes { read(accepted, $0.baseAddress! + total, payload.count - total) }
            guard count > 0 else { break }
            total += count
        }
        XCTAssertEqual(total, payload.count, "the client's bytes were relayed (with X-Forwarded-For)")
        engine.stop()
        XCTAssertEqual(engine.openConnections, 0)
        XCTAssertEqual(shared.withLock { $0.state.servers.servers[0].connections }, 0, "the stop gave the server's count back")
        // What the rewriter added is still to read, then the FIN (a timeout would read -1).
        var last = 1
        for _ in 0..<64 where last > 0 { last = read(accepted, &received, received.count) }
        XCTAssertEqual(last, 0, "the stop closed the connection")
    }

    func testAnEngineStartedAndStopped100TimesGivesBackItsDescriptorsThreadsAndMemory() throws {
        let (backend, port) = try listen()
        defer { close(backend) }
        var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 0), servers: [ServerSpec(host: "127.0.0.1", port: port)])
        // -H: the client's bytes go through the thread's scratch space, so it is used too.
        configuration.forwardedFor = true
        let shared = SharedRuntime(Runtime(configuration: configuration, state: try configuration.makeState()))
        // Warm-up: the first rounds allocate what the process keeps (malloc's thread arenas, caches).
        for _ in 0..<10 { try startRelayAndStop(shared, backend: backend) }
        let descriptors = try openDescriptors(), threadCount = try threads(), resident = try residentKiB()
        for _ in 0..<100 { try startRelayAndStop(shared, backend: backend) }
        XCTAssertEqual(try openDescriptors(), descriptors, "every descriptor closed")
        XCTAssertEqual(try threads(), threadCount, "every thread joined")
        // Each round touches a thread's 64 KiB of scratch and a 64 KiB buffer: 100 rounds not
        // freed would add 12.5 MiB.
        XCTAssertLessThan(try residentKiB() - resident, 4 * 1024, "memory comes back")
    }
}
