import Foundation
import XCTest

/// Bytes through the real binary: exactly, in both directions, with half-close.
final class RelayIntegrationTests: XCTestCase {
    func testHalfCloseIsPassedOnAndTheReplyStillArrives() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        try client.send("ping\n")
        client.shutdownWrite()
        // The backend answers only after it sees our FIN, so this needs the FIN passed on
        // and the other direction kept open.
        XCTAssertEqual(String(decoding: try client.readToEnd(), as: UTF8.self), "ping\nEOF A\n")
    }

    /// The client's relay holds its reads until a server is connected: what a client sends at
    /// once waits in its socket through a failed connect and then reaches the next server.
    func testWhatAClientSendsAtOnceArrivesThroughAFailover() throws {
        let down = freePort()
        let b = try Backend("B")
        let penha = try Penha(["-r"], servers: ["127.0.0.1:\(down)", "127.0.0.1:\(b.port)"])
        let client = try Client(port: penha.port)
        try client.send("sent before any server answered\n")
        XCTAssertEqual(try client.readLine(), "B", "server 0 is down, so B")
        XCTAssertEqual(try client.readLine(), "sent before any server answered", "echoed by B")
    }

    /// A client that sends and closes its side at once: NIO reads up to the FIN before any
    /// server is connected, and both the bytes and the FIN still reach the server.
    func testDataAndFINSentAtOnceReachTheServer() throws {
        // The first server never completes a connect, so the client waits the whole -t for
        // its server while NIO sees its FIN.
        let unanswering = try FullListener()
        let a = try Backend("A")
        let penha = try Penha(["-r", "-t", "1"], servers: ["127.0.0.1:\(unanswering.port)", "127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port, timeout: 5)
        try client.send("early\n")
        client.shutdownWrite()
        XCTAssertEqual(String(decoding: try client.readToEnd(), as: UTF8.self), "A\nearly\nEOF A\n")
    }

    /// A connect that fails at once (here the bind to a `source` address this host does not
    /// have) closes the client; being this host's fault, it blacklists no server.
    func testAConnectThatFailsAtOnceStillClosesTheClient() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "source 192.0.2.1"], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port, timeout: 5)
        let started = Date()
        XCTAssertNil(try client.readLine(), "closed, not left waiting")
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("local failure connecting to server") }, penha.stderr)
        XCTAssertTrue(try penha.command("status").contains { $0.hasPrefix("server 0 ") && $0.contains("state up") })
    }

    func testFiftyMebibytesBothWaysArriveIntact() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port, timeout: 30)
        XCTAssertEqual(try client.readLine(), "A")
        let total = 50 * 1024 * 1024
        var sentSum = Checksum()
        var generator = SystemRandomNumberGenerator()
        let block = (0..<65536).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // Rotate the block each time so misordered chunks change the checksum.
        let blocks = (0..<(total / block.count)).map { index in Array(block[(index % 251)...] + block[..<(index % 251)]) }
        for chunk in blocks { sentSum.add(chunk) }
        let sender = client.sender
        let sending = Thread {
            for chunk in blocks { try? sender.send(chunk) }
            sender.shutdownWrite()
        }
        sending.start()
        var receivedSum = Checksum()
        let expected = Array("EOF A\n".utf8)
        var tail: [UInt8] = []
        var count = try client.drain { chunk in
            // Keep the last few bytes out of the checksum: they are the backend's EOF line.
            tail += chunk
            if tail.count > expected.count {
                receivedSum.add(Array(tail.prefix(tail.count - expected.count)))
                tail.removeFirst(tail.count - expected.count)
            }
        }
        count -= expected.count
        XCTAssertEqual(tail, expected)
        XCTAssertEqual(count, total)
        XCTAssertEqual(receivedSum.value, sentSum.value)
    }

    func testIPv4ClientToIPv6ServerAndBack() throws {
        let v6 = try Backend("six", host: "::1")
        let toSix = try Penha([], servers: ["[::1]:\(v6.port)"])
        XCTAssertEqual(try whoAnswers(toSix), "six")

        let v4 = try Backend("four")
        let listenPort = freePort(host: "::1")
        let toFour = try Penha([], listen: "[::1]:\(listenPort)", servers: ["127.0.0.1:\(v4.port)"])
        XCTAssertEqual(try Client(port: listenPort, host: "::1").readLine(), "four")
        _ = toFour
    }

    func testUnixSocketListener() throws {
        let a = try Backend("A")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("penha-test-\(getpid())-\(UUID().uuidString.prefix(8)).sock").path
        defer { unlink(path) }
        let penha = try Penha([], listen: path, servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try Client(unixPath: path).readLine(), "A")
        _ = penha
    }

    func testMaxConnectionsMakesNewClientsWaitInsteadOfDropping() throws {
        let a = try Backend("A")
        let penha = try Penha(["-x", "2"], servers: ["127.0.0.1:\(a.port)"])
        let first = try Client(port: penha.port)
        let second = try Client(port: penha.port)
        XCTAssertEqual(try first.readLine(), "A")
        XCTAssertEqual(try second.readLine(), "A")
        // The kernel completes the handshake, but penha does not accept a third connection.
        let third = try Client(port: penha.port, timeout: 1)
        XCTAssertThrowsError(try third.readLine(), "a third client is served while two are open")
        XCTAssertEqual(a.accepted, 2)
        first.shutdownWrite()
        XCTAssertEqual(try first.readToEnd(), Array("EOF A\n".utf8))
        let waiting = try Client(port: penha.port, timeout: 5)
        _ = waiting
        // Once a slot frees, the waiting client is accepted and served, not dropped.
        third.shutdownWrite()
        XCTAssertEqual(String(decoding: try third.readToEnd(), as: UTF8.self), "A\nEOF A\n")
    }

    func testSourceCommandSetsTheAddressServersSee() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "source 127.0.0.5"], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try whoAnswers(penha), "A")
        XCTAssertEqual(a.peers, ["127.0.0.5"])
        let plain = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try whoAnswers(plain), "A")
        XCTAssertEqual(a.peers.last, "127.0.0.1", "without source the kernel picks the address")
    }

    func testStatusCountsBytesWhileTheConnectionIsOpen() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        try client.send(String(repeating: "x", count: 999) + "\n")
        XCTAssertEqual(try client.readLine(), String(repeating: "x", count: 999), "echoed")
        // Still open: the counters already show both directions.
        let status = try runPenha(["status", "-C", penha.control, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let server = (object?["servers"] as? [[String: Any]])?.first
        XCTAssertEqual(server?["sent"] as? Int, 1000, status.stdout)
        XCTAssertEqual(server?["received"] as? Int, 1002, "the greeting and the echo: \(status.stdout)")
        XCTAssertEqual(server?["connections"] as? Int, 1)
    }

    func testHTTPModeAddsXForwardedForToEveryRequest() throws {
        let a = try Backend("A")  // echoes what it receives, so we read what the server got
        let request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        let second = "GET /b HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
        let penha = try Penha(["-H"], servers: ["127.0.0.1:\(a.port)"])
        let client = try Client(port: penha.port, source: "127.0.0.2")
        XCTAssertEqual(try client.readLine(), "A")
        try client.send(request + second)   // pipelined
        client.shutdownWrite()
        let received = String(decoding: try client.readToEnd(), as: UTF8.self)
        XCTAssertEqual(received, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.2\r\n\r\n"
            + "GET /b HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1, 127.0.0.2\r\n\r\n" + "EOF A\n")

        // The same with the http command instead of -H, and not without either.
        let byCommand = try Penha(["-O", "http"], servers: ["127.0.0.1:\(a.port)"])
        let viaCommand = try Client(port: byCommand.port, source: "127.0.0.3")
        XCTAssertEqual(try viaCommand.readLine(), "A")
        try viaCommand.send(request)
        XCTAssertEqual(try viaCommand.readLine(), "GET / HTTP/1.1\r")
        XCTAssertEqual(try viaCommand.readLine(), "Host: x\r")
        XCTAssertEqual(try viaCommand.readLine(), "X-Forwarded-For: 127.0.0.3\r")
        let plain = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        let untouched = try Client(port: plain.port)
        XCTAssertEqual(try untouched.readLine(), "A")
        try untouched.send(request)
        untouched.shutdownWrite()
        XCTAssertEqual(String(decoding: try untouched.readToEnd(), as: UTF8.self), request + "EOF A\n")
    }
}
