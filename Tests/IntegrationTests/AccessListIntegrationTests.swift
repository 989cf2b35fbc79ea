import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// pen's access lists through the real binary: client_acl with and without the abuse server
/// (-B), server N acl, and control_acl on the TCP control port. Clients come from different
/// loopback addresses (127.0.0.0/8 is all loopback on Linux).
final class AccessListIntegrationTests: XCTestCase {
    func testClientACLSendsARefusedClientToTheAbuseServerAndTheRestToTheServers() throws {
        let a = try Backend("A")
        let abuse = try Backend("ABUSE")
        let penha = try Penha(["-B", "127.0.0.1:\(abuse.port)"], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "A", "list 0 is empty: everyone is let in")
        // Changed on the running balancer, as an operator blocking an abuser would.
        XCTAssertEqual(try penha.command("acl 1 deny 127.0.0.2"), [])
        XCTAssertEqual(try penha.command("client_acl 1"), ["1"])
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "ABUSE")
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.3"), "A")
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.1"), "A")
        let status = try penha.command("status")
        XCTAssertTrue(status.contains { $0.hasPrefix("connections ") && $0.hasSuffix(" refused 1") }, "\(status)")
        let summary = try runPenha(["status", "-C", penha.control])
        XCTAssertTrue(summary.stdout.contains(" total, 1 refused by client_acl"), summary.stdout)
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("client refused by client_acl 1") }, penha.stderr)
        XCTAssertEqual(try penha.command("no acl 1"), [])
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "A", "an emptied list permits again")
    }

    func testWithoutAnAbuseServerARefusedClientIsClosed() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "acl 0 permit 127.0.0.1", "-O", "acl 0 permit 127.0.0.3"], servers: ["127.0.0.1:\(a.port)"])
        XCTAssertNil(try whoAnswers(penha, source: "127.0.0.2"), "the list ends in permit, so others are denied")
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.3"), "A")
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.1"), "A")
        XCTAssertEqual(a.accepted, 2, "the refused client never reached a server")
    }

    func testAServersACLKeepsSomeClientsAwayFromIt() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        let penha = try Penha(["-r", "-O", "acl 2 deny 127.0.0.3", "-O", "server 0 acl 2"],
                              servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        let blocked = try (0..<4).map { _ in try whoAnswers(penha, source: "127.0.0.3") }
        let others = try (0..<4).map { _ in try whoAnswers(penha, source: "127.0.0.1") }
        XCTAssertEqual(blocked, ["B", "B", "B", "B"], "server 0 refuses 127.0.0.3")
        XCTAssertEqual(Set(others), ["A", "B"], "round robin goes on for everyone else")
    }

    func testControlACLChecksTheTCPControlPort() throws {
        let a = try Backend("A")
        let port = freePort()
        let penha = try Penha(["-C", "127.0.0.1:\(port)", "-O", "acl 3 permit 127.0.0.1", "-O", "control_acl 3"],
                              servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try control(port: port, from: "127.0.0.1", "control_acl"), ["3"])
        XCTAssertEqual(try control(port: port, from: "127.0.0.2", "control_acl"), ["error: access denied by control_acl"])
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("control connection refused by control_acl 3") },
                      penha.stderr)
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "A", "client_acl is a different list (0, empty)")
    }

    /// Off loopback a TCP control port needs a control_acl list with entries.
    func testANonLoopbackControlPortNeedsAControlACL() throws {
        let a = try Backend("A")
        let port = freePort(host: "0.0.0.0")
        let unprotected = try runPenha(["-f", "-C", "0.0.0.0:\(port)", "127.0.0.1:\(freePort())", "127.0.0.1:\(a.port)"])
        XCTAssertEqual(unprotected.status, 2)
        XCTAssertTrue(unprotected.stderr.contains("off loopback and unauthenticated: it needs control_acl"), unprotected.stderr)
        let penha = try Penha(["-C", "0.0.0.0:\(port)", "-O", "acl 1 permit 127.0.0.1", "-O", "control_acl 1"],
                              servers: ["127.0.0.1:\(a.port)"])
        XCTAssertEqual(try control(port: port, from: "127.0.0.1", "control"), ["0.0.0.0:\(port)"])
        XCTAssertEqual(try control(port: port, from: "127.0.0.2", "control"), ["error: access denied by control_acl"])
        XCTAssertEqual(try whoAnswers(penha), "A")
        // Nor may a change open it later: emptying the list, or pointing at an empty one.
        for change in ["no acl 1", "control_acl 2"] {
            let answer = try control(port: port, from: "127.0.0.1", change)
            XCTAssertEqual(answer.count, 1, "\(answer)")
            XCTAssertTrue(answer.first?.contains("off loopback and unauthenticated") == true, "\(change): \(answer)")
        }
        XCTAssertEqual(try control(port: port, from: "127.0.0.2", "control"), ["error: access denied by control_acl"])
    }

    /// One command on a TCP control port from a chosen source address, as penctl sends it.
    private func control(port: Int, from source: String, _ line: String) throws -> [String] {
        let client = try Client(port: port, source: source)
        try client.send(line + "\n")
        var lines: [String] = []
        while let answer = try client.readLine() { lines.append(answer) }
        return lines
    }
}
