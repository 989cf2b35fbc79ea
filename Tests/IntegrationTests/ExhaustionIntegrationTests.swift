import Foundation
import NIOCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Issue 16: penha out of file descriptors. Its limit is lowered while it runs (as
/// `ulimit -n` before the start would), and a flood of clients takes every descriptor.
final class ExhaustionIntegrationTests: XCTestCase {
    /// The flood's connections are relayed one at a time until the descriptors run out: with
    /// an even number left for them, the next client waits for an accept that fails; with an
    /// odd number, it is accepted and the socket to the server fails. Both are tried.
    func testOutOfDescriptorsPenhaNeitherSpinsNorBlacklistsItsServers() throws {
        for room in [30, 31] { try exhaust(room: room) }
    }

    private func exhaust(room: Int) throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let penha = try Penha(["-x", "0", "-r"], servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        // Room for 15 relayed connections (two descriptors each).
        let limit = penha.openFileDescriptors + room
        try penha.limitDescriptors(to: limit)
        do {
            var flood: [Client] = []
            while flood.count < 40 {
                let client = try Client(port: penha.port, timeout: 1)
                flood.append(client)
                if (try? client.readLine()) == nil { break }
            }
            // And more clients waiting in the backlog.
            flood += try (0..<20).map { _ in try Client(port: penha.port, timeout: 1) }
            try withExtendedLifetime(flood) {
                XCTAssertTrue(waitFor(timeout: 10) { penha.openFileDescriptors >= limit - 1 },
                              "the flood did not exhaust the descriptors: \(penha.openFileDescriptors) of \(limit)")
                // Exhausted, with clients in the backlog: a retrying accept would use a whole core.
                let cpu = try penha.cpuSeconds(during: 2)
                XCTAssertLessThan(cpu, 0.4, "room \(room): penha used \(cpu) s of CPU in 2 s while out of descriptors")
                XCTAssertTrue(penha.stderr.contains("local failure"), "room \(room): the shortage is logged: \(penha.stderr)")
            }
        }
        // The flood's clients are closed now.
        XCTAssertTrue(waitFor(timeout: 10) { (try? activeConnections(penha)) == 0 }, "the flood's connections end")
        let servers = try penha.command("status").filter { $0.hasPrefix("server ") }
        XCTAssertEqual(servers.count, 2)
        XCTAssertTrue(servers.allSatisfy { $0.contains("state up") },
                      "room \(room): no server is blamed for the shortage: \(servers)")
        // The backlog's clients (closed by now) are still being accepted and relayed for a moment,
        // each taking descriptors: a new client may meet the last of the shortage, so a round
        // of four is tried until one is served by both servers, for at most 5 s.
        var answers: [String?] = []
        let served = waitFor(timeout: 5) {
            answers = (0..<4).map { _ in (try? whoAnswers(penha)) ?? nil }
            return Set(answers) == ["A", "B"]
        }
        XCTAssertTrue(served, "room \(room): new clients are served by both servers again: \(answers)")
    }

    func testOutOfDescriptorsUDPFlowsBlacklistNoServer() throws {
        let a = try UDPBackend("A")
        let b = try UDPBackend("B")
        let penha = try Penha(["-U", "-O", "idle_timeout 1"], servers: a.andB(b))
        // Room for 8 flows (a socket each); 40 client ports leave most without one.
        let limit = penha.openFileDescriptors + 8
        try penha.limitDescriptors(to: limit)
        let flood = try (0..<40).map { _ in try UDPClient() }
        for client in flood { try client.send(Array("x".utf8), port: penha.port) }
        XCTAssertTrue(waitFor(timeout: 10) { penha.stderr.contains("local failure") },
                      "the flood did not exhaust the descriptors: \(penha.stderr)")

        let servers = try penha.command("status").filter { $0.hasPrefix("server ") }
        XCTAssertEqual(servers.count, 2)
        XCTAssertTrue(servers.allSatisfy { $0.contains("state up") }, "no server is blamed for the shortage: \(servers)")
        // Once the flows have expired, a new client is answered.
        XCTAssertTrue(waitFor(timeout: 10) { (try? activeConnections(penha)) == 0 }, "the flows expire")
        XCTAssertNotNil(try UDPClient().ask("y", port: penha.port), "a new client is served again")
    }
}

/// Issue 16, item 9: when one side resets, nobody is left to read what the other side has
/// queued, so that side is reset at once instead of being drained for up to 60 seconds.
final class ResetIntegrationTests: XCTestCase {
    func testAClientResetResetsTheServerSideAtOnce() throws {
        let server = try QuietListener()
        let penha = try Penha([], servers: ["127.0.0.1:\(server.port)"])
        let client = try connectedSocket(port: penha.port)
        let upstream = try server.accept()
        defer { close(upstream) }
        // The server reads nothing: penha has the client's bytes queued for it.
        try fillUntilBlocked(client)
        XCTAssertEqual(try activeConnections(penha), 1)
        reset(client)
        XCTAssertTrue(waitFor(timeout: 3) { (try? activeConnections(penha)) == 0 }, "penha still holds the connection")
        XCTAssertTrue(isReset(upstream), "the server side is reset, not left with a stream nobody ends")
    }

    func testAServerResetResetsTheClientSideAtOnce() throws {
        let server = try QuietListener()
        let penha = try Penha([], servers: ["127.0.0.1:\(server.port)"])
        let client = try connectedSocket(port: penha.port)
        defer { close(client) }
        let upstream = try server.accept()
        // The client reads nothing: penha has the server's bytes queued for it.
        try fillUntilBlocked(upstream)
        XCTAssertEqual(try activeConnections(penha), 1)
        reset(upstream)
        XCTAssertTrue(waitFor(timeout: 3) { (try? activeConnections(penha)) == 0 }, "penha still holds the connection")
        XCTAssertTrue(isReset(client), "the client side is reset, not left with a stream nobody ends")
    }
}

/// Issue 24, item 5: the buffers a burst of connections took go back to the system once the
/// burst has closed, beyond the few each engine thread keeps for the next one.
final class MemoryIntegrationTests: XCTestCase {
    func testABurstsBuffersGoBackToTheSystemOnceItCloses() throws {
        // The connects to it hang, so penha keeps what each client sent first in a buffer of its own.
        let server = try FullListener()
        let penha = try Penha(["-x", "1000", "-t", "30"], servers: ["127.0.0.1:\(server.port)"])
        let before = try penha.residentBytes()
        let chunk = [UInt8](repeating: 0x61, count: 128 << 10)
        var clients: [Int32] = []
        defer { clients.forEach { close($0) } }
        for _ in 0..<400 {
            let fd = try connectedSocket(port: penha.port)
            clients.append(fd)
            _ = chunk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        }
        XCTAssertTrue(waitFor(timeout: 10) { (try? penha.residentBytes()) ?? 0 > before + 16 << 20 },
                      "the burst fills a buffer per connection: \((try? penha.residentBytes()) ?? -1) bytes, \(before) before")
        let peak = try penha.residentBytes()
        clients.forEach(reset)
        clients = []
        XCTAssertTrue(waitFor(timeout: 10) { (try? activeConnections(penha)) == 0 }, "the burst's connections end")
        XCTAssertTrue(waitFor(timeout: 10) { (try? penha.residentBytes()) ?? .max <= before + before / 10 },
                      "resident \((try? penha.residentBytes()) ?? -1) bytes after the burst, \(before) before, \(peak) at its peak")
        print("resident: \(before >> 10) KiB before a burst of 400 buffers, \(peak >> 10) KiB at its peak, "
            + "\(try penha.residentBytes() >> 10) KiB after")
    }
}

/// `status`'s "connections N ...": the relayed connections (or UDP flows) now.
private func activeConnections(_ penha: Penha) throws -> Int? {
    try penha.command("status").first { $0.hasPrefix("connections ") }
        .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }
}

/// A socket connected to 127.0.0.1:`port` with a small receive buffer, so that what is
/// sent to it and not read stays queued on the way; the caller closes it.
private func connectedSocket(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var small: Int32 = 4096
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
    let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
    guard address.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0 else {
        close(fd)
        throw TestFailure("cannot connect to port \(port): errno \(errno)")
    }
    return fd
}

/// Sends until the socket would block, that is until every buffer on the way (and penha's
/// queue for the reader) is full; at most 256 MiB and 10 seconds.
private func fillUntilBlocked(_ fd: Int32) throws {
    let chunk = [UInt8](repeating: 0x61, count: 65536)
    var sent = 0
    let deadline = Date() + 10
    while sent < 256 << 20, Date() < deadline {
        let count = chunk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if count > 0 {
            sent += count
        } else if errno == EAGAIN {
            // Penha may still be moving bytes on; blocked for 500 ms means everything is full.
            var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&ready, 1, 500) == 0 { return }
        } else {
            throw TestFailure("send failed: errno \(errno)")
        }
    }
    throw TestFailure("the reader's side never filled up (\(sent) bytes sent)")
}

/// Closes with RST instead of FIN (SO_LINGER 0).
private func reset(_ fd: Int32) {
    var abort = linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
    close(fd)
}

/// Whether the peer reset the connection (poll reports an error), waiting at most 3 seconds.
private func isReset(_ fd: Int32) -> Bool {
    waitFor(timeout: 3) {
        var state = pollfd(fd: fd, events: 0, revents: 0)
        return poll(&state, 1, 0) == 1 && state.revents & Int16(POLLERR) != 0
    }
}

/// A server that accepts and never reads, with a small receive buffer, so that what is sent
/// to it stays queued on the way.
private final class QuietListener {
    let port: Int
    private let fd: Int32

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var small: Int32 = 4096
        setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        guard address.withSockAddr({ bind(listener, $0, socklen_t($1)) }) == 0, listen(listener, 8) == 0 else {
            close(listener)
            throw TestFailure("cannot listen: errno \(errno)")
        }
        fd = listener
        port = freePortOf(listener)
    }

    /// The next connection, waiting at most 5 seconds.
    func accept() throws -> Int32 {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, 5000) == 1 else { throw TestFailure("no connection from penha") }
        let connection = Glibc.accept(fd, nil, nil)
        guard connection >= 0 else { throw TestFailure("accept failed: errno \(errno)") }
        return connection
    }

    deinit { close(fd) }
}

extension Penha {
    /// Lowers penha's descriptor limit, soft and hard, while it runs.
    func limitDescriptors(to count: Int) throws {
        let prlimit = Process()
        prlimit.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        prlimit.arguments = ["--pid", "\(process.processIdentifier)", "--nofile=\(count):\(count)"]
        try prlimit.run()
        guard waitFor(timeout: 10, { !prlimit.isRunning }), prlimit.terminationStatus == 0 else {
            prlimit.terminate()
            throw TestFailure("prlimit failed for penha")
        }
    }

    /// VmRSS from /proc/PID/status.
    func residentBytes() throws -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
            throw TestFailure("no VmRSS for penha")
        }
        return kilobytes << 10
    }

    /// The CPU time (user and system) penha uses in the next `seconds` seconds.
    func cpuSeconds(during seconds: Double) throws -> Double {
        let before = try cpuTime()
        usleep(UInt32(seconds * 1_000_000))
        return try cpuTime() - before
    }

    /// utime + stime from /proc/PID/stat, fields 14 and 15 (after the parenthesised name).
    private func cpuTime() throws -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let nameEnd = stat.lastIndex(of: ")") else { throw TestFailure("cannot read penha's /proc stat") }
        let fields = stat[stat.index(after: nameEnd)...].split(separator: " ")
        // fields[0] is field 3 (state), so utime (14) and stime (15) are fields[11] and fields[12].
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw TestFailure("unexpected /proc stat: \(stat)")
        }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
