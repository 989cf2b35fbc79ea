import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Active health checks (issue 13) with the real binary against real backends on loopback.
final class HealthCheckIntegrationTests: XCTestCase {
    /// A client loop from 127.0.0.1 (tracked to the server it got first) until `stop` is set:
    /// the backends that answered and the clients that got no answer.
    private final class ClientLoop: Sendable {
        private struct Tally {
            var stopping = false
            var answers: [String] = []
            var errors = 0
        }

        private let tally = Mutex(Tally())
        private let done = DispatchSemaphore(value: 0)

        init(_ penha: Penha) {
            Thread.detachNewThread { [self] in
                // Bounded: at most 2000 clients, and the test stops it far sooner.
                for _ in 0..<2000 {
                    if tally.withLock({ $0.stopping }) { break }
                    let answer = try? whoAnswers(penha)
                    tally.withLock {
                        if let answer = answer ?? nil { $0.answers.append(answer) } else { $0.errors += 1 }
                    }
                    usleep(10_000)
                }
                done.signal()
            }
        }

        func stop() -> (answers: [String], errors: Int) {
            tally.withLock { $0.stopping = true }
            _ = done.wait(timeout: .now() + 10)
            return tally.withLock { ($0.answers, $0.errors) }
        }
    }

    func testAStoppedServerIsDownAfterFallChecksWithoutAnyClientConnectFailing() throws {
        let first = try Backend("first")
        let second = try Backend("second")
        let penha = try Penha(["-O", "healthcheck tcp interval 200ms timeout 100ms rise 2 fall 3"],
                              servers: ["127.0.0.1:\(first.port)", "127.0.0.1:\(second.port)"])
        XCTAssertTrue(waitFor(timeout: 5) { penha.serverStatus(1)["check_result"] == "connected" }, penha.stderr)
        let loop = ClientLoop(penha)
        XCTAssertTrue(waitFor(timeout: 5) { first.accepted > 3 })
        let stopped = Date()
        second.stop()
        XCTAssertTrue(waitFor(timeout: 5) { penha.serverStatus(1)["check"] == "down" }, penha.stderr)
        let took = Date().timeIntervalSince(stopped)
        // Three failed checks 200 ms apart (give or take a tenth): at least two intervals.
        XCTAssertGreaterThan(took, 0.3, "down only after fall checks")
        XCTAssertLessThan(took, 1.5)
        usleep(200_000)
        let (answers, errors) = loop.stop()
        XCTAssertEqual(errors, 0, "no client failed while the server went down")
        XCTAssertGreaterThan(answers.count, 10)
        XCTAssertEqual(Set(answers), ["first"])
        // A new client (round-robin's next is server 1) is placed on the other server at once.
        XCTAssertEqual(try whoAnswers(penha, source: "127.0.0.2"), "first")
        let status = penha.serverStatus(1)
        XCTAssertEqual(status["state"], "down")
        XCTAssertEqual(status["check_result"], "connection refused")
        XCTAssertGreaterThanOrEqual(Int(status["check_failures"] ?? "") ?? 0, 3)
        XCTAssertEqual(status["blacklist_left"], "0")
        XCTAssertFalse(penha.stderr.contains("connect to server failed"), "no client connect failed: \(penha.stderr)")
        XCTAssertEqual(penha.stderr.components(separatedBy: "healthcheck: server 1 127.0.0.1:\(second.port) is down: "
                                                   + "connection refused, 3 failed checks in a row").count, 2,
                       "one log line for the transition: \(penha.stderr)")
    }

    func testAServerAnswering503IsTakenOutAndComesBackAfterRiseGoodAnswers() throws {
        let healthy = try HTTPBackend("healthy", status: 200)
        let sick = try HTTPBackend("sick", status: 503)
        let penha = try Penha(["-r", "-O", "healthcheck http /health host checks.example interval 200ms timeout 150ms rise 3 fall 2"],
                              servers: ["127.0.0.1:\(healthy.port)", "127.0.0.1:\(sick.port)"])
        XCTAssertTrue(waitFor(timeout: 5) { penha.serverStatus(1)["check"] == "down" }, penha.stderr)
        XCTAssertEqual(penha.serverStatus(1)["check_result"], "HTTP 503")
        XCTAssertEqual(penha.serverStatus(0)["check"], "up")
        XCTAssertTrue(penha.stderr.contains("is down: HTTP 503, 2 failed checks in a row"), penha.stderr)
        let check = try XCTUnwrap(sick.requests.first)
        XCTAssertTrue(check.hasPrefix("GET /health HTTP/1.1\r\n"), check)
        XCTAssertTrue(check.contains("\r\nHost: checks.example\r\n") && check.contains("\r\nConnection: close\r\n"), check)
        let whileSick = (0..<6).map { _ in httpAnswer(penha) }
        XCTAssertEqual(whileSick, Array(repeating: "healthy", count: 6), "round-robin skips the sick server")

        let healed = Date()
        let checksBefore = sick.requests.count
        sick.status = 200
        XCTAssertTrue(waitFor(timeout: 5) { penha.serverStatus(1)["check"] == "up" }, penha.stderr)
        XCTAssertGreaterThan(Date().timeIntervalSince(healed), 0.3, "up only after rise good answers, 200 ms apart")
        XCTAssertGreaterThanOrEqual(sick.requests.count - checksBefore, 3)
        XCTAssertTrue(penha.stderr.contains("is up again: HTTP 200, 3 good checks in a row"), penha.stderr)
        let afterwards = Set((0..<6).compactMap { _ in httpAnswer(penha) })
        XCTAssertEqual(afterwards, ["healthy", "sick"], "back in rotation")
    }

    func testAServerThatAcceptsAndNeverAnswersIsDownAfterItsTimeouts() throws {
        let hung = try Backend("hung", behaviour: .stuck)
        let penha = try Penha(["-O", "healthcheck http / interval 300ms timeout 200ms rise 2 fall 2"],
                              servers: ["127.0.0.1:\(hung.port)"])
        XCTAssertTrue(waitFor(timeout: 5) { penha.serverStatus(0)["check"] == "down" }, penha.stderr)
        XCTAssertEqual(penha.serverStatus(0)["check_result"], "timeout after 200ms")
        XCTAssertGreaterThanOrEqual(hung.accepted, 2, "it accepted the checks")
        // Each timed-out check's socket is closed: penha's descriptors stay put over more checks.
        let descriptors = penha.openFileDescriptors
        usleep(1_000_000)
        XCTAssertLessThanOrEqual(penha.openFileDescriptors, descriptors + 1, penha.descriptorListing)

        let json = try runPenha(["status", "-C", penha.control, "--json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let server = try XCTUnwrap((object?["servers"] as? [[String: Any]])?.first)
        XCTAssertEqual(server["state"] as? String, "down")
        XCTAssertEqual(server["check"] as? String, "down")
        XCTAssertEqual(server["checkResult"] as? String, "timeout after 200ms")
        XCTAssertGreaterThanOrEqual(server["checkFailures"] as? Int ?? 0, 2)
        XCTAssertNotNil(server["checkChangedSecondsAgo"] as? Int)
        let text = try runPenha(["status", "-C", penha.control])
        XCTAssertTrue(text.stdout.contains("check down: timeout after 200ms"), text.stdout)
        // pen's `servers` keeps its format.
        XCTAssertEqual(try penha.command("servers").first?.split(separator: " ").first, "0")
        XCTAssertFalse(try penha.command("servers").joined().contains("check"))
    }

    func testAHundredServersAreCheckedSpreadOverTheInterval() throws {
        let recorder = try ConnectRecorder(count: 100)
        let penha = try Penha(["-O", "healthcheck tcp interval 2s timeout 1s"],
                              servers: recorder.ports.map { "127.0.0.1:\($0)" })
        XCTAssertTrue(waitFor(timeout: 6) { recorder.firstConnects.count == 100 }, "\(recorder.firstConnects.count) checked")
        let times = recorder.firstConnects.values.map(\.timeIntervalSince1970).sorted()
        let span = times.last! - times.first!
        XCTAssertGreaterThan(span, 1.2, "the first round is spread over the 2 s interval")
        XCTAssertLessThan(span, 3.0)
        // Uniformly spread, a 100 ms window holds about 5 of them; a burst would hold them all.
        let busiest = times.indices.map { start in times[start...].prefix { $0 < times[start] + 0.1 }.count }.max()!
        XCTAssertLessThanOrEqual(busiest, 40, "no burst of checks")
        XCTAssertFalse(penha.stderr.contains("is down"), penha.stderr)
    }

    func testWriteKeepsTheChecksAndAReloadWithTheSameFileDoesNotRestartThem() throws {
        let backend = try Backend("only")
        let file = temporaryPath("penha.conf")
        defer { unlink(file) }
        try "healthcheck tcp interval 100ms timeout 50ms rise 2 fall 3\nserver 0 healthcheck on\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let penha = try Penha(["-F", file], servers: ["127.0.0.1:\(backend.port)"])
        XCTAssertTrue(waitFor(timeout: 5) { Int(penha.serverStatus(0)["check_successes"] ?? "") ?? 0 >= 3 }, penha.stderr)
        try penha.signal(SIGHUP, thenLogs: "reloaded")
        let kept = Int(penha.serverStatus(0)["check_successes"] ?? "") ?? 0
        XCTAssertGreaterThanOrEqual(kept, 3, "the reload kept the count: the checks were not restarted")
        XCTAssertFalse(penha.stderr.contains("reload: healthcheck"), penha.stderr)
        _ = try penha.command("server 0 healthcheck off")
        XCTAssertEqual(penha.serverStatus(0)["check"], "disabled")
        _ = try penha.command("write")
        let written = try String(contentsOfFile: file, encoding: .utf8)
        XCTAssertTrue(written.contains("\nhealthcheck tcp interval 100ms timeout 50ms rise 2 fall 3\n"), written)
        XCTAssertTrue(written.contains(" healthcheck off\n"), written)
        XCTAssertEqual(try penha.command("healthcheck tcp interval 1ms"),
                       ["error: healthcheck: interval must be from 10ms to 3600s, not 1ms"])
    }
}

/// The VRRP coupling: a node whose checks find its servers down hands the VIP on (root only).
final class HealthCheckVRRPIntegrationTests: XCTestCase {
    func testANodeWhoseChecksFailHandsTheVIPOn() throws {
        let lab = try NetworkLab()
        let vrrp = "vrrp interface eth0 vrid 51 priority 200 vip 192.0.2.10/24 advert 100ms track_servers 1 weight 150"
        let a = try Penha(["-O", vrrp, "-O", "healthcheck tcp interval 200ms timeout 100ms rise 2 fall 2"],
                          listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("a"))
        let b = try Penha(["-O", "vrrp interface eth0 vrid 51 priority 100 vip 192.0.2.10/24 advert 100ms"],
                          listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("b"))
        XCTAssertTrue(waitFor(timeout: 5) { a.stderr.contains("-> MASTER") }, a.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { b.stderr.contains("-> BACKUP") }, b.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        XCTAssertEqual(a.serverStatus(0)["check"], "up")
        // Node a's server moves to a port nothing listens on; no client goes there: only the checks see it.
        XCTAssertEqual(try a.command("server 0 port 9"), [])
        XCTAssertTrue(waitFor(timeout: 5) { b.stderr.contains("-> MASTER") }, "b takes over: \(b.stderr)\n\(a.stderr)")
        XCTAssertTrue(a.stderr.contains("127.0.0.1:9 is down: connection refused"), a.stderr)
        XCTAssertFalse(a.stderr.contains("connect to server failed"), a.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 5))
        // Back on its server, a comes up again and preempts.
        XCTAssertEqual(try a.command("server 0 port 8080"), [])
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 10), a.stderr)
    }
}
