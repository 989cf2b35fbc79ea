import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM with connections open (`drain`, issue 20): the listener closes first, the open
/// connections are relayed on byte for byte until they end, the bound, or a second SIGTERM.
final class DrainIntegrationTests: XCTestCase {
    func testAStreamGoesOnByteExactAfterSIGTERMNewClientsAreRefusedAndPenhaExitsWhenItEnds() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "drain 20"], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        kill(penha.process.processIdentifier, SIGTERM)
        // The drain's first line comes once the listener is closed: a client probing before
        // it could still be accepted, and counted.
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("draining 1 connections") }, penha.stderr)
        XCTAssertNil(try? Client(port: penha.port, timeout: 1), "new clients are refused")
        XCTAssertTrue(try penha.command("status").contains { $0.hasPrefix("draining 1 seconds_left ") })
        let summary = try runPenha(["status", "-C", penha.control])
        XCTAssertTrue(summary.stdout.contains("stopping: draining 1 connections, "), summary.stdout)
        for line in 0..<50 {
            let text = "line \(line) of a stream that outlives the SIGTERM \(String(repeating: "x", count: line * 20))"
            try client.send(text + "\n")
            XCTAssertEqual(try client.readLine(), text)
            usleep(20_000)
        }
        XCTAssertTrue(penha.process.isRunning, "still draining: the stream is open")
        client.shutdownWrite()
        XCTAssertEqual(try client.readLine(), "EOF A", "half-close is passed on as ever")
        XCTAssertEqual(penha.waitForExit(timeout: 3), 0, "exits once its last connection has ended: \(penha.stderr)")
        XCTAssertFalse(penha.stderr.contains("still open"), penha.stderr)
    }

    func testASecondSIGTERMEndsTheDrainAtOnce() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("draining 1 connections, 30 s left") }, "the default bound: \(penha.stderr)")
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertEqual(penha.waitForExit(timeout: 3), 0, penha.stderr)
        XCTAssertTrue(penha.stderr.contains("closing 1 connections still open"), penha.stderr)
        XCTAssertNil(try? client.readLine(), "its connection is closed")
    }

    func testTheBoundClosesWhatIsLeftAndDrainZeroDoesNotWait() throws {
        let a = try Backend("A")
        for (seconds, within) in [(2, 5.0), (0, 1.5)] {
            let penha = try Penha(["-O", "drain \(seconds)"], servers: ["127.0.0.1:\(a.port)"])
            let client = try Client(port: penha.port)
            XCTAssertEqual(try client.readLine(), "A")
            let started = Date()
            kill(penha.process.processIdentifier, SIGTERM)
            XCTAssertEqual(penha.waitForExit(timeout: within), 0, "drain \(seconds): \(penha.stderr)")
            XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), Double(seconds) - 0.2, "drain \(seconds) is waited for")
            XCTAssertTrue(penha.stderr.contains("closing 1 connections still open"), penha.stderr)
        }
    }

    func testDrainZeroOverTheControlSocketEndsARunningDrainAndSIGHUPIsIgnoredWithALine() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "drain 600"], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("draining 1 connections, 600 s left") }, penha.stderr)
        kill(penha.process.processIdentifier, SIGHUP)
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("SIGHUP ignored: penha is stopping") }, penha.stderr)
        XCTAssertTrue(penha.process.isRunning, "SIGHUP does not end the drain")
        _ = try penha.command("drain 0")
        XCTAssertEqual(penha.waitForExit(timeout: 3), 0, "drain 0 ends it at once: \(penha.stderr)")
        XCTAssertTrue(penha.stderr.contains("closing 1 connections still open"), penha.stderr)
    }
}
