import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Upgrades on one host hand the connections over (issue 20): a new penha started with
/// `--takeover` on the running one's control socket takes its listener and its established
/// connections, relays them on byte for byte, and the old one exits at once.
final class UpgradeIntegrationTests: XCTestCase {
    /// What the load saw, counted by its threads.
    final class Tally: Sendable {
        private struct Counts {
            var exchanges = 0
            var bytes = 0
            var probes = 0
            var failures: [String] = []
        }

        private let counts = Mutex(Counts())
        let stopping = Atomic<Bool>(false)

        func exchanged(_ bytes: Int) { counts.withLock { $0.exchanges += 1; $0.bytes += bytes } }
        func probed() { counts.withLock { $0.probes += 1 } }
        func failed(_ what: String) { counts.withLock { $0.failures.append(what) } }
        var exchanges: Int { counts.withLock { $0.exchanges } }
        var bytes: Int { counts.withLock { $0.bytes } }
        var probes: Int { counts.withLock { $0.probes } }
        var failures: [String] { counts.withLock { $0.failures } }
    }

    /// A long-lived connection that sends a numbered line of a stream-specific length every
    /// `pause` and checks that exactly it comes back, until told to stop; then it half-closes
    /// and checks that the backend's end comes back. Every wait is bounded by the client's timeout.
    private func stream(_ number: Int, port: Int, tally: Tally, pause: useconds_t) -> Thread {
        let thread = Thread {
            do {
                let client = try Client(port: port, timeout: 5)
                var line = 0
                // Bounded: the test sets `stopping` after its upgrades, and each round waits at most the timeout.
                while !tally.stopping.load(ordering: .relaxed) {
                    let fill = Character(UnicodeScalar(UInt8(65 + (number + line) % 26)))
                    let text = "stream \(number) line \(line) " + String(repeating: fill, count: 100 + (number * 37 + line * 11) % 900)
                    try client.send(text + "\n")
                    guard let echoed = try client.readLine() else { return tally.failed("stream \(number): closed at line \(line)") }
                    guard echoed == text else { return tally.failed("stream \(number): line \(line) came back changed") }
                    tally.exchanged(text.utf8.count + 1)
                    line += 1
                    usleep(pause)
                }
                client.shutdownWrite()
                guard try client.readLine() == "EOF" else { return tally.failed("stream \(number): its end was not passed on") }
            } catch {
                tally.failed("stream \(number): \(error)")
            }
        }
        thread.start()
        return thread
    }

    /// A keep-alive HTTP session: a request every `pause` on one connection, each answer's
    /// head and body checked.
    private func session(_ number: Int, port: Int, tally: Tally, pause: useconds_t) -> Thread {
        let thread = Thread {
            do {
                let client = try Client(port: port, timeout: 5)
                var request = 0
                while !tally.stopping.load(ordering: .relaxed) {
                    try client.send("GET /\(number)/\(request) HTTP/1.1\r\nHost: penha\r\n\r\n")
                    let body = KeepAliveBody.text(session: number, request: request)
                    guard try client.readLine() == "HTTP/1.1 200 OK\r", try client.readLine() == "Content-Length: \(body.utf8.count)\r",
                          try client.readLine() == "\r", try client.readLine() == body else {
                        return tally.failed("session \(number): answer \(request) wrong or missing")
                    }
                    tally.exchanged(body.utf8.count + 1)
                    request += 1
                    usleep(pause)
                }
            } catch {
                tally.failed("session \(number): \(error)")
            }
        }
        thread.start()
        return thread
    }

    /// A new connection every `period`, each answered, until told to stop.
    private func prober(port: Int, tally: Tally, period: useconds_t) -> Thread {
        let thread = Thread {
            var probe = 0
            while !tally.stopping.load(ordering: .relaxed) {
                do {
                    let client = try Client(port: port, timeout: 2)
                    try client.send("probe \(probe)\n")
                    if try client.readLine() == "probe \(probe)" { tally.probed() } else { tally.failed("probe \(probe): no answer") }
                } catch {
                    tally.failed("probe \(probe): \(error)")
                }
                probe += 1
                usleep(period)
            }
        }
        thread.start()
        return thread
    }

    /// How many connections the new process says it took from the old one.
    private func movedConnections(_ log: String, from old: Penha, to new: Penha) -> Int? {
        let marker = "took over from pid \(old.process.processIdentifier): handed over to pid \(new.process.processIdentifier): the listener and "
        guard let range = log.range(of: marker) else { return nil }
        return Int(log[range.upperBound...].prefix { $0.isNumber })
    }

    /// `upgrades` takeovers in a row under `streams` long-lived byte-checked connections,
    /// `sessions` keep-alive HTTP sessions and a new connection every 5 ms: no connection
    /// lost, no byte changed, no probe failed, each old process gone within a second of its
    /// successor's takeover.
    private func upgradeUnderLoad(upgrades: Int, streams: Int, sessions: Int, pause: useconds_t) throws {
        let backend = try LoadBackend()
        var penhas = [try Penha([], servers: ["127.0.0.1:\(backend.port)"])]
        let port = penhas[0].port, control = penhas[0].control
        let tally = Tally()
        let threads = (0..<streams).map { stream($0, port: port, tally: tally, pause: pause) }
            + (0..<sessions).map { session($0, port: port, tally: tally, pause: pause) }
            + [prober(port: port, tally: tally, period: 5_000)]
        let connections = streams + sessions
        XCTAssertTrue(waitFor(timeout: 20) { backend.active >= connections }, "the load is up: \(backend.active)")
        var slowest = 0.0, fewestMoved = Int.max
        for upgrade in 0..<upgrades {
            let old = penhas[penhas.count - 1]
            let exchangedBefore = tally.exchanges
            let new = try Penha(["-C", control, "--takeover", control], listen: "127.0.0.1:\(port)", servers: ["127.0.0.1:\(backend.port)"])
            penhas.append(new)
            let handedOver = Date()
            XCTAssertEqual(old.waitForExit(timeout: 1), 0, "upgrade \(upgrade): the old process is gone within 1 s: \(old.stderr)")
            slowest = max(slowest, Date().timeIntervalSince(handedOver))
            // The long-lived connections, and the probe in flight if there is one.
            let moved = movedConnections(new.stderr, from: old, to: new) ?? 0
            fewestMoved = min(fewestMoved, moved)
            XCTAssertGreaterThanOrEqual(moved, connections, "upgrade \(upgrade): \(new.stderr)")
            // The load goes on through the new process before the next upgrade.
            XCTAssertTrue(waitFor(timeout: 10) { tally.exchanges >= exchangedBefore + connections }, "upgrade \(upgrade): the load goes on")
            if !tally.failures.isEmpty { break }
        }
        tally.stopping.store(true, ordering: .relaxed)
        for thread in threads { while !thread.isFinished { usleep(10_000) } }
        XCTAssertEqual(tally.failures, [], "nothing lost")
        XCTAssertGreaterThan(tally.probes, upgrades, "the probes ran")
        let last = penhas[penhas.count - 1]
        XCTAssertTrue(waitFor(timeout: 5) { (try? last.command("status"))?.contains { $0.hasPrefix("connections 0 ") } ?? false },
                      "every connection ended in the last process")
        print("upgrades \(upgrades), \(streams) streams, \(sessions) sessions: \(tally.exchanges) exchanges (\(tally.bytes) bytes) checked, "
              + "\(tally.probes) probes, 0 failed; fewest connections moved \(fewestMoved), slowest old exit \(Int(slowest * 1000)) ms")
    }

    func testTenUpgradesUnderLoadLoseNoConnectionAndNoByte() throws {
        try upgradeUnderLoad(upgrades: 10, streams: 20, sessions: 20, pause: 20_000)
    }

    /// The issue's measure: 50 upgrades in a row under 200 long-lived byte-checked
    /// connections, 200 keep-alive HTTP sessions and a new connection every 5 ms.
    func testFiftyUpgradesUnderLoadLoseNoConnectionAndNoByte() throws {
        try upgradeUnderLoad(upgrades: 50, streams: 200, sessions: 200, pause: 100_000)
    }
}

/// The HTTP sessions' answer bodies, known to both ends.
enum KeepAliveBody {
    static func text(session: Int, request: Int) -> String {
        "session \(session) request \(request) " + String(repeating: "k", count: (session * 13 + request * 7) % 500)
    }
}

/// A backend for the load: a connection whose first bytes are `GET ` is a keep-alive HTTP
/// session (each `GET /SESSION/REQUEST` answered with its `KeepAliveBody`), any other is
/// echoed, with `EOF` and a close after the client's FIN.
final class LoadBackend {
    let port: Int
    private let channel: Channel
    private let counters = Backend.Counters()

    init() throws {
        let counters = self.counters
        channel = try ServerBootstrap(group: Backend.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                counters.opened(from: channel.remoteAddress?.ipAddress)
                channel.closeFuture.whenComplete { _ in counters.closed() }
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LoadHandler()) }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress!.port!
    }

    var active: Int { counters.active }

    deinit { try? channel.close().wait() }
}

private final class LoadHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var isHTTP: Bool?
    private var pending: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).readableBytesView)
        if isHTTP == nil { isHTTP = bytes.starts(with: Array("GET ".utf8)) }
        guard isHTTP == true else { return context.write(data, promise: nil) }
        pending += bytes
        // Bounded by what came: each answered request is taken off the front.
        while let end = pending.firstRange(of: Array("\r\n\r\n".utf8)) {
            let head = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
            pending.removeSubrange(..<end.upperBound)
            let path = head.split(separator: " ").dropFirst().first.map { $0.split(separator: "/") } ?? []
            guard path.count == 2, let session = Int(path[0]), let request = Int(path[1]) else { return context.close(promise: nil) }
            let body = KeepAliveBody.text(session: session, request: request) + "\n"
            context.write(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count - 1)\r\n\r\n" + body)), promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else { return }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: isHTTP == true ? "" : "EOF\n"))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// `penha upgrade`: the binary on disk started with the running penha's arguments.
final class UpgradeCommandIntegrationTests: XCTestCase {
    func testPenhaUpgradeStartsTheNewProcessWithTheSameArgumentsAndTheStreamGoesOn() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "blacklist 7"], servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        var current = penha.process.processIdentifier
        for round in 0..<3 {
            let upgrade = try runPenha(["upgrade", "-C", penha.control])
            XCTAssertEqual(upgrade.status, 0, "round \(round): \(upgrade.stderr)")
            let words = upgrade.stdout.split(separator: " ")
            XCTAssertEqual(words.prefix(3), ["upgraded:", "pid", "\(current)"], upgrade.stdout)
            guard let new = words.last.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
                return XCTFail(upgrade.stdout)
            }
            XCTAssertTrue(isGone(current), "round \(round): the old process is gone")
            current = new
            try stream.send("round \(round)\n")
            XCTAssertEqual(try stream.readLine(), "round \(round)")
        }
        defer { kill(current, SIGTERM) }
        let cmdline = try String(contentsOfFile: "/proc/\(current)/cmdline", encoding: .utf8).split(separator: "\0")
        XCTAssertEqual(cmdline.filter { $0 == "--takeover" }.count, 1, "one --takeover, not one per upgrade: \(cmdline)")
        XCTAssertTrue(try penha.command("blacklist").contains("7"), "the same configuration")
        XCTAssertEqual(try penha.command("pid"), ["\(current)"], "the control socket is the new process's")
        stream.shutdownWrite()
        XCTAssertEqual(try stream.readLine(), "EOF A")
    }

    /// A penha started as root with `-u nobody` (issue 20): `penha upgrade` as root hands it
    /// over, and the new process gives root up as the old one did.
    func testRootUpgradesAPenhaThatRunsAsAnotherUser() throws {
        try NetworkLab.requireRoot()
        let a = try Backend("A")
        let penha = try Penha(["-u", "nobody"], servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        let upgrade = try runPenha(["upgrade", "-C", penha.control])
        XCTAssertEqual(upgrade.status, 0, upgrade.stderr)
        guard let new = upgrade.stdout.split(separator: " ").last.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
            return XCTFail(upgrade.stdout)
        }
        defer { kill(new, SIGTERM) }
        XCTAssertTrue(isGone(penha.process.processIdentifier), "the old process is gone")
        try stream.send("after\n")
        XCTAssertEqual(try stream.readLine(), "after", "the stream goes on through the new process")
        let status = try String(contentsOfFile: "/proc/\(new)/status", encoding: .utf8)
        let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }.map(String.init) ?? ""
        XCTAssertEqual(uid, "Uid:\t65534\t65534\t65534\t65534", "the new process runs as nobody")
    }

    /// Exited: no such process, or a zombie not yet waited for by its parent.
    private func isGone(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.contains(") Z ")
    }

    func testAFailedUpgradeSaysSoAndTheOldProcessServesOn() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        // A binary that is not penha: it exits at once, without taking over.
        let upgrade = try runPenha(["upgrade", "-C", penha.control, "--binary", "/bin/false"])
        XCTAssertEqual(upgrade.status, 1, upgrade.stderr)
        XCTAssertTrue(upgrade.stderr.contains("upgrade failed, pid \(penha.process.processIdentifier) serves on"), upgrade.stderr)
        XCTAssertEqual(try whoAnswers(penha), "A")
    }
}

/// What a connection has queued in penha at the handover moves with it: a client and a
/// server that both send 32 MiB (more than the kernel buffers on loopback hold) while neither reads fill penha's buffers both ways (and
/// its kernel pipes, once splicing); after the takeover every byte arrives, in order.
final class HandoverQueuedBytesIntegrationTests: XCTestCase {
    static let size = 32 << 20

    private static func pattern(_ index: Int, _ salt: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: index &* 31 &+ index >> 9 &+ salt)
    }

    /// Sends `size` bytes of the pattern on its own thread.
    private func sender(_ fd: Int32, salt: Int, tally: UpgradeIntegrationTests.Tally) -> Thread {
        let thread = Thread {
            let bytes = (0..<Self.size).map { Self.pattern($0, salt) }
            do {
                try ClientSender(fd: fd).send(bytes)
            } catch {
                tally.failed("sending \(salt): \(error)")
            }
        }
        thread.start()
        return thread
    }

    /// Reads `size` bytes and checks them against the pattern; the first difference, if any.
    private static func check(_ fd: Int32, salt: Int) -> String? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        var offset = 0
        while offset < Self.size {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, Self.size - offset), 0) }
            guard count > 0 else { return "direction \(salt): \(offset) bytes, then \(count < 0 ? "errno \(errno)" : "the end")" }
            for index in 0..<count where chunk[index] != Self.pattern(offset + index, salt) {
                return "direction \(salt): byte \(offset + index) changed"
            }
            offset += count
        }
        return nil
    }

    func testBytesQueuedBothWaysAtTheHandoverArriveInOrder() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        guard address.withSockAddr({ bind(listener, $0, socklen_t($1)) }) == 0, listen(listener, 4) == 0 else {
            throw TestFailure("cannot listen: errno \(errno)")
        }
        let serverPort = freePortOf(listener)
        let old = try Penha([], servers: ["127.0.0.1:\(serverPort)"])
        let client = try Client(port: old.port, timeout: 20)
        let server = accept(listener, nil, nil)
        defer { close(server) }
        var time = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(server, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        let tally = UpgradeIntegrationTests.Tally()
        let senders = [sender(client.fd, salt: 1, tally: tally), sender(server, salt: 2, tally: tally)]
        // Neither side reads: the buffers fill up to penha's, which stops reading. Waited for
        // until both receivers' queues are no longer empty, then a moment more.
        let queued = { [server, client] in [server, client.fd].map { fd -> Int32 in
            var count: Int32 = 0
            _ = ioctl(fd, UInt(FIONREAD), &count)
            return count
        } }
        XCTAssertTrue(waitFor(timeout: 10) { queued().allSatisfy { $0 > 0 } }, "the buffers filled")
        usleep(300_000)
        let new = try Penha(["-C", old.control, "--takeover", old.control], listen: "127.0.0.1:\(old.port)",
                            servers: ["127.0.0.1:\(serverPort)"])
        XCTAssertEqual(old.waitForExit(timeout: 1), 0, old.stderr)
        XCTAssertTrue(new.stderr.contains("the listener and 1 connections"), new.stderr)
        let reader = Thread { if let wrong = Self.check(server, salt: 1) { tally.failed(wrong) } }
        reader.start()
        if let wrong = Self.check(client.fd, salt: 2) { tally.failed(wrong) }
        while !reader.isFinished { usleep(10_000) }
        for thread in senders { while !thread.isFinished { usleep(10_000) } }
        XCTAssertEqual(tally.failures, [])
    }
}

/// SIGUSR2: the running penha starts its successor itself, as under systemd, where the
/// successor must be in the unit's control group; the old one tells systemd the new main
/// process (MAINPID=) instead of STOPPING=1, and the new one feeds the watchdog.
final class SignalledUpgradeIntegrationTests: XCTestCase {
    func testSIGUSR2HandsOverAndTellsSystemdTheNewMainProcess() throws {
        let socket = try UnixDatagramListener()
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"],
                              environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "400000"])
        _ = try socket.next { $0.contains("READY=1") }
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        kill(penha.process.processIdentifier, SIGUSR2)
        let handover = try socket.next { $0.hasPrefix("MAINPID=") }
        guard let new = handover.split(separator: "\n").first.flatMap({ Int32($0.dropFirst("MAINPID=".count)) }) else {
            return XCTFail(handover)
        }
        defer { kill(new, SIGTERM) }
        // Not the old penha's child when it is named: systemd (before 254) takes a main process
        // that is not its own child as alien and SIGKILLs the unit at stop without waiting.
        let parent = try String(contentsOfFile: "/proc/\(new)/status", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("PPid:") }
        XCTAssertNotEqual(parent.flatMap { Int32($0.dropFirst(5).trimmingCharacters(in: .whitespaces)) },
                          penha.process.processIdentifier, "the successor is an orphan from the start")
        XCTAssertEqual(penha.waitForExit(timeout: 1), 0, penha.stderr)
        XCTAssertFalse(socket.all(for: 0.1).contains("STOPPING=1"), "the service is not stopping")
        XCTAssertEqual(try penha.command("pid"), ["\(new)"], "the control socket is the new main process's")
        let cmdline = try String(contentsOfFile: "/proc/\(new)/cmdline", encoding: .utf8)
        XCTAssertTrue(cmdline.contains("--takeover\0\(penha.control)"), cmdline)
        XCTAssertTrue(try socket.next(timeout: 3) { $0 == "WATCHDOG=1" } == "WATCHDOG=1", "the new process feeds the watchdog")
        try stream.send("after the upgrade\n")
        XCTAssertEqual(try stream.readLine(), "after the upgrade")
        XCTAssertTrue(penha.stderr.contains("SIGUSR2: starting"), penha.stderr)
    }

    /// A penha that gave root up (`-u nobody`) starts a successor that is not root: it could
    /// not take the user's groups as it would after the handover, so it stops before asking,
    /// saying to run `penha upgrade` as root, and the old one serves on with its connections.
    func testSIGUSR2OnAPenhaRunningAsAnotherUserLeavesItServing() throws {
        try NetworkLab.requireRoot()
        let a = try Backend("A")
        let penha = try Penha(["-u", "nobody"], servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        kill(penha.process.processIdentifier, SIGUSR2)
        XCTAssertTrue(waitFor(timeout: 10) { penha.stderr.contains("taken over by root only") }, penha.stderr)
        XCTAssertNil(penha.waitForExit(timeout: 0.5), "the old process serves on: \(penha.stderr)")
        try stream.send("still here\n")
        XCTAssertEqual(try stream.readLine(), "still here")
        XCTAssertEqual(try penha.command("pid"), ["\(penha.process.processIdentifier)"])
    }
}

/// The client table and the counters move with the listener: the new process sends a client
/// back to its server and counts on from the old one's totals.
final class HandoverStateIntegrationTests: XCTestCase {
    func testTheClientTableAndTheCountersMove() throws {
        let a = try Backend("A"), b = try Backend("B")
        let old = try Penha([], servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        for (source, server) in [("127.0.0.2", "A"), ("127.0.0.3", "B"), ("127.0.0.4", "A"), ("127.0.0.5", "B")] {
            XCTAssertEqual(try whoAnswers(old, source: source), server)
        }
        let stream = try Client(port: old.port, source: "127.0.0.3")
        XCTAssertEqual(try stream.readLine(), "B")
        try stream.send("some bytes\n")
        XCTAssertEqual(try stream.readLine(), "some bytes")
        let before = try old.command("status").filter { $0.hasPrefix("connections ") || $0.hasPrefix("server ") }
        let new = try Penha(["-C", old.control, "--takeover", old.control], listen: "127.0.0.1:\(old.port)",
                            servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        XCTAssertEqual(old.waitForExit(timeout: 1), 0, old.stderr)
        let after = try new.command("status").filter { $0.hasPrefix("connections ") || $0.hasPrefix("server ") }
        XCTAssertEqual(after, before, "the totals, each server's counters and the stream's connection, as they were")
        // Not the stream's client: its entry moved with the table, not with a connection.
        XCTAssertEqual(try Client(port: old.port, source: "127.0.0.5").readLine(), "B", "the client goes back to its server")
        XCTAssertTrue(try new.command("status").contains { $0.hasPrefix("connections 1 total 6 ") }, "counted on")
    }
}

/// TLS connections do not move (OpenSSL's state stays in its process): they drain in the old
/// process, which exits when they end, while the new one serves new TLS clients.
final class HandoverTLSIntegrationTests: XCTestCase {
    func testATLSConnectionDrainsInTheOldProcessWhileTheNewOneServes() throws {
        guard findTool("openssl") != nil else { throw XCTSkip("needs the openssl binary (CI installs it)") }
        let directory = temporaryPath("handover-tls")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificate = try TestCertificate.selfSigned("server.test", in: directory)
        let a = try Backend("A")
        let tls = ["-E", certificate.certificate, "-K", certificate.key]
        let old = try Penha(tls, servers: ["127.0.0.1:\(a.port)"])
        let draining = try TLSClient(port: old.port)
        XCTAssertEqual(try draining.readLine(), "A")
        let new = try Penha(tls + ["-C", old.control, "--takeover", old.control], listen: "127.0.0.1:\(old.port)",
                            servers: ["127.0.0.1:\(a.port)"])
        XCTAssertTrue(new.stderr.contains("the listener and 0 connections; 1 connections drain here (TLS, mid-request with -H, or still connecting)"),
                      new.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { old.stderr.contains("draining 1 connections") }, old.stderr)
        let fresh = try TLSClient(port: old.port)
        XCTAssertEqual(try fresh.readLine(), "A", "the new process serves new TLS clients")
        try draining.send(Array("still the old process\n".utf8))
        XCTAssertEqual(try draining.readLine(), "still the old process", "the TLS stream goes on where it was")
        XCTAssertTrue(old.process.isRunning, "the old process waits for it")
        XCTAssertEqual(try new.command("pid"), ["\(new.process.processIdentifier)"])
        draining.closeNotify()
        XCTAssertEqual(old.waitForExit(timeout: 5), 0, "it exits once its last TLS connection ended: \(old.stderr)")
    }
}

/// What the old process made and the new one took stays: a Unix listen socket's path, the
/// control socket's and the pid file, which the old one would remove at an ordinary exit.
final class HandoverFilesIntegrationTests: XCTestCase {
    func testTheListenSocketControlSocketAndPidFileStayTheNewProcesss() throws {
        let a = try Backend("A")
        let listen = temporaryPath("listen.sock"), pidFile = temporaryPath("penha.pid")
        defer { unlink(listen); unlink(pidFile) }
        let old = try Penha(["-p", pidFile], listen: listen, servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(unixPath: listen)
        XCTAssertEqual(try stream.readLine(), "A")
        let new = try Penha(["-p", pidFile, "-C", old.control, "--takeover", old.control], listen: listen, servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(old.waitForExit(timeout: 1), 0, old.stderr)
        XCTAssertTrue(new.stderr.contains("the listener and 1 connections"), new.stderr)
        XCTAssertEqual(try String(contentsOfFile: pidFile, encoding: .utf8), "\(new.process.processIdentifier)\n")
        XCTAssertEqual(try Client(unixPath: listen).readLine(), "A", "the listen socket's path is there")
        XCTAssertEqual(try new.command("pid"), ["\(new.process.processIdentifier)"], "and the control socket's")
        try stream.send("over a Unix socket\n")
        XCTAssertEqual(try stream.readLine(), "over a Unix socket")
    }
}

/// `sync` goes on in the new process: its listener is the old one's port again as soon as the
/// old process has let it go (the peers reconnect, as after any restart of this node).
final class HandoverSyncIntegrationTests: XCTestCase {
    func testTheSyncListenerIsTheNewProcesssOnceTheOldOneIsGone() throws {
        let key = temporaryPath("sync.key")
        try "a shared secret of the pair, 0123456789\n".write(toFile: key, atomically: true, encoding: .utf8)
        defer { unlink(key) }
        let a = try Backend("A")
        let listen = "127.0.0.1:\(freePort())"
        let sync = ["-O", "sync listen \(listen) peer 127.0.0.2:\(freePort(host: "127.0.0.2")) key \(key)"]
        let old = try Penha(sync, servers: ["127.0.0.1:\(a.port)"])
        XCTAssertTrue(waitFor(timeout: 5) { old.stderr.contains("sync: listening on \(listen)") }, old.stderr)
        let new = try Penha(sync + ["-C", old.control, "--takeover", old.control], listen: "127.0.0.1:\(old.port)",
                            servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(old.waitForExit(timeout: 1), 0, old.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { new.stderr.contains("sync: listening on \(listen)") }, new.stderr)
        XCTAssertFalse(new.stderr.contains("sync: cannot listen"), new.stderr)
        let port = Int(listen.split(separator: ":")[1]) ?? 0
        XCTAssertNoThrow(try Client(port: port, timeout: 2), "the sync port accepts")
    }
}
