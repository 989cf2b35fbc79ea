import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Every way a connection can end gives its slot, its descriptors and its `-x` place back
/// exactly once. An end that ran twice (a TLS client that met no server, was refused by
/// client_acl or reset its handshake) put the slot twice in the free list: two later clients
/// shared it, one client's bytes went to the other's server, descriptors were closed twice
/// and `-x` admitted one client more per double end.
final class ConnectionEndIntegrationTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        guard findTool("openssl") != nil else { throw XCTSkip("needs the openssl binary (CI installs it)") }
        directory = temporaryPath("ends")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testEveryEndOfATLSConnectionFreesItsSlotOnceOnOneThread() throws {
        try everyEndFreesItsSlotOnce(threads: 1)
    }

    func testEveryEndOfATLSConnectionFreesItsSlotOnceOnTwoThreads() throws {
        try everyEndFreesItsSlotOnce(threads: 2)
    }

    /// `-x 3`: after handshakes that reset, three clients are relayed and a fourth waits
    /// until one of them leaves.
    func testHandshakesThatEndGiveBackExactlyTheirPlaceOfX() throws {
        let a = try Backend("A")
        let penha = try tlsPenha(["-x", "3"], backend: a)
        for _ in 0..<3 { try resetMidHandshake(penha) }
        try refuseAfterHandshake(penha)
        let admitted = try (0..<3).map { _ in try TLSClient(port: penha.port) }
        for client in admitted { XCTAssertEqual(try client.readLine(), "A") }
        let fourth = try Client(port: penha.port, timeout: 1.5)
        try fourth.send([0x16, 0x03, 0x01, 0x00, 0x40] + [UInt8](repeating: 0xFF, count: 0x40))
        XCTAssertThrowsError(try fourth.readToEnd(), "a fourth client is not taken while three are relayed")
        _ = admitted.first.map { $0.closeNotify() }
        try fourth.configure(timeout: 10)
        XCTAssertNoThrow(try fourth.readToEnd(), "the place a client left is taken by the waiting one")
    }

    /// A connect refused with no other server to try ends the client, and the server's count
    /// of connections is given back once: the relayed client still counts.
    func testAFailedConnectGivesBackItsServerCountOnce() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let relayed = try Client(port: penha.port)
        XCTAssertEqual(try relayed.readLine(), "A")
        a.stop()  // the listener goes, the relayed connection stays
        XCTAssertEqual(try Client(port: penha.port).readToEnd(), [], "refused, no other server: closed")
        let server = try penha.command("status").first { $0.hasPrefix("server 0 ") } ?? ""
        XCTAssertTrue(server.contains(" connections 1 "), "the relayed client still counts: \(server)")
    }

    // MARK: -

    private func everyEndFreesItsSlotOnce(threads: Int) throws {
        let a = try Backend("A")
        let penha = try tlsPenha(["-O", "threads \(threads)"], backend: a)
        let closes = try CloseTrace(of: penha)

        for _ in 0..<4 { try refuseAfterHandshake(penha) }
        for _ in 0..<4 { try resetMidHandshake(penha) }
        // Refused by client_acl, no abuse server (-B): closed after its handshake.
        XCTAssertEqual(try penha.command("acl 1 deny 127.0.0.2"), [])
        XCTAssertEqual(try penha.command("client_acl 1"), ["1"])
        for _ in 0..<2 { XCTAssertTrue(try TLSClient(port: penha.port, source: "127.0.0.2").isClosedWithoutData()) }
        XCTAssertEqual(try penha.command("client_acl 0"), ["0"])
        // A handshake that fails, and one that closes before it ends.
        let garbage = try Client(port: penha.port)
        try garbage.send([0x16, 0x03, 0x01, 0x00, 0x40] + [UInt8](repeating: 0xFF, count: 0x40))
        _ = try garbage.readToEnd()
        let quitter = try Client(port: penha.port)
        try quitter.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        quitter.shutdownWrite()
        _ = try quitter.readToEnd()

        // Eight clients at once, each with its own bytes: each gets back exactly its own.
        let clients = try (0..<8).map { _ in try TLSClient(port: penha.port) }
        for client in clients { XCTAssertEqual(try client.readLine(), "A") }
        for round in 0..<16 {
            let sent = clients.indices.map { index in
                Array("client \(index) round \(round) \(String(repeating: "\(index)", count: 1000))\n".utf8)
            }
            for (client, bytes) in zip(clients, sent) { try client.send(bytes) }
            for (index, (client, bytes)) in zip(clients, sent).enumerated() {
                var echoed: [UInt8] = []
                while echoed.count < bytes.count {
                    let chunk = try client.receive(upTo: bytes.count - echoed.count)
                    guard !chunk.isEmpty else { throw TestFailure("client \(index) was closed in round \(round)") }
                    echoed += chunk
                }
                XCTAssertEqual(echoed, bytes, "client \(index) got another client's bytes in round \(round)")
            }
        }
        for client in clients { client.closeNotify() }
        XCTAssertTrue(waitFor(timeout: 5) { a.active == 0 }, "every server connection ended with its client")
        XCTAssertTrue(penha.process.isRunning, "no end tripped the once-only assertion: \(penha.stderr)")
        XCTAssertTrue(waitFor(timeout: 5) { (try? penha.command("status"))?.contains { $0.hasPrefix("connections 0 ") } == true },
                      "no connection is left in the status: \((try? penha.command("status")) ?? [])")
        if let closes {
            let (count, failed) = try closes.finish()
            XCTAssertGreaterThan(count, 20, "strace saw the connections' closes")
            XCTAssertEqual(failed, [], "a descriptor was closed twice")
        }
    }

    private func tlsPenha(_ options: [String], backend: Backend) throws -> Penha {
        let certificate = try TestCertificate.selfSigned("server.test", in: directory)
        return try Penha(["-E", certificate.certificate, "-K", certificate.key] + options, servers: ["127.0.0.1:\(backend.port)"])
    }

    /// A client whose handshake completes while no server is available: closed at once.
    private func refuseAfterHandshake(_ penha: Penha) throws {
        XCTAssertEqual(try penha.command("server 0 blacklist 60"), [])
        defer { _ = try? penha.command("server 0 blacklist 0") }
        XCTAssertTrue(try TLSClient(port: penha.port).isClosedWithoutData(), "no server: closed after the handshake")
    }

    /// A client that resets its connection in the middle of its handshake.
    private func resetMidHandshake(_ penha: Penha) throws {
        let client = try Client(port: penha.port)
        try client.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        usleep(20_000)
        client.resetOnClose()
    }
}

/// The failed `close` calls of a running penha (EBADF: a descriptor closed twice), from an
/// strace attached to all its threads. nil when not root (ptrace is refused), except that
/// PENHA_REQUIRE_NETNS=1 (CI, as root) makes that a failure.
final class CloseTrace {
    private let command: BackgroundCommand

    init?(of penha: Penha) throws {
        guard getuid() == 0, findTool("strace") != nil else {
            if ProcessInfo.processInfo.environment["PENHA_REQUIRE_NETNS"] == "1" {
                throw TestFailure("PENHA_REQUIRE_NETNS=1 but strace cannot attach (needs root and strace)")
            }
            print("not counting closes: strace attaches as root only (CI does)")
            return nil
        }
        let pid = penha.process.processIdentifier
        command = try BackgroundCommand(["strace", "-f", "-qq", "-e", "trace=close", "-o", "/dev/stdout", "-p", "\(pid)"],
                                        seconds: 120)
        let traced = waitFor(timeout: 10) {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return !tasks.isEmpty && tasks.allSatisfy { task in
                let status = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)) ?? ""
                return status.split(separator: "\n").contains { $0.hasPrefix("TracerPid:") && !$0.hasSuffix("\t0") }
            }
        }
        guard traced else { throw TestFailure("strace did not attach to every thread of penha") }
    }

    /// Detaches; how many close calls were made meanwhile, and those that failed.
    func finish() throws -> (count: Int, failed: [String]) {
        command.interrupt()
        let calls = try command.finish().split(separator: "\n").filter { $0.contains("close(") }
        return (calls.count, calls.filter { $0.contains("EBADF") }.map(String.init))
    }
}
