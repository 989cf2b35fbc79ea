import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Bad input, bad backends and signals: penha says what is wrong and never goes down.
final class RobustnessIntegrationTests: XCTestCase {
    func testBadArgumentsExitWithStatusTwoAndOneLineNamingThem() throws {
        let cases: [([String], String)] = [
            (["8080", "h:notaport"], "h:notaport"),
            (["8080", "h:80:1:2:3:4:5"], "h:80:1:2:3:4:5"),
            (["99999", "h"], "99999"),
            (["host:port", "h"], "host:port"),
            (["-b", "abc", "8080", "h"], "-b"),
            (["-x", "-1", "8080", "h"], "-x"),
            (["-Y", "8080", "h"], "-Y"),
            (["-Z", "8080", "h"], "-Z"),
            (["-O", "frobnicate", "8080", "h"], "frobnicate"),
            (["-e", "e:x", "8080", "h"], "e:x"),
            (["8080"], "no servers"),
            (["8080", "no-such-host.invalid"], "no-such-host.invalid"),
        ]
        for (arguments, named) in cases {
            let (status, stderr, _) = try runPenha(["-f"] + arguments)
            XCTAssertEqual(status, 2, "\(arguments): \(stderr)")
            let lines = stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(arguments) printed: \(stderr)")
            XCTAssertTrue(stderr.contains(named), "\(arguments): '\(stderr)' does not name '\(named)'")
        }
    }

    func testHelpExitsZero() throws {
        let (status, _, _) = try runPenha(["--help"])
        XCTAssertEqual(status, 0)
    }

    func testEachKindOfBadServerEndsTheClientCleanly() throws {
        let emergency = try Backend("E")
        let refused = try Penha(["-e", "127.0.0.1:\(emergency.port)"], servers: ["127.0.0.1:\(freePort())"])
        XCTAssertEqual(try whoAnswers(refused), "E", "a refused connect fails over, here to the emergency server")
        let reset = try Backend("R", behaviour: .reset)
        let resetting = try Penha([], servers: ["127.0.0.1:\(reset.port)"])
        do {
            let answer = try whoAnswers(resetting)
            XCTAssertNil(answer, "a server's reset closes the client; log: \(resetting.stderr)")
        } catch let failure as TestFailure {
            // Or, once the client is relayed to the server, the reset is passed on.
            XCTAssertTrue(failure.description.contains("errno \(ECONNRESET)"), "\(failure); log: \(resetting.stderr)")
        }
        let silent = try Backend("S", behaviour: .silent)
        let hanging = try Penha([], servers: ["127.0.0.1:\(silent.port)"])
        let client = try Client(port: hanging.port, timeout: 0.5)
        XCTAssertThrowsError(try client.readLine(), "a silent server sends nothing")
        try client.configure(timeout: 5)
        client.shutdownWrite()
        XCTAssertEqual(try client.readToEnd(), [], "FIN is passed on and the server's close ends the client")
    }

    func testRefusingResettingAndHangingServersLeakNothingAndDoNotStopPenha() throws {
        let reset = try Backend("R", behaviour: .reset)
        let silent = try Backend("S", behaviour: .silent)
        let good = try Backend("G")
        let penha = try Penha(["-r", "-b", "0", "-d"],
                              servers: ["127.0.0.1:\(freePort())", "127.0.0.1:\(reset.port)",
                                        "127.0.0.1:\(silent.port)", "127.0.0.1:\(good.port)"])
        let baseline = penha.openFileDescriptors
        for _ in 1...60 {
            let client = try Client(port: penha.port, timeout: 0.2)
            _ = try? client.readLine()
        }
        // Still up, and serving the good server among the bad ones.
        let answers = (1...8).map { _ in try? Client(port: penha.port, timeout: 0.5).readLine() }
        XCTAssertTrue(answers.contains("G"), "\(answers)")
        XCTAssertTrue(penha.process.isRunning)
        // Every client above is closed; penha must close its side and the server side.
        XCTAssertTrue(waitForDescriptors(of: penha, atMost: baseline),
                      "file descriptors leaked: \(baseline) before, now \(penha.descriptorListing)")
        XCTAssertGreaterThan(reset.accepted, 0, "the resetting server was really tried")
        XCTAssertGreaterThan(silent.accepted, 0, "the silent server was really tried")
    }

    func testIdleTimeoutClosesConnectionsToAHungServer() throws {
        let stuck = try Backend("S", behaviour: .stuck)
        let penha = try Penha(["-O", "idle_timeout 1"], servers: ["127.0.0.1:\(stuck.port)"])
        let baseline = penha.openFileDescriptors
        let client = try Client(port: penha.port, timeout: 5)
        client.shutdownWrite()
        // The hung server never closes; the idle timeout must, and the client sees EOF.
        XCTAssertEqual(try client.readToEnd(), [])
        XCTAssertTrue(waitForDescriptors(of: penha, atMost: baseline), "\(baseline) before, now \(penha.descriptorListing)")
        XCTAssertEqual(stuck.accepted, 1)
    }

    /// Waits, at most 10 s, for penha's open descriptors to come down to `limit`.
    private func waitForDescriptors(of penha: Penha, atMost limit: Int) -> Bool {
        waitFor(timeout: 10) { penha.openFileDescriptors <= limit }
    }

    /// With `drain 0` a connection still open does not hold the stop up (the default drains
    /// it: DrainIntegrationTests).
    func testSIGTERMStopsPromptlyWithStatusZero() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "drain 0"], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        kill(penha.process.processIdentifier, SIGTERM)
        XCTAssertEqual(penha.waitForExit(timeout: 3), 0)
        XCTAssertThrowsError(try Client(port: penha.port), "nothing listens after SIGTERM")
    }

    func testSIGINTAlsoStops() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        kill(penha.process.processIdentifier, SIGINT)
        XCTAssertEqual(penha.waitForExit(timeout: 3), 0)
    }
}
