import Foundation
import XCTest

/// pen's server selection, through the real binary.
final class SelectionIntegrationTests: XCTestCase {
    /// `maglev`: two penhas that share nothing (no sync, separate client tables), meeting the
    /// clients in opposite orders, send each of 40 clients to the same server, and spread them
    /// over all three (round-robin would agree on about a third).
    func testTwoNodesWithMaglevSendEachClientToTheSameServer() throws {
        let backends = try ["A", "B", "C"].map { try Backend($0) }
        let servers = backends.map { "127.0.0.1:\($0.port)" }
        let one = try Penha(["-O", "maglev"], servers: servers), two = try Penha(["-O", "maglev"], servers: servers)
        let sources = (2..<42).map { "127.0.0.\($0)" }
        let first = try sources.map { try whoAnswers(one, source: $0) }
        XCTAssertEqual(try sources.reversed().map { try whoAnswers(two, source: $0) }.reversed(), first)
        XCTAssertEqual(Set(first.compactMap { $0 }), ["A", "B", "C"], "\(first)")
    }

    func testClientsAreTrackedToTheirServerByAddress() throws {
        try assertClientsKeepTheirServer(options: [], connections: 4)
    }

    func testRoundRobinWithoutTrackingAlternates() throws {
        let a = try Backend("A"), b = try Backend("B")
        let penha = try Penha(["-r"], servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        let answers = try (1...4).map { _ in try whoAnswers(penha, source: "127.0.0.2") }
        XCTAssertEqual(answers, ["A", "B", "A", "B"])
    }

    func testTrackingTimeExpiresClients() throws {
        let a = try Backend("A"), b = try Backend("B")
        let penha = try Penha(["-T", "1"], servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "A")
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "A", "tracked")
        Thread.sleep(forTimeInterval: 2.2)  // the behaviour under test is the passing of time
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "B", "forgotten after -T, so round-robin moves on")
    }

    func testWeightSpreadsOpenConnectionsByWeight() throws {
        let a = try Backend("A"), b = try Backend("B")
        let penha = try Penha(["-W", "-r"], servers: ["127.0.0.1:\(a.port):0:0:1", "127.0.0.1:\(b.port):0:0:3"])
        // Held open, so each choice sees the connections before it.
        let clients = try (1...8).map { _ in try Client(port: penha.port) }
        let answers = try clients.map { try $0.readLine() }
        XCTAssertEqual(answers.filter { $0 == "A" }.count, 2, "\(answers)")
        XCTAssertEqual(answers.filter { $0 == "B" }.count, 6, "\(answers)")
    }

    func testPriorityPrefersTheLowestValueAndFallsBackInPriorityOrder() throws {
        let a = try Backend("A"), b = try Backend("B"), c = try Backend("C")
        let penha = try Penha(["-r", "-O", "prio"], servers: ["127.0.0.1:\(a.port):0:0:1:2",
                                                              "127.0.0.1:\(b.port):0:0:1:1",
                                                              "127.0.0.1:\(c.port):0:0:1:3"])
        XCTAssertEqual(try (1...3).map { _ in try whoAnswers(penha) }, ["B", "B", "B"])
        b.stop()
        // The first connection after B stops fails over to the next in the ring (C) and blacklists B;
        // after that, prio picks the next lowest value (A).
        XCTAssertEqual(try whoAnswers(penha), "C")
        XCTAssertEqual(try (1...3).map { _ in try whoAnswers(penha) }, ["A", "A", "A"])
    }

    /// pen's -N is -h without client tracking: the same server for each address as -h -r.
    func testHashSendsEachClientAddressToAFixedServer() throws {
        let backends = try ["A", "B", "C"].map { try Backend($0) }
        let penha = try Penha(["-h", "-r"], servers: backends.map { "127.0.0.1:\($0.port)" })
        let penN = try Penha(["-N"], servers: backends.map { "127.0.0.1:\($0.port)" })
        var seen = Set<String>()
        for last in 2...9 {
            let source = "127.0.0.\(last)"
            let answers = try (1...3).map { _ in try whoAnswers(penha, source: source) }
            XCTAssertEqual(Set(answers).count, 1, "\(source) moved between servers: \(answers)")
            XCTAssertEqual(try whoAnswers(penN, source: source), answers[0], "-N differs from -h -r for \(source)")
            seen.insert(answers[0] ?? "")
        }
        XCTAssertGreaterThan(seen.count, 1, "eight addresses all hashed to one server")
    }

    func testFailedServerIsBlacklistedThenTriedAgain() throws {
        let downPort = freePort()
        let b = try Backend("B")
        let penha = try Penha(["-r", "-b", "2"], servers: ["127.0.0.1:\(downPort)", "127.0.0.1:\(b.port)"])
        XCTAssertEqual(try whoAnswers(penha), "B", "the failed connect fails over to the next server")
        let revived = try Backend("A", port: downPort)
        XCTAssertEqual(try (1...4).map { _ in try whoAnswers(penha) }, ["B", "B", "B", "B"],
                       "a blacklisted server gets no connections")
        XCTAssertEqual(revived.accepted, 0)
        Thread.sleep(forTimeInterval: 2.5)  // the blacklist is a time: wait it out
        let after = try (1...4).map { _ in try whoAnswers(penha) }
        XCTAssertTrue(after.contains("A"), "after -b seconds the server is used again: \(after)")
    }

    func testEmergencyServerWhenAllServersFail() throws {
        let emergency = try Backend("E")
        let penha = try Penha(["-e", "127.0.0.1:\(emergency.port)"],
                              servers: ["127.0.0.1:\(freePort())", "127.0.0.1:\(freePort())"])
        XCTAssertEqual(try whoAnswers(penha), "E")
    }

    func testNoServerAtAllClosesTheClient() throws {
        let penha = try Penha([], servers: ["127.0.0.1:\(freePort())"])
        XCTAssertNil(try whoAnswers(penha), "closed without data")
    }

    func testStubbornClosesInsteadOfFailingOver() throws {
        let b = try Backend("B")
        let servers = ["127.0.0.1:\(freePort())", "127.0.0.1:\(b.port)"]
        let stubborn = try Penha(["-s", "-r"], servers: servers)
        XCTAssertNil(try whoAnswers(stubborn), "first choice failed: closed, not failed over")
        XCTAssertEqual(try whoAnswers(stubborn), "B", "the failed server is blacklisted for the next client")
        let plain = try Penha(["-r"], servers: servers)
        XCTAssertEqual(try whoAnswers(plain), "B", "without -s the same failure fails over")
    }

    func testSoftLimitSendsNewClientsElsewhere() throws {
        let a = try Backend("A"), b = try Backend("B")
        let penha = try Penha(["-r"], servers: ["127.0.0.1:\(a.port):1", "127.0.0.1:\(b.port)"])
        let held = try Client(port: penha.port)
        XCTAssertEqual(try held.readLine(), "A")
        XCTAssertEqual(try (1...3).map { _ in try whoAnswers(penha) }, ["B", "B", "B"], "A is at its limit of 1")
    }

    func testServerGivenByHostNameIsResolvedAtStart() throws {
        // localhost may resolve to either family first, so answer on both.
        let v4 = try Backend("A")
        let v6 = try Backend("A", host: "::1", port: v4.port)
        let penha = try Penha([], servers: ["localhost:\(v4.port)"])
        XCTAssertEqual(try whoAnswers(penha), "A")
        XCTAssertEqual(v4.accepted + v6.accepted, 1)
    }

    func testConnectTimeoutBlacklistsAServerThatNeverAnswersTheHandshake() throws {
        let unanswered = try FullListener()
        let good = try Backend("G")
        let penha = try Penha(["-r", "-t", "1"], servers: ["127.0.0.1:\(unanswered.port)", "127.0.0.1:\(good.port)"])
        let started = Date()
        let client = try Client(port: penha.port, timeout: 10)
        XCTAssertEqual(try client.readLine(), "G", "after the connect timeout the client fails over")
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(waited, 0.9, "the first server really was tried until -t")
        XCTAssertLessThan(waited, 5)
        let quick = Date()
        XCTAssertEqual(try whoAnswers(penha), "G")
        XCTAssertLessThan(Date().timeIntervalSince(quick), 0.9, "the timed-out server is blacklisted, not tried again")
    }
}

/// Two clients (by source address), `connections` each to a penha with `options` in front of
/// two backends: each client always reaches one server, and the second another one than the
/// first (round-robin for a new client).
func assertClientsKeepTheirServer(options: [String], connections: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    let a = try Backend("A"), b = try Backend("B")
    let penha = try Penha(options, servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
    let first = try (1...connections).map { _ in try whoAnswers(penha, source: "127.0.0.2") }
    let second = try (1...connections).map { _ in try whoAnswers(penha, source: "127.0.0.3") }
    XCTAssertEqual(Set(first).count, 1, "one client always reaches the same server: \(first)", file: file, line: line)
    XCTAssertEqual(Set(second).count, 1, "\(second)", file: file, line: line)
    XCTAssertNotEqual(first[0], second[0], "a new client goes round-robin to the next server", file: file, line: line)
}
