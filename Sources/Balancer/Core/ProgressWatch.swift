/// Whether every thread that carries work has made progress since the last look, by the
/// count of loop turns each reports: systemd's watchdog is fed only then, so a wedged
/// data-path or VRRP thread stops the pings (and systemd restarts penha), not only a wedged
/// control loop. The caller wakes every thread after each look, so an idle thread turns too.
public struct ProgressWatch: Sendable {
    public struct Turns: Equatable, Sendable {
        public let thread: String
        public let count: UInt64

        public init(thread: String, count: UInt64) {
            self.thread = thread
            self.count = count
        }
    }

    private var last: [String: UInt64] = [:]

    public init() {}

    /// The threads whose count has not moved since the previous look. A thread seen for the
    /// first time (just started) has not stalled.
    public mutating func stalled(_ turns: [Turns]) -> [String] {
        let stalled = turns.filter { last[$0.thread] == $0.count }.map(\.thread)
        last = Dictionary(turns.map { ($0.thread, $0.count) }, uniquingKeysWith: { $1 })
        return stalled
    }
}
