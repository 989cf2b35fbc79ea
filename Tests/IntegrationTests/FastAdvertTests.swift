import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Issue 12 part 3 in the namespace lab (root only; see NetworkLab): at advert 10 ms a dead
/// master host is replaced within 40 ms, and an idle pair wakes only for deadlines and adverts. `deploy/lab/lab.sh fast` measures the same beside keepalived (deploy/lab/RESULTS.md).
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
    /// penha wakes only for its deadlines and the adverts and then does only the advert's work,
    /// at most 3 system calls per advert interval over 2 s (`strace -f -c`: a master's ppoll and
    /// sendto, a backup's ppoll and recvmsg, with the once-a-second link read and the other
    /// threads' rare timers beside them). Before, every turn also read the link flags (socket,
    /// ioctl, close) and tried a recvmsg and a pipe read that found nothing: 7 or more.
    /// The CPU each node spent is printed beside it, from /proc/PID/task/*/schedstat (ns): the
    /// issue's 0.25% of a core is not reached by either master on a shared 2-core machine, the
    /// kernel's send and delivery being most of it, keepalived's too (deploy/lab/RESULTS.md).
    func testIdlePairAtTenMillisecondAdvertsWakesOnlyForDeadlinesAndAdverts() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        usleep(500_000)
        let seconds = 2.0
        let intervals = seconds / 0.01
        for (name, node) in [("a (master)", a), ("b (backup)", b)] {
            let pid = node.process.processIdentifier
            let before = try CPUTime(of: pid)
            let calls = try systemCalls(of: pid, seconds: seconds)
            let after = try CPUTime(of: pid)
            let milliseconds = after.scheduledMilliseconds - before.scheduledMilliseconds
            print("idle node \(name) at advert 10 ms: \(calls) system calls in \(seconds) s "
                + String(format: "(%.2f per advert), %.1f ms on a CPU (%.2f%% of a core, under strace)",
                         Double(calls) / intervals, milliseconds, milliseconds / (seconds * 10)))
            XCTAssertGreaterThan(Double(calls), intervals, "node \(name): the advert's own calls must be counted")
            XCTAssertLessThanOrEqual(Double(calls), 3 * intervals, "node \(name): \(calls) system calls in \(seconds) s")
        }
        XCTAssertFalse(b.stderr.contains("-> MASTER"), "the backup heard every advert: \(b.stderr)")
    }

    /// How many system calls all of the process's threads made in `seconds` (strace -c's total).
    private func systemCalls(of pid: pid_t, seconds: Double) throws -> Int {
        let summary = temporaryPath("strace")
        defer { unlink(summary) }
        let result = try runProgram("/usr/bin/timeout", ["-s", "INT", "\(seconds)", "strace", "-f", "-c", "-q", "-o", summary, "-p", "\(pid)"],
                                    timeout: seconds + 10)
        guard let text = try? String(contentsOfFile: summary, encoding: .utf8),
              let total = text.split(separator: "\n").last(where: { $0.hasSuffix(" total") }) else {
            throw TestFailure("no strace summary (status \(result.status)): \(result.stderr)")
        }
        // % time, seconds, usecs/call, calls, [errors], "total"
        let fields = total.split(separator: " ")
        guard fields.count >= 5, let calls = Int(fields[3]) else { throw TestFailure("unexpected strace total: \(total)") }
        return calls
    }
}

/// A process's CPU time so far: the sum over its threads of the first field of
/// /proc/PID/task/TID/schedstat (nanoseconds on a CPU; /proc/PID/stat counts 10 ms ticks).
private struct CPUTime {
    let scheduledMilliseconds: Double

    init(of pid: pid_t) throws {
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
