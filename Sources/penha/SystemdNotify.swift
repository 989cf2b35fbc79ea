import Balancer
import BalancerCore
import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// systemd's readiness protocol (sd_notify(3)) spoken directly: one datagram of
/// `NAME=value` lines per state change to the AF_UNIX socket `$NOTIFY_SOCKET` names
/// (a path, or `@name` in the abstract namespace). Nothing is sent when the variable is
/// unset, so penha behaves the same outside systemd.
final class SystemdNotifier: Sendable {
    private let socket: UnixDatagramSender
    private let logger: Logger
    /// `$WATCHDOG_USEC` when it is meant for this process: ping at half of it.
    let watchdog: TimeAmount?
    private let progress = Mutex(ProgressWatch())
    /// The stalled threads last logged, so that a stall is logged once, not at every look.
    private let stallLogged = Mutex<[String]>([])

    /// Seconds between STATUS= updates, and at most between the watchdog's looks at the threads.
    static let statusInterval = TimeAmount.seconds(5)

    /// nil when penha does not run under systemd's notify protocol, or the socket is unusable.
    init?(environment: [String: String] = Environment.dictionary, logger: Logger) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        do {
            socket = try UnixDatagramSender(path: path)
        } catch {
            logger.warning("NOTIFY_SOCKET: \(error); not notifying systemd")
            return nil
        }
        watchdog = Self.watchdogInterval(environment: environment, pid: Int(getpid()))
        self.logger = logger
    }

    /// Half of `$WATCHDOG_USEC` when it is set for this process (`$WATCHDOG_PID` absent or
    /// ours), at least 1 ms; nil otherwise, or for a value that is not a positive number.
    static func watchdogInterval(environment: [String: String], pid: Int) -> TimeAmount? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int(owner) != pid { return nil }
        return .microseconds(max(1000, min(microseconds, Int64(Limits.seconds) * 1_000_000) / 2))
    }

    /// Sends one message; a failure (systemd gone) is not penha's problem and is ignored.
    func send(_ fields: [String]) {
        socket.send(fields.joined(separator: "\n"))
    }

    /// READY=1 with the status it starts (or resumes) with.
    func ready(_ service: BalancerService) -> EventLoopFuture<Void> {
        service.statusReport().map { Self.status($0) }.recover { _ in "ready" }.map { status in
            self.send(["READY=1", "STATUS=\(status)"])
        }
    }

    /// Before a reload: systemd's notify-reload protocol wants the monotonic clock with it.
    func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send(["RELOADING=1", "MONOTONIC_USEC=\(Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000)"])
    }

    func stopping() { send(["STOPPING=1"]) }

    /// STATUS= every 5 s and at once when a VRRP instance changes state; WATCHDOG=1 at least
    /// at half of systemd's interval, from the balancer's event loop, and only while every
    /// engine and VRRP thread has turned since the last look: a wedged thread or control loop
    /// stops the pings, which is what the watchdog is for. Two timers: a status report is
    /// not made with every ping.
    func startUpdates(_ service: BalancerService, vrrp: VRRPNode) -> [RepeatedTask] {
        vrrp.onStateChange { self.sendStatus(service) }
        let status = service.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: Self.statusInterval) { _ in
            self.sendStatus(service)
        }
        guard let watchdog else { return [status] }
        let interval = min(watchdog, Self.statusInterval)
        let looks = service.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in
            self.feedWatchdog(service, vrrp: vrrp, interval: interval)
        }
        return [status, looks]
    }

    private func sendStatus(_ service: BalancerService) {
        service.statusReport().whenSuccess { self.send(["STATUS=\(Self.status($0))"]) }
    }

    private func feedWatchdog(_ service: BalancerService, vrrp: VRRPNode, interval: TimeAmount) {
        let stalled = progress.withLock { $0.stalled(service.engineThreadTurns + vrrp.threadTurns) }
        if stalled.isEmpty { send(["WATCHDOG=1"]) }
        let newStall = stallLogged.withLock { logged in
            defer { logged = stalled }
            return stalled != logged ? stalled : nil
        }
        if let newStall, !newStall.isEmpty {
            logger.error("not feeding systemd's watchdog: no progress in \(interval.nanoseconds / 1_000_000) ms on \(newStall.joined(separator: ", "))")
        }
        // Each thread turns before the next look, even when it has nothing to do.
        service.nudgeEngineThreads()
        vrrp.nudgeThreads()
    }

    /// The Status: line while a stopping penha drains (its VRRP instances have stopped).
    static func stoppingStatus(_ draining: StatusReport.Draining) -> String {
        "stopping, \(draining.text)"
    }

    /// What `systemctl status` shows on its Status: line.
    static func status(_ report: StatusReport) -> String {
        "\(report.role), \(report.connections) connections (\(report.totalConnections) total)"
    }
}

extension Environment {
    /// The environment by name; the first of a name wins, as getenv does.
    static var dictionary: [String: String] {
        var result: [String: String] = [:]
        for entry in variables {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            let name = String(entry[..<equals])
            if result[name] == nil { result[name] = String(entry[entry.index(after: equals)...]) }
        }
        return result
    }
}
