import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Upgrades on one host hand the connections over (issue 20): a new penha started with
/// `--takeover` on the running one's control socket takes its listener and its established
/// connections, relays them on byte for byte, and the old one exits at once.
final class UpgradeIntegrationTests: XCTestCase {
    /// What the load saw, counted by its threads.
    final class Tally: Sendable {
        private struct Counts {
            var exchanges = 0
            var bytes = 0
            var probes = 0
            var failures: [String] = []
        }

        private let counts = Mutex(Counts())
        let stopping = Atomic<Bool>(false)

        func exchanged(_ bytes: Int) { counts.withLock { $0.exchanges += 1; $0.bytes += bytes } }
        func probed() { counts.withLock { $0.probes += 1 } }
        func failed(_ what: String) { counts.withLock { $0.failures.append(what) } }
        var exchanges: Int { counts.withLock { $0.exchanges } }
        var bytes: Int { counts.withLock { $0.bytes } }
        var probes: Int { counts.withLock { $0.probes } }
        var failures: [String] { counts.withLock { $0.failures } }
    }

    /// A long-lived connection that sends a numbered line of a stream-specific length every
    /// `pause` and checks that exactly it comes back, until told to stop; then it half-closes
    /// and checks the backend's end. Every wait is bounded by the client's timeout.
    private func stream(_ number: Int, port: Int, tally: Tally, pause: useconds_t) -> Thread {
        let thread = Thread {
            do {
                let client = try Client(port: port, timeout: 5)
                guard try client.readLine() == "A" else { return tally.failed("stream \(number): no greeting") }
                var line = 0
                // Bounded: the test sets `stopping` after its upgrades, and each round waits at most the timeout.
                while !tally.stopping.load(ordering: .relaxed) {
                    let text = "stream \(number) line \(line) " + String(repeating: Character(UnicodeScalar(UInt8(65 + number % 26))), count: 100 + (number * 37 + line * 11) % 900)
                    try client.send(text + "\n")
                    guard let echoed = try client.readLine() else { return tally.failed("stream \(number): closed at line \(line)") }
                    guard echoed == text else { return tally.failed("stream \(number): line \(line) came back changed") }
                    tally.exchanged(text.utf8.count + 1)
                    line += 1
                    usleep(pause)
                }
                client.shutdownWrite()
                guard try client.readLine() == "EOF A" else { return tally.failed("stream \(number): its end was not passed on") }
            } catch {
                tally.failed("stream \(number): \(error)")
            }
        }
        thread.start()
        return thread
    }

    /// A new connection every `period`, each greeted by the backend, until told to stop.
    private func prober(port: Int, tally: Tally, period: useconds_t) -> Thread {
        let thread = Thread {
            var probe = 0
            while !tally.stopping.load(ordering: .relaxed) {
                do {
                    let client = try Client(port: port, timeout: 2)
                    if try client.readLine() == "A" { tally.probed() } else { tally.failed("probe \(probe): no greeting") }
                } catch {
                    tally.failed("probe \(probe): \(error)")
                }
                probe += 1
                usleep(period)
            }
        }
        thread.start()
        return thread
    }

    /// `upgrades` takeovers in a row with `streams` long-lived connections and a probe every
    /// 5 ms: no connection lost, no byte changed, no probe failed, each old process gone
    /// within a second of its successor's takeover.
    private func upgradeUnderLoad(upgrades: Int, streams: Int) throws {
        let backend = try Backend("A")
        var penhas = [try Penha([], servers: ["127.0.0.1:\(backend.port)"])]
        let port = penhas[0].port, control = penhas[0].control
        let tally = Tally()
        let threads = (0..<streams).map { stream($0, port: port, tally: tally, pause: 20_000) } + [prober(port: port, tally: tally, period: 5_000)]
        XCTAssertTrue(waitFor(timeout: 10) { backend.active >= streams }, "the streams are up")
        var slowest = 0.0
        for upgrade in 0..<upgrades {
            let old = penhas[penhas.count - 1]
            let exchangedBefore = tally.exchanges
            let new = try Penha(["-C", control, "--takeover", control], listen: "127.0.0.1:\(port)", servers: ["127.0.0.1:\(backend.port)"])
            penhas.append(new)
            let handedOver = Date()
            XCTAssertEqual(old.waitForExit(timeout: 1), 0, "upgrade \(upgrade): the old process is gone within 1 s: \(old.stderr)")
            slowest = max(slowest, Date().timeIntervalSince(handedOver))
            // The streams, and the probe in flight if there is one.
            let moved = movedConnections(new.stderr, from: old, to: new)
            XCTAssertTrue(moved.map { $0 >= streams } ?? false, "upgrade \(upgrade): \(new.stderr)")
            // The streams go on through the new process before the next upgrade.
            XCTAssertTrue(waitFor(timeout: 5) { tally.exchanges >= exchangedBefore + streams }, "upgrade \(upgrade): the streams go on")
            if !tally.failures.isEmpty { break }
        }
        tally.stopping.store(true, ordering: .relaxed)
        for thread in threads { while !thread.isFinished { usleep(10_000) } }
        XCTAssertEqual(tally.failures, [], "nothing lost")
        XCTAssertEqual(backend.active, 0, "every stream ended with its FIN passed on")
        let last = penhas[penhas.count - 1]
        let status = try last.command("status")
        XCTAssertTrue(status.contains { $0.hasPrefix("connections 0 ") }, "\(status)")
        print("upgrades \(upgrades), streams \(streams): \(tally.exchanges) lines (\(tally.bytes) bytes) checked, "
              + "\(tally.probes) probes, slowest exit \(Int(slowest * 1000)) ms")
    }

    /// How many connections the new process says it took from the old one.
    private func movedConnections(_ log: String, from old: Penha, to new: Penha) -> Int? {
        let marker = "took over from pid \(old.process.processIdentifier): handed over to pid \(new.process.processIdentifier): the listener and "
        guard let range = log.range(of: marker) else { return nil }
        return Int(log[range.upperBound...].prefix { $0.isNumber })
    }

    func testTenUpgradesUnderLoadLoseNoConnectionAndNoByte() throws {
        try upgradeUnderLoad(upgrades: 10, streams: 20)
    }
}

/// `penha upgrade`: the binary on disk started with the running penha's arguments.
final class UpgradeCommandIntegrationTests: XCTestCase {
    func testPenhaUpgradeStartsTheNewProcessWithTheSameArgumentsAndTheStreamGoesOn() throws {
        let a = try Backend("A")
        let penha = try Penha(["-O", "blacklist 7"], servers: ["127.0.0.1:\(a.port)"])
        let stream = try Client(port: penha.port)
        XCTAssertEqual(try stream.readLine(), "A")
        var current = penha.process.processIdentifier
        for round in 0..<3 {
            let upgrade = try runPenha(["upgrade", "-C", penha.control])
            XCTAssertEqual(upgrade.status, 0, "round \(round): \(upgrade.stderr)")
            let words = upgrade.stdout.split(separator: " ")
            XCTAssertEqual(words.prefix(3), ["upgraded:", "pid", "\(current)"], upgrade.stdout)
            guard let new = words.last.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
                return XCTFail(upgrade.stdout)
            }
            XCTAssertTrue(isGone(current), "round \(round): the old process is gone")
            current = new
            try stream.send("round \(round)\n")
            XCTAssertEqual(try stream.readLine(), "round \(round)")
        }
        defer { kill(current, SIGTERM) }
        let cmdline = try String(contentsOfFile: "/proc/\(current)/cmdline", encoding: .utf8).split(separator: "\0")
        XCTAssertEqual(cmdline.filter { $0 == "--takeover" }.count, 1, "one --takeover, not one per upgrade: \(cmdline)")
        XCTAssertTrue(try penha.command("blacklist").contains("7"), "the same configuration")
        XCTAssertEqual(try penha.command("pid"), ["\(current)"], "the control socket is the new process's")
        stream.shutdownWrite()
        XCTAssertEqual(try stream.readLine(), "EOF A")
    }

    /// Exited: no such process, or a zombie not yet waited for by its parent.
    private func isGone(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.contains(") Z ")
    }

    func testAFailedUpgradeSaysSoAndTheOldProcessServesOn() throws {
        let a = try Backend("A")
        let penha = try Penha([], servers: ["127.0.0.1:\(a.port)"])
        // A binary that is not penha: it exits at once, without taking over.
        let upgrade = try runPenha(["upgrade", "-C", penha.control, "--binary", "/bin/false"])
        XCTAssertEqual(upgrade.status, 1, upgrade.stderr)
        XCTAssertTrue(upgrade.stderr.contains("upgrade failed, pid \(penha.process.processIdentifier) serves on"), upgrade.stderr)
        XCTAssertEqual(try whoAnswers(penha), "A")
    }
}
