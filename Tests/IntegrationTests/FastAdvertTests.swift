import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Issue 12 part 3 in the namespace lab (root only; see NetworkLab): at advert 10 ms a dead
/// master host is replaced within 40 ms, and an idle pair costs each node at most 0.25% of a
/// core. `deploy/lab/lab.sh fast` measures the same beside keepalived (deploy/lab/RESULTS.md).
final class FastAdvertTests: XCTestCase {
    static let vrrp = "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 10ms"
    /// The backup's priority. Master_Down_Interval is 3 intervals plus Skew_Time, (256 - 250) /
    /// 256 of 10 ms here (RFC 5798 section 6.1): the test measures how fast penha notices and
    /// takes over, not a skew of 6 ms that priority 100 would add (RESULTS.md has both).
    static let backupPriority = 250
    static let trials = 5

    private func node(_ lab: NetworkLab, _ node: String, priority: Int) throws -> Penha {
        try Penha(["-O", "\(Self.vrrp) priority \(priority)"], listen: "192.0.2.10:80",
                  servers: ["127.0.0.1:8080"], namespace: lab.namespace(node))
    }

    /// Node a master (254), node b backup, the VIP answering from a.
    private func startPair(_ lab: NetworkLab) throws -> (Penha, Penha) {
        let a = try node(lab, "a", priority: 254)
        let b = try node(lab, "b", priority: Self.backupPriority)
        XCTAssertTrue(waitFor(timeout: 5) { a.stderr.contains("-> MASTER") }, a.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { b.stderr.contains("-> BACKUP") }, b.stderr)
        guard try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5) != nil else {
            throw TestFailure("the VIP does not answer from node a\n\(a.stderr)\n\(b.stderr)")
        }
        return (a, b)
    }

    /// A dead host is its link gone: it sends no advert and answers nothing (a penha killed
    /// with SIGKILL would leave a kernel that still answers ARP for the VIP and resets every
    /// connection, which no dead host does). The probe opens a new connection every 5 ms, each
    /// given 10 ms; the gap runs from the last one node a answered to the first node b answered.
    /// The median of five trials, each in a lab of its own: one trial on a loaded 2-core machine
    /// can lose 10 ms to the scheduler (the probe's Python, the netns commands), and the median
    /// is still a figure most trials reach, not the best one.
    func testDeadMasterHostIsReplacedWithin40MillisecondsAtTenMillisecondAdverts() throws {
        var gaps: [Int] = []
        for _ in 0..<Self.trials {
            let lab = try NetworkLab()
            let (a, b) = try startPair(lab)
            let probe = try Probe(lab, address: "192.0.2.10", seconds: 1.5, periodMilliseconds: 5, timeoutMilliseconds: 10)
            usleep(500_000)
            try lab.setLink(of: "a", up: false)
            // The link notice (rtnetlink) wakes node a's instance at once; reading the link
            // only once a second, as the thread still does without a notice, would miss this.
            XCTAssertTrue(waitFor(timeout: 0.25) { a.stderr.contains("MASTER -> FAULT (interface down)") }, a.stderr)
            let attempts = try probe.finish()
            guard let gap = attempts.gapMilliseconds(from: "node-a", to: "node-b") else {
                XCTFail("node b never answered: \(attempts.summary)\n\(a.stderr)\n\(b.stderr)")
                return
            }
            XCTAssertTrue(b.stderr.contains("BACKUP -> MASTER (master down timer expired)"), b.stderr)
            gaps.append(gap)
        }
        let median = gaps.sorted()[gaps.count / 2]
        print("dead master host at advert 10 ms: gaps \(gaps) ms, median \(median) ms")
        XCTAssertLessThanOrEqual(median, 40, "gaps \(gaps) ms")
    }

    /// Both nodes idle at advert 10 ms (100 adverts a second sent by a, received by b): each
    /// penha's user and system time over 4 s, at most 0.25% of a core (10 ms). /proc/PID/stat
    /// counts 10 ms ticks, the whole allowance, so the assertion uses the nanoseconds of
    /// /proc/PID/task/*/schedstat (the stat ticks are printed beside them). The least of three
    /// windows of 4 s: other work on a loaded 2-core machine only adds to what an idle process
    /// costs (cold caches, a busier scheduler), never takes away, so the least window is the
    /// closest to the process's own cost, and each window is a whole 4 s.
    func testIdlePairAtTenMillisecondAdvertsCostsEachNodeAtMostAQuarterPercentOfACore() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        usleep(1_000_000)
        var least: [Double] = [.infinity, .infinity]
        for _ in 0..<3 {
            let before = try [a, b].map { try CPUTime(of: $0.process.processIdentifier) }
            usleep(4_000_000)
            let after = try [a, b].map { try CPUTime(of: $0.process.processIdentifier) }
            for index in 0..<2 {
                let milliseconds = after[index].scheduledMilliseconds - before[index].scheduledMilliseconds
                print("idle node \(index == 0 ? "a (master)" : "b (backup)") at advert 10 ms: "
                    + String(format: "%.1f ms in 4 s (%.2f%% of a core), ", milliseconds, milliseconds / 40)
                    + "\(after[index].statTicks - before[index].statTicks) ticks in /proc/PID/stat")
                least[index] = min(least[index], milliseconds)
            }
        }
        XCTAssertLessThanOrEqual(least[0], 10, "node a (master): at least \(least[0]) ms of CPU in 4 s")
        XCTAssertLessThanOrEqual(least[1], 10, "node b (backup): at least \(least[1]) ms of CPU in 4 s")
        XCTAssertFalse(b.stderr.contains("-> MASTER"), "the backup heard every advert: \(b.stderr)")
    }
}

/// A process's CPU time so far, both ways Linux counts it.
private struct CPUTime {
    /// utime + stime of /proc/PID/stat (fields 14 and 15), in clock ticks.
    let statTicks: Int
    /// The sum over its threads of the first field of /proc/PID/task/TID/schedstat (ns on CPU).
    let scheduledMilliseconds: Double

    init(of pid: pid_t) throws {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let nameEnd = stat.lastIndex(of: ")") else { throw TestFailure("cannot read /proc/\(pid)/stat") }
        // fields[0] is field 3 (state), so utime (14) and stime (15) are fields[11] and fields[12].
        let fields = stat[stat.index(after: nameEnd)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else {
            throw TestFailure("unexpected /proc/\(pid)/stat: \(stat)")
        }
        statTicks = user + system
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        scheduledMilliseconds = threads.reduce(0) { sum, thread in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(thread)/schedstat", encoding: .utf8)) ?? ""
            return sum + (Double(text.split(separator: " ").first ?? "") ?? 0) / 1_000_000
        }
    }
}

extension Array where Element == Probe.Attempt {
    /// From the last attempt `old` answered to the first `new` answered after it, in ms; nil if
    /// `new` never answered after `old`.
    func gapMilliseconds(from old: String, to new: String) -> Int? {
        guard let firstNew = firstIndex(where: { $0.answer == new }),
              let lastOld = self[..<firstNew].lastIndex(where: { $0.answer == old }) else { return nil }
        return self[firstNew].milliseconds - self[lastOld].milliseconds
    }
}
