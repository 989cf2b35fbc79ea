import Foundation
import NIOCore
import NIOPosix
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The process around the balancer: its control socket is its own, its errors read as
/// words, its command line takes pen's forms, and SIGTERM ends it whatever is stuck.
final class ProcessRobustnessTests: XCTestCase {
    private var paths: [String] = []

    override func tearDown() {
        for path in paths { unlink(path) }
    }

    private func path(_ name: String) -> String {
        let path = temporaryPath(name)
        paths.append(path)
        return path
    }

    func testASecondPenhaLeavesALiveControlSocketAlone() throws {
        let a = try Backend("A")
        let control = path("a.sock")
        let first = try Penha(["-C", control], servers: ["127.0.0.1:\(a.port)"])
        let second = try runPenha(["-f", "-C", control, "127.0.0.1:\(freePort())", "127.0.0.1:\(a.port)"], timeout: 5)
        XCTAssertEqual(second.status, 2, second.stderr)
        XCTAssertEqual(second.stderr, "penha: another penha is listening on \(control)\n")
        let status = try runPenha(["ctl", control, "status"])
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertTrue(status.stdout.contains("listen 127.0.0.1:\(first.port)"), status.stdout)
    }

    func testAnOrderlyExitRemovesTheSocketsItBound() throws {
        let a = try Backend("A")
        let listen = path("gone-listen.sock")
        let penha = try Penha([], listen: listen, servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(access(listen, F_OK), 0)
        XCTAssertEqual(access(penha.control, F_OK), 0)
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertEqual(penha.waitForExit(timeout: 10), 0)
        XCTAssertNotEqual(access(listen, F_OK), 0, "the listen socket is gone")
        XCTAssertNotEqual(access(penha.control, F_OK), 0, "the control socket is gone")
    }

    func testASecondPenhaLeavesALiveUnixListenSocketAlone() throws {
        let a = try Backend("A")
        let listen = path("listen.sock")
        let first = try Penha([], listen: listen, servers: ["127.0.0.1:\(a.port)"])
        let second = try runPenha(["-f", "-C", path("second.sock"), listen, "127.0.0.1:\(a.port)"], timeout: 5)
        XCTAssertEqual(second.status, 1, second.stderr)
        XCTAssertTrue(second.stderr.contains("another penha is listening on \(listen)"), second.stderr)
        XCTAssertEqual(try Client(unixPath: listen).readLine(), "A", "the first still serves on its socket")
        _ = first
    }

    func testAStaleControlSocketIsReplaced() throws {
        let a = try Backend("A")
        // Left by a socket that was bound and closed, never unlinked.
        let closed = path("closed.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let address = try SocketAddress(unixDomainSocketPath: closed)
        XCTAssertEqual(address.withSockAddr { bind(fd, $0, socklen_t($1)) }, 0)
        close(fd)
        let replacing = try Penha(["-C", closed], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try replacing.command("pid"), ["\(replacing.process.processIdentifier)"])
        // Left by a penha killed with SIGKILL.
        let killed = path("killed.sock")
        let victim = try Penha(["-C", killed], servers: ["127.0.0.1:\(a.port)"])
        kill(victim.process.processIdentifier, SIGKILL)
        victim.process.waitUntilExit()
        XCTAssertTrue(FileManager.default.fileExists(atPath: killed), "SIGKILL leaves the socket file")
        let successor = try Penha(["-C", killed], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try successor.command("pid"), ["\(successor.process.processIdentifier)"])
    }

    func testAControlPathThatIsNotASocketIsNeitherUsedNorRemoved() throws {
        let regular = path("regular")
        XCTAssertTrue(FileManager.default.createFile(atPath: regular, contents: Data("keep\n".utf8)))
        let refused = try runPenha(["-f", "-C", regular, "127.0.0.1:\(freePort())", "127.0.0.1:9"])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertEqual(refused.stderr, "penha: \(regular) exists and is not a socket; penha does not replace it\n")
        XCTAssertEqual(FileManager.default.contents(atPath: regular), Data("keep\n".utf8))
    }

    func testCtlSaysSoWhenPenhaClosesWithoutAnAnswer() throws {
        let control = path("mute.sock")
        let mute = try ServerBootstrap(group: Backend.group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(CloseOnLine()) }
            }
            .bind(unixDomainSocketPath: control).wait()
        defer { try? mute.close().wait() }
        let answer = try runPenha(["ctl", control, "status"])
        XCTAssertEqual(answer.status, 1, answer.stderr)
        XCTAssertEqual(answer.stderr, "penha: penha closed the connection without an answer\n")
        let status = try runPenha(["status", "-C", control])
        XCTAssertEqual(status.status, 1, status.stderr)
        XCTAssertTrue(status.stderr.contains("without an answer"), status.stderr)
        // A command that answers nothing, from a penha that is alive, is still a success.
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let set = try runPenha(["ctl", penha.control, "roundrobin"])
        XCTAssertEqual([set.status.description, set.stdout, set.stderr], ["0", "", ""])
    }

    func testARelativeControlPathIsASocketInTheWorkingDirectory() throws {
        let a = try Backend("A")
        let directory = path("directory")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(directory))
        defer {
            _ = FileManager.default.changeCurrentDirectoryPath(previous)
            unlink("\(directory)/rel.sock")
            rmdir(directory)
        }
        let penha = try Penha(["-C", "rel.sock"], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(directory)/rel.sock"), penha.stderr)
        let answer = try runPenha(["ctl", "rel.sock", "pid"])
        XCTAssertEqual(answer.stdout, "\(penha.process.processIdentifier)\n", answer.stderr)
    }

    func testPensAttachedOptionValuesAreTaken() throws {
        let a = try Backend("A")
        let penha = try Penha(["-dx321", "-c4096", "-b7"], servers: ["127.0.0.1:\(a.port)"])
        for (command, expected) in [("conn_max", "321\n"), ("clients_max", "4096\n"), ("blacklist", "7\n"), ("debug", "1\n")] {
            let answer = try runPenha(["ctl", penha.control, command])
            XCTAssertEqual(answer.stdout, expected, "\(command): \(answer.stderr)")
        }
    }

    func testAListenAddressInUseIsSaidInWordsAndExitsOne() throws {
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        XCTAssertEqual(address.withSockAddr { bind(holder, $0, socklen_t($1)) }, 0)
        XCTAssertEqual(listen(holder, 1), 0)
        let port = freePortOf(holder)
        let result = try runPenha(["-f", "-C", path("c.sock"), "127.0.0.1:\(port)", "127.0.0.1:9"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stderr, "penha: cannot listen on 127.0.0.1:\(port): address already in use\n")
    }

    /// An address this host does not have (a VIP another penha's VRRP holds elsewhere) is
    /// refused in words, unless `freebind` asks to listen on it before the host has it.
    func testFreebindListensOnAnAddressTheHostDoesNotHaveYet() throws {
        let port = freePort()
        let refused = try runPenha(["-f", "-C", path("r.sock"), "192.0.2.77:\(port)", "127.0.0.1:9"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertEqual(refused.stderr, "penha: cannot listen on 192.0.2.77:\(port): cannot assign requested address\n")
        let penha = try Penha(["-O", "freebind"], listen: "192.0.2.77:\(port)", servers: ["127.0.0.1:9"])
        XCTAssertTrue(penha.process.isRunning)
        XCTAssertEqual(try penha.command("listen"), ["192.0.2.77:\(port)"])
    }

    /// The blocking-pool thread frozen (as if stuck on a slow disk): a command and SIGUSR1's
    /// statistics wait for it forever. Before, the signal loop waited for the statistics and
    /// never took SIGTERM.
    func testSIGTERMEndsPenhaWhileTheBlockingPoolIsStuck() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let freezer = try ThreadFreezer(penha, thread: "TP-#")
        defer { freezer.release() }
        let waiting = try Client(unixPath: penha.control)
        try waiting.send("servers\n")
        XCTAssertTrue(try isWedged(penha), "every command waits for the pool")
        kill(penha.process.processIdentifier, SIGUSR1)
        usleep(200_000)
        try assertSIGTERMEndsIt(penha)
    }

    /// The event loop frozen: the orderly shutdown (which closes the listener there) cannot
    /// finish, so the deadline ends penha, with a line that says so.
    func testSIGTERMEndsPenhaWhoseEventLoopIsStuck() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let freezer = try ThreadFreezer(penha, thread: "NIO-ELT-")
        defer { freezer.release() }
        XCTAssertTrue(try isWedged(penha))
        kill(penha.process.processIdentifier, SIGHUP)
        let status = try assertSIGTERMEndsIt(penha)
        XCTAssertEqual(status, 1, "cut short: a runtime failure")
        XCTAssertTrue(penha.stderr.contains("orderly shutdown not done after 5 s; exiting now"), penha.stderr)
    }

    /// Whether the control socket stops answering (every command waits for the stuck part).
    private func isWedged(_ penha: Penha) throws -> Bool {
        usleep(300_000)
        let probe = try Client(unixPath: penha.control, timeout: 1)
        try probe.send("pid\n")
        return (try? probe.readLine()) == nil
    }

    /// SIGTERM, then exit within the 5 s deadline and a margin for a loaded machine.
    @discardableResult
    private func assertSIGTERMEndsIt(_ penha: Penha, file: StaticString = #filePath, line: UInt = #line) throws -> Int32? {
        kill(penha.process.processIdentifier, SIGTERM)
        let status = penha.waitForExit(timeout: 5 + 5)
        XCTAssertNotNil(status, "penha still runs 10 s after SIGTERM; log: \(penha.stderr)", file: file, line: line)
        return status
    }
}

/// A control socket that reads the line and closes without a word, as a penha that died on it.
private final class CloseOnLine: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if unwrapInboundIn(data).readableBytesView.contains(UInt8(ascii: "\n")) { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Stops one thread of a running penha (ptrace's seize and interrupt stop that thread alone)
/// until released or 30 s have passed: a hang that no fix inside penha can undo, so the
/// SIGTERM bound is what the tests above see. Needs root (CI runs as root).
final class ThreadFreezer {
    private let process = Process()
    private let input = Pipe()

    private static let script = """
        import ctypes, os, sys, select
        libc = ctypes.CDLL(None, use_errno=True)
        pid, prefix = sys.argv[1], sys.argv[2]
        tids = [t for t in os.listdir(f"/proc/{pid}/task") if open(f"/proc/{pid}/task/{t}/comm").read().startswith(prefix)]
        if len(tids) != 1: sys.exit(f"threads named {prefix}: {tids}")
        tid = int(tids[0])
        PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
        if libc.ptrace(PTRACE_SEIZE, tid, 0, 0) != 0 or libc.ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0:
            sys.exit(f"ptrace: {os.strerror(ctypes.get_errno())}")
        # The interrupt only asks: the thread is frozen once waitpid reports its stop
        # (__WALL: a thread). Before, it could still take one more event.
        os.waitpid(tid, 0x40000000)
        print("frozen", flush=True)
        # Reaps the thread when penha exits (a traced thread is its tracer's to reap, and
        # until then penha cannot be waited for); ends on release or after 30 s.
        for _ in range(300):
            if select.select([sys.stdin], [], [], 0.1)[0]: break
            try:
                waited, status = os.waitpid(tid, os.WNOHANG | 0x40000000)
                if waited == tid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)): break
            except ChildProcessError: break
        """

    init(_ penha: Penha, thread prefix: String) throws {
        guard geteuid() == 0 else {
            if ProcessInfo.processInfo.environment["PENHA_REQUIRE_NETNS"] == "1" {
                throw TestFailure("PENHA_REQUIRE_NETNS=1 but not running as root: cannot freeze a thread with ptrace")
            }
            throw XCTSkip("needs root to freeze a thread with ptrace; CI runs it as root")
        }
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, "\(penha.process.processIdentifier)", prefix]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let said = String(decoding: output.fileHandleForReading.readData(ofLength: 7), as: UTF8.self)
        guard said == "frozen\n" else {
            release()
            throw TestFailure("could not freeze penha's \(prefix) thread")
        }
    }

    /// Ends the tracer, which lets the thread go (if penha still runs).
    func release() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}
