import NIOCore

/// What a stopping penha does with its established connections (`drain N`): once it takes no
/// new ones (its VIPs handed over, its listener closed), it relays the rest until they end or
/// the bound passes, then closes what is left and exits. A second SIGTERM, or `drain 0`, ends
/// it at once. Pure: the caller feeds it the time and the count of open connections and does
/// what it decides.
public struct Drain: Equatable, Sendable {
    /// `drain`'s default: long enough for a page, an API call or a few seconds of a download to
    /// finish, short enough that a planned restart is not held up (Kubernetes' default grace
    /// period is the same); the unit's TimeoutStopSec covers it with a margin.
    public static let defaultSeconds = 30
    /// `drain`'s bound: an hour.
    public static let longestSeconds = 3600

    public enum Decision: Equatable, Sendable {
        /// Connections are still open and time is left: relay on.
        case wait
        /// Exit now, closing this many connections that did not end (0 when all ended).
        case exit(closing: Int)
    }

    private let started: NIODeadline
    private var deadline: NIODeadline
    private var interrupted = false

    /// Draining starts at `now`, for at most `seconds`.
    public init(seconds: Int, now: NIODeadline) {
        started = now
        deadline = now
        bound(seconds: seconds)
    }

    /// `drain N` given while it runs: the bound counts from the start, so `drain 0` (or any
    /// bound already passed) ends it at once and a longer one lets it run on.
    public mutating func bound(seconds: Int) {
        deadline = started + .seconds(Int64(max(0, min(seconds, Self.longestSeconds))))
    }

    /// A second SIGTERM (or SIGINT): the operator wants it over.
    public mutating func interrupt() {
        interrupted = true
    }

    public func decide(now: NIODeadline, connections: Int) -> Decision {
        if connections > 0 && !interrupted && now < deadline { return .wait }
        return .exit(closing: max(0, connections))
    }

    /// What `status`, systemd's STATUS= and the metrics show while it lasts.
    public func report(now: NIODeadline, connections: Int) -> StatusReport.Draining {
        let left = max(0, deadline.uptimeNanoseconds > now.uptimeNanoseconds ? deadline.uptimeNanoseconds - now.uptimeNanoseconds : 0)
        // Rounded up: "0 s left" only once the bound has passed.
        return StatusReport.Draining(connections: connections, secondsLeft: Int((left + 999_999_999) / 1_000_000_000))
    }
}
