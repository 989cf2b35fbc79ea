import NIOCore
import NIOEmbedded
import XCTest
@testable import Balancer
@testable import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

final class FailureCauseTests: XCTestCase {
    func testShortagesAndMissingLocalAddressesAreThisHostsFaultTheRestTheServers() {
        for code in [EMFILE, ENFILE, ENOBUFS, ENOMEM, ENOSPC] {
            XCTAssertEqual(FailureCause(errno: code), .localResources, "errno \(code)")
        }
        for code in [EADDRNOTAVAIL, EADDRINUSE, EAFNOSUPPORT] {
            XCTAssertEqual(FailureCause(errno: code), .localAddress, "errno \(code)")
        }
        for code in [ECONNREFUSED, ECONNRESET, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ECONNABORTED] {
            XCTAssertEqual(FailureCause(errno: code), .server, "errno \(code)")
        }
        XCTAssertTrue(FailureCause(IOError(errnoCode: EMFILE, reason: "socket")).isLocal)
        XCTAssertFalse(FailureCause(ChannelError.connectTimeout(.seconds(3))).isLocal, "a timeout is the server's")
    }

    func testALocalConnectFailureTakesBackTheConnectionAndBlacklistsNothing() {
        var state = makeState(2, clients: 8)
        var placement = state.accept(client: client(1), now: at(0))
        XCTAssertEqual(state.nextTarget(&placement, now: at(0)), .server(0))
        XCTAssertEqual(state.servers.servers[0].connections, 1)
        state.connectFailedLocally(.server(0))
        XCTAssertEqual(state.servers.servers[0].connections, 0)
        XCTAssertFalse(state.servers.servers[0].isBlacklisted(now: at(0)))
    }
}

/// The listener's accepting, on an `EmbeddedChannel` standing in for the listening socket
/// (which ignores autoRead itself, so `isAccepting` tells what the limiter set).
final class ConnectionLimiterTests: XCTestCase {
    func testAShortageInAcceptPausesAcceptingForTheBackOffAndIsLoggedOnceASecond() throws {
        let limiter = ConnectionLimiter(limit: 0)
        var warnings: [String] = []
        limiter.warn = { warnings.append($0) }
        let loop = EmbeddedEventLoop()
        let listener = EmbeddedChannel(handler: limiter, loop: loop)
        XCTAssertTrue(limiter.isAccepting)

        listener.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept4"))
        XCTAssertFalse(limiter.isAccepting, "no accept right after one failed for want of descriptors")
        listener.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept4"))
        loop.advanceTime(by: FailureCause.backOff - .milliseconds(1))
        XCTAssertFalse(limiter.isAccepting)
        loop.advanceTime(by: .milliseconds(1))
        XCTAssertTrue(limiter.isAccepting, "accepting again after the back-off")
        XCTAssertEqual(warnings.count, 1, "the second failure within a second is held back: \(warnings)")
        XCTAssertTrue(warnings[0].contains("accepting a client") && warnings[0].contains("not accepting for 100 ms"),
                      warnings[0])
    }

    func testOtherAcceptErrorsPassOnAndDoNotPause() throws {
        let limiter = ConnectionLimiter(limit: 0)
        let listener = EmbeddedChannel(handler: limiter, loop: EmbeddedEventLoop())
        listener.pipeline.fireErrorCaught(IOError(errnoCode: ECONNABORTED, reason: "accept4"))
        XCTAssertTrue(limiter.isAccepting)
        XCTAssertThrowsError(try listener.throwIfErrorCaught(), "passed on to NIO's acceptor")
    }

    func testTheBackOffEndingDoesNotResumeAListenerThatIsFull() throws {
        let limiter = ConnectionLimiter(limit: 1)
        let loop = EmbeddedEventLoop()
        let listener = EmbeddedChannel(handler: limiter, loop: loop)
        let client = EmbeddedChannel(loop: loop)
        try listener.writeInbound(client as Channel)
        XCTAssertFalse(limiter.isAccepting, "-x 1 reached")
        limiter.localFailure(IOError(errnoCode: EMFILE, reason: "socket"), while: "connecting")
        loop.advanceTime(by: FailureCause.backOff)
        XCTAssertFalse(limiter.isAccepting, "still full after the back-off")
        limiter.release()
        XCTAssertTrue(limiter.isAccepting)
    }

    func testALocalAddressFailureIsLoggedWithoutPausing() throws {
        let limiter = ConnectionLimiter(limit: 0)
        var warnings: [String] = []
        limiter.warn = { warnings.append($0) }
        let listener = EmbeddedChannel(handler: limiter, loop: EmbeddedEventLoop())
        defer { _ = try? listener.finish() }
        limiter.localFailure(IOError(errnoCode: EADDRNOTAVAIL, reason: "bind"), while: "connecting")
        XCTAssertTrue(limiter.isAccepting, "a missing source address is not a shortage that passes")
        XCTAssertEqual(warnings.count, 1)
    }

}
