/// The largest values penha takes. Each is far beyond what a farm needs and far below what
/// could overflow a time calculation or exhaust memory: a value past one is refused by name.
public enum Limits {
    /// Durations in seconds (blacklist, tracking, idle timeout): a year.
    public static let seconds = 31_536_000
    public static let connectTimeout = 3600
    /// Client table slots; the table grows to this as clients arrive, it is not reserved.
    public static let clients = 1_000_000
    /// Simultaneous connections (`-x`, a server's max and hard limits).
    public static let connections = 1_000_000
    /// A server's weight and priority.
    public static let weight = 1_000_000
    public static let debugLevel = 9
    /// The listen backlog (`-q`); the kernel caps it at net.core.somaxconn anyway.
    public static let backlog = 65535
    /// A health check's interval and timeout, in seconds: an hour.
    public static let healthCheckSeconds = 3600
    /// The TCP engine's threads (`threads`).
    public static let threads = 64
    /// A health check's rise and fall counts.
    public static let healthCheckCount = 100
}

/// `value` within `range`, or an error naming the bound.
public func boundedNumber(_ value: Int, _ range: ClosedRange<Int>, for what: String) throws -> Int {
    guard value >= range.lowerBound else { throw ConfigurationError("\(what) must be at least \(range.lowerBound), not \(value)") }
    guard value <= range.upperBound else { throw ConfigurationError("\(what) must be at most \(range.upperBound), not \(value)") }
    return value
}
