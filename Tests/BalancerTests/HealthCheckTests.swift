import NIOCore
import TestSupport
import XCTest
@testable import Balancer
@testable import BalancerCore

/// The health checks' pure core: the commands, the schedule on a virtual clock, rise and fall.
final class HealthCheckTests: XCTestCase {
    private var random = SplitMix64(seed: 42)

    private func settings(_ line: String) throws -> HealthCheckSettings {
        guard let settings = try Command.parse(line).payload(as: HealthCheckChange.self)?.settings else {
            XCTFail("'\(line)' is not a healthcheck")
            throw TestError()
        }
        return settings
    }

    private struct TestError: Error {}

    private func state(servers: Int, _ line: String = "healthcheck tcp interval 2s timeout 1s rise 2 fall 3") throws -> BalancerState {
        var state = makeState(servers)
        state.configuration.healthCheck = try settings(line)
        return state
    }

    /// Runs the schedule from `start` to `end` in steps of `step` seconds, answering every
    /// check with `result(index)` at once; returns the start times of each server's checks.
    private func run(_ state: inout BalancerState, from start: Double, to end: Double, step: Double = 0.01,
                     result: (Int) -> HealthCheckResult = { _ in .passed("connected") }) -> [Int: [Double]] {
        var starts: [Int: [Double]] = [:]
        var now = start
        while now < end {
            for job in state.startDueChecks(now: at(now), random: &random) {
                starts[job.index, default: []].append(now)
                _ = state.recordCheck(job, result(job.index), now: at(now))
            }
            now += step
        }
        return starts
    }

    func testTheCommandsParseWithDefaultsAndWriteBackTheSame() throws {
        let tcp = try settings("healthcheck tcp")
        XCTAssertEqual(tcp, HealthCheckSettings(probe: .tcp, interval: .seconds(2), timeout: .seconds(1), rise: 2, fall: 3))
        XCTAssertEqual(Command.healthCheck(tcp).text, "healthcheck tcp interval 2s timeout 1s rise 2 fall 3")
        let http = try settings("healthcheck http /health host www.example status 200-299 interval 500ms rise 1 fall 5")
        XCTAssertEqual(http.probe, .http(path: "/health", host: "www.example", accepted: 200...299))
        XCTAssertEqual(http.timeout, .milliseconds(500), "the default timeout is at most the interval")
        XCTAssertEqual([http.rise, http.fall], [1, 5])
        for command in [Command.healthCheck(tcp), .healthCheck(http), .healthCheck(nil),
                        .server(ServerChange(index: 0, healthCheck: false))] {
            XCTAssertEqual(try Command.parse(command.text), command, command.text)
        }
        XCTAssertEqual(try Command.parse("no healthcheck"), .healthCheck(nil))
        XCTAssertEqual(try Command.parse("server 1 healthcheck on"), .server(ServerChange(index: 1, healthCheck: true)))
    }

    func testBadHealthchecksAreRefusedByName() {
        let cases = [
            ("healthcheck", "needs 'tcp' or 'http PATH'"), ("healthcheck udp", "needs 'tcp' or 'http PATH'"),
            ("healthcheck http", "a path starting with '/'"), ("healthcheck http health", "a path starting with '/'"),
            ("healthcheck tcp interval", "needs 'tcp'"), ("healthcheck tcp interval 2x", "not a duration"),
            ("healthcheck tcp interval 5ms", "from 10ms to 3600s"), ("healthcheck tcp interval 3601s", "from 10ms to 3600s"),
            ("healthcheck tcp interval 99999999999999999999", "not a duration"),
            ("healthcheck tcp timeout 3s", "timeout 3s is longer than interval 2s"),
            ("healthcheck tcp rise 0", "at least 1"), ("healthcheck tcp fall 101", "at most 100"),
            ("healthcheck tcp rise 1 rise 2", "given twice"), ("healthcheck tcp host a", "unknown field 'host'"),
            ("healthcheck http / status 99-200", "range of HTTP status codes"),
            ("healthcheck http / status 300-200", "range of HTTP status codes"),
            ("healthcheck http / host \u{7F}", "printable ASCII"), ("no healthcheck tcp", "takes no argument"),
            ("server 0 healthcheck maybe", "takes on or off"),
        ]
        for (line, expected) in cases {
            XCTAssertThrowsError(try Command.parse(line), line) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(line): \(error)")
            }
        }
    }

    func testWriteRoundTripsTheChecksAndAServerLeftOut() throws {
        var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80),
                                          servers: [ServerSpec(host: "127.0.0.1", port: 9000), ServerSpec(host: "127.0.0.1", port: 9001)])
        let base = configuration
        try configuration.apply(.parse("healthcheck http /ok status 200-204 interval 3s timeout 2s rise 4 fall 1"))
        try configuration.apply(.parse("server 1 healthcheck off"))
        XCTAssertFalse(configuration.servers[1].healthCheck)
        let written = configuration.commands.map(\.text)
        XCTAssertTrue(written.contains("healthcheck http /ok status 200-204 interval 3s timeout 2s rise 4 fall 1"), "\(written)")
        XCTAssertEqual(try base.applying(written.map { ConfigLine(try Command.parse($0)) }), configuration)
    }

    func testAServerGoesDownAfterFallFailuresAndUpAfterRiseSuccesses() throws {
        var state = try state(servers: 2)
        var failing = true
        var transitions: [HealthTransition] = []
        var now = 0.0
        while now < 20 {
            for job in state.startDueChecks(now: at(now), random: &random) {
                let result: HealthCheckResult = job.index == 1 && failing ? .failed("HTTP 503") : .passed("HTTP 200")
                if let transition = state.recordCheck(job, result, now: at(now)) { transitions.append(transition) }
            }
            if now >= 10 { failing = false }
            now += 0.01
        }
        XCTAssertEqual(transitions.map(\.description), [
            "server 1 127.0.0.1:9001 is down: HTTP 503, 3 failed checks in a row",
            "server 1 127.0.0.1:9001 is up again: HTTP 200, 2 good checks in a row",
        ])
        // Three checks of about 2 s each, the first within the first interval.
        let health = state.servers.servers[1].health
        XCTAssertFalse(health.isDown)
        XCTAssertEqual(health.lastResult, "HTTP 200")
        XCTAssertEqual(health.failures, 0)
        XCTAssertTrue(state.servers.servers[0].health.successes > 5)
    }

    func testADownServerIsNotAvailableAndTrackedClientsMoveOff() throws {
        var state = try state(servers: 2, "healthcheck tcp rise 1 fall 1")
        var placement = state.accept(client: client(1), now: at(0))
        let first = try XCTUnwrap(state.nextTarget(&placement, now: at(0)))
        state.connected(placement, to: first, client: "c", now: at(0))
        guard case .server(let tracked) = first else { return XCTFail("\(first)") }
        _ = run(&state, from: 0, to: 2.1) { $0 == tracked ? .failed("connection refused") : .passed("connected") }
        XCTAssertTrue(state.servers.servers[tracked].health.isDown)
        XCTAssertFalse(state.servers.servers[tracked].isAvailable(state.configuration.servers[tracked], now: at(2.1), returning: true))
        XCTAssertEqual(state.availableServerCount(now: at(2.1)), 1, "what VRRP's track_servers counts")
        XCTAssertEqual(state.servers.servers[tracked].state(state.configuration.servers[tracked], now: at(2.1)), .down)
        var again = state.accept(client: client(1), now: at(2.2))
        XCTAssertEqual(again.tracked, tracked)
        XCTAssertEqual(state.nextTarget(&again, now: at(2.2)), .server(1 - tracked), "the tracked client moves")
    }

    /// Failback: a server its checks find up again is not left blacklisted by a client's
    /// failed connect while it was down; one blacklisted while its checks were passing stays so.
    func testAServerBackUpByItsChecksIsNoLongerBlacklisted() throws {
        var state = try state(servers: 2, "healthcheck tcp rise 1 fall 1")
        var failing = true
        _ = run(&state, from: 0, to: 2.1) { $0 == 0 && failing ? .failed("connection refused") : .passed("connected") }
        XCTAssertTrue(state.servers.servers[0].health.isDown)
        state.connectFailed(.server(0), now: at(2.1))
        state.connectFailed(.server(1), now: at(2.1))
        XCTAssertEqual(state.servers.servers[0].state(state.configuration.servers[0], now: at(2.2)), .down)
        failing = false
        _ = run(&state, from: 2.2, to: 4.3) { _ in .passed("connected") }
        XCTAssertEqual(state.servers.servers[0].state(state.configuration.servers[0], now: at(4.3)), .up, "up by its checks: the blacklist is lifted")
        XCTAssertEqual(state.servers.servers[1].state(state.configuration.servers[1], now: at(4.3)), .blacklisted, "never down: its blacklist stands")
        XCTAssertEqual(state.availableServerCount(now: at(4.3)), 1)
    }

    func testAHundredServersAreSpreadOverTheIntervalWithOneCheckInFlightEach() throws {
        var state = try state(servers: 100)
        // Nothing answers: every check stays in flight.
        var starts: [Int: [Double]] = [:]
        var now = 0.0
        while now < 6 {
            for job in state.startDueChecks(now: at(now), random: &random) { starts[job.index, default: []].append(now) }
            now += 0.01
        }
        XCTAssertEqual(starts.count, 100)
        XCTAssertTrue(starts.values.allSatisfy { $0.count == 1 }, "one check in flight per server")
        let firsts = starts.values.map { $0[0] }
        let perTenth = Dictionary(grouping: firsts) { Int($0 * 10) }.values.map(\.count)
        XCTAssertLessThanOrEqual(perTenth.max() ?? 0, 15, "no burst: \(perTenth.sorted())")
        XCTAssertGreaterThan(firsts.max()! - firsts.min()!, 1.5, "spread over the 2 s interval")
        XCTAssertLessThan(firsts.max()!, 2)
    }

    func testLaterChecksComeAnIntervalApartGiveOrTakeATenth() throws {
        var state = try state(servers: 10)
        let starts = run(&state, from: 0, to: 30)
        let gaps = starts.values.flatMap { times in zip(times.dropFirst(), times).map { $0 - $1 } }
        XCTAssertGreaterThan(gaps.count, 100)
        XCTAssertTrue(gaps.allSatisfy { (1.79...2.21).contains($0) }, "\(gaps.min()!)...\(gaps.max()!)")
        XCTAssertGreaterThan(gaps.max()! - gaps.min()!, 0.1, "jittered, not fixed")
    }

    func testAResultForAnOldAddressOrOldSettingsIsDropped() throws {
        let configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [ServerSpec(host: "127.0.0.1", port: 9000)])
        var runtime = Runtime(configuration: configuration, state: makeState(configuration))
        let facts = Runtime.Facts(now: at(0), started: at(0), vrrp: [], listen: "127.0.0.1:80", control: nil,
                                  pid: 1, exitEnabled: false, configFile: nil)
        _ = try runtime.execute([ConfigLine(.parse("healthcheck tcp rise 1 fall 1"))], facts: facts, resolved: [:])
        var jobs: [HealthCheckJob] = []
        var now = 0.0
        while jobs.isEmpty && now < 3 {
            jobs = runtime.state.startDueChecks(now: at(now), random: &random)
            now += 0.01
        }
        let job = try XCTUnwrap(jobs.first)
        let moved = try SocketAddress(ipAddress: "127.0.0.2", port: 0)
        _ = try runtime.execute([ConfigLine(.parse("server 0 address 127.0.0.2"))], facts: facts, resolved: ["127.0.0.2": moved])
        XCTAssertNil(runtime.state.recordCheck(job, .failed("connection refused"), now: at(now)))
        XCTAssertFalse(runtime.state.servers.servers[0].health.isDown)
        XCTAssertNil(runtime.state.servers.servers[0].health.lastResult)
        let next = runtime.state.startDueChecks(now: at(now), random: &random)
        XCTAssertTrue(next.isEmpty, "the new address's first check gets its own offset")
    }

    func testAReloadWithTheSameSettingsLeavesChecksRunningAndNoHealthcheckPutsServersBack() throws {
        let commandLine = Configuration(listen: .inet(host: "127.0.0.1", port: 80),
                                        servers: [ServerSpec(host: "127.0.0.1", port: 9000)])
        let file = try commandLine.applying([ConfigLine(.parse("healthcheck tcp rise 1 fall 1"))])
        var runtime = Runtime(configuration: file, state: try file.makeState())
        let facts = Runtime.Facts(now: at(0), started: at(0), vrrp: [], listen: "127.0.0.1:80", control: nil,
                                  pid: 1, exitEnabled: false, configFile: "penha.conf")
        _ = run(&runtime.state, from: 0, to: 2.5) { _ in .failed("connection refused") }
        var inFlight: [HealthCheckJob] = []
        var now = 2.5
        while inFlight.isEmpty && now < 5 {
            inFlight = runtime.state.startDueChecks(now: at(now), random: &random)
            now += 0.01
        }
        let before = runtime.state.servers.servers[0].health
        XCTAssertTrue(before.isDown)
        XCTAssertEqual(try runtime.converge(to: file, facts: facts, resolved: [:]), [])
        XCTAssertEqual(runtime.state.servers.servers[0].health, before, "the same settings: nothing restarted")
        XCTAssertNotNil(runtime.state.recordCheck(try XCTUnwrap(inFlight.first), .passed("connected"), now: at(now)),
                        "the check in flight still counts")
        let changes = try runtime.converge(to: commandLine, facts: facts, resolved: [:])
        XCTAssertEqual(changes, ["no healthcheck"])
        XCTAssertEqual(runtime.state.servers.servers[0].health, ServerHealth())
        XCTAssertNil(runtime.state.nextCheckDue(now: at(now)))
    }

    /// `no healthcheck` on the control socket, as on a reload: the checks stop and a down
    /// server is up again at once.
    func testNoHealthcheckFromTheControlSocketPutsADownServerBackUp() throws {
        let configuration = try Configuration(listen: .inet(host: "127.0.0.1", port: 80), servers: [ServerSpec(host: "127.0.0.1", port: 9000)])
            .applying([ConfigLine(.parse("healthcheck tcp rise 1 fall 1"))])
        var runtime = Runtime(configuration: configuration, state: try configuration.makeState())
        _ = run(&runtime.state, from: 0, to: 2.5) { _ in .failed("connection refused") }
        XCTAssertTrue(runtime.state.servers.servers[0].health.isDown)
        let facts = Runtime.Facts(now: at(3), started: at(0), vrrp: [], listen: "127.0.0.1:80", control: nil,
                                  pid: 1, exitEnabled: false, configFile: nil)
        _ = try runtime.execute([ConfigLine(.parse("no healthcheck"))], facts: facts, resolved: [:])
        XCTAssertEqual(runtime.state.servers.servers[0].health, ServerHealth())
        XCTAssertTrue(runtime.state.servers.servers[0].isAvailable(runtime.configuration.servers[0], now: at(3)))
        XCTAssertNil(runtime.state.nextCheckDue(now: at(3)))
    }

    func testAServerLeftOutIsNeverCheckedNorDownAndAnInconclusiveCheckMovesNothing() throws {
        var state = try state(servers: 2, "healthcheck tcp rise 1 fall 1")
        state.configuration.servers[0].healthCheck = false
        let starts = run(&state, from: 0, to: 10) { _ in .inconclusive("too many open files") }
        XCTAssertNil(starts[0])
        XCTAssertGreaterThan(starts[1]?.count ?? 0, 3)
        XCTAssertFalse(state.servers.servers[1].health.isDown)
        XCTAssertEqual(state.servers.servers[1].health.lastResult, "too many open files")
    }

    func testTheHTTPVerdictReadsTheStatusLine() throws {
        let http = try settings("healthcheck http /health")
        func verdict(_ text: String, closed: Bool = false) -> HealthCheckResult? {
            http.verdict(on: Array(text.utf8), closed: closed)
        }
        XCTAssertEqual(verdict("HTTP/1.1 200 OK\r\n"), .passed("HTTP 200"))
        XCTAssertEqual(verdict("HTTP/1.0 302 Found\r\nLocation: /\r\n"), .passed("HTTP 302"))
        XCTAssertEqual(verdict("HTTP/1.1 503 Service Unavailable\r\n"), .failed("HTTP 503"))
        XCTAssertEqual(verdict("HTTP/1.1 404\n"), .failed("HTTP 404"))
        XCTAssertNil(verdict("HTTP/1.1 200 O"), "incomplete: read on")
        XCTAssertEqual(verdict("HTTP/1.1 200 O", closed: true), .failed("malformed answer"))
        XCTAssertEqual(verdict("", closed: true), .failed("closed without an answer"))
        XCTAssertEqual(verdict("SSH-2.0-OpenSSH\r\n"), .failed("malformed answer"))
        XCTAssertEqual(verdict("HTTP/1.1 2000 OK\r\n"), .failed("malformed answer"))
        XCTAssertEqual(verdict(String(repeating: "x", count: HealthCheckSettings.maxStatusLineLength)), .failed("malformed answer"))
        XCTAssertEqual(http.request(host: "www", port: 8080),
                       "GET /health HTTP/1.1\r\nHost: www:8080\r\nConnection: close\r\nUser-Agent: penha-healthcheck\r\n\r\n")
        XCTAssertEqual(try settings("healthcheck http / host h").request(host: "::1", port: 80)?.contains("Host: h\r\n"), true)
        XCTAssertEqual(try settings("healthcheck http /").request(host: "::1", port: 80)?.contains("Host: [::1]\r\n"), true)
        XCTAssertNil(try settings("healthcheck tcp").request(host: "www", port: 80))
        XCTAssertEqual(HealthCheckResult.timeout(.milliseconds(1500)), .failed("timeout after 1500ms"))
    }
}
