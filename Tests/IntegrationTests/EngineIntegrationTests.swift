import XCTest

/// The TCP engine's own settings, through the real binary.
final class EngineIntegrationTests: XCTestCase {
    /// With several engine threads a returning client may be accepted by any of them and still
    /// goes back to its server: the client table is the shared state's, not a thread's.
    func testAReturningClientKeepsItsServerWhicheverThreadAcceptsIt() throws {
        try assertClientsKeepTheirServer(options: ["-O", "threads 4"], connections: 16)
    }

    /// The same, made certain: with one engine thread frozen the other must accept, so the
    /// client is accepted by each thread in turn (EPOLLEXCLUSIVE wakes an idle thread first,
    /// so sequential clients alone would all meet the same one), and keeps its server.
    func testAClientAcceptedByEachThreadInTurnKeepsItsServer() throws {
        let a = try Backend("A"), b = try Backend("B")
        let penha = try Penha(["-O", "threads 2"], servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        var answers: [String?] = []
        for round in 0..<4 {
            let freezer = try ThreadFreezer(penha, thread: "penha-engine-\(round % 2)")
            defer { freezer.release() }
            answers.append(try whoAnswers(penha, source: "127.0.0.2"))
            XCTAssertNotNil(try whoAnswers(penha, source: "127.0.0.3"), "another client meanwhile")
        }
        XCTAssertEqual(Set(answers).count, 1, "accepted by penha-engine-1, then 0, 1, 0: always the same server: \(answers)")
    }

    func testTheThreadsSettingIsAnswered() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "threads 4"], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try runPenha(["ctl", penha.control, "threads"]).stdout, "4\n")
    }

    /// `close N` reaches the connection on whichever engine thread relays it, and only that one.
    func testCloseNEndsThatTCPConnectionAndNoOther() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "threads 2"], servers: ["127.0.0.1:\(a.port)"])
        let first = try Client(port: penha.port)
        XCTAssertEqual(try first.readLine(), "A")
        let second = try Client(port: penha.port)
        XCTAssertEqual(try second.readLine(), "A")
        XCTAssertEqual(try penha.command("connection 1").first?.hasPrefix("connection 1 client 127.0.0.1:"), true)
        XCTAssertEqual(try penha.command("close 1"), ["closing connection 1"])
        XCTAssertNil(try second.readLine(), "connection 1 is closed")
        try first.send("still here\n")
        XCTAssertEqual(try first.readLine(), "still here", "connection 0 is not")
        XCTAssertEqual(try penha.command("close 1"), ["error: no connection 1"])
    }

    func testAThreadCountBeyondItsBoundIsRefusedByName() throws {
        let result = try runPenha(["-f", "-C", temporaryPath("threads.sock"), "-O", "threads 65", "127.0.0.1:\(freePort())", "127.0.0.1:9"])
        XCTAssertEqual(result.status, 2, result.stderr)
        XCTAssertTrue(result.stderr.contains("threads must be at most 64"), result.stderr)
    }
}
