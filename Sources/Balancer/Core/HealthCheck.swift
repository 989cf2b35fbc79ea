import NIOCore

/// `healthcheck tcp|http ...`: how every server is checked, off the data path. Like
/// HAProxy's `check inter/rise/fall` and keepalived's TCP_CHECK / HTTP_GET: a server that
/// fails `fall` checks in a row is down (no new clients), `rise` good ones bring it back.
public struct HealthCheckSettings: Equatable, Sendable {
    public enum Probe: Equatable, Sendable {
        /// A connect, then a close.
        case tcp
        /// `GET path` with `Connection: close`; a status in `accepted` passes.
        case http(path: String, host: String?, accepted: ClosedRange<Int>)
    }

    public var probe: Probe
    public var interval: TimeAmount
    public var timeout: TimeAmount
    public var rise: Int
    public var fall: Int

    public static let defaultInterval = TimeAmount.seconds(2)
    public static let defaultTimeout = TimeAmount.seconds(1)
    public static let defaultAccepted = 200...399
    /// Check durations, 10 ms to an hour: a shorter one is a busy loop, a longer one no check.
    static let durationRange = TimeAmount.milliseconds(10)...TimeAmount.seconds(Int64(Limits.healthCheckSeconds))
    static let countRange = 1...Limits.healthCheckCount
    /// The longest path and host name sent: far above any real one, a bound on the request.
    static let maxTextLength = 1024

    public init(probe: Probe, interval: TimeAmount = defaultInterval, timeout: TimeAmount = defaultTimeout,
                rise: Int = 2, fall: Int = 3) {
        self.probe = probe
        self.interval = interval
        self.timeout = timeout
        self.rise = rise
        self.fall = fall
    }

    /// The words after `healthcheck`.
    static func parse(_ words: [String]) throws -> HealthCheckSettings {
        let usage = "'healthcheck' needs 'tcp' or 'http PATH', then pairs of: "
            + "interval D, timeout D, rise R, fall F (http also: host NAME, status LO-HI)"
        guard let kind = words.first else { throw ConfigurationError(usage) }
        var rest = Array(words.dropFirst())
        var path: String?
        switch kind {
        case "tcp": break
        case "http":
            guard let first = rest.first, first.hasPrefix("/") else {
                throw ConfigurationError("healthcheck http needs a path starting with '/'")
            }
            path = try checkedText(first, "path")
            rest.removeFirst()
        default: throw ConfigurationError(usage)
        }
        guard rest.count % 2 == 0 else { throw ConfigurationError(usage) }
        var settings = HealthCheckSettings(probe: .tcp)
        var host: String?
        var accepted = defaultAccepted
        var timeoutGiven = false
        var seen: Set<String> = []
        for pair in stride(from: 0, to: rest.count, by: 2) {
            let (name, value) = (rest[pair], rest[pair + 1])
            guard seen.insert(name).inserted else { throw ConfigurationError("healthcheck: '\(name)' given twice") }
            switch name {
            case "interval": settings.interval = try duration(value, for: name)
            case "timeout":
                settings.timeout = try duration(value, for: name)
                timeoutGiven = true
            case "rise", "fall":
                let what = "healthcheck: '\(name)'"
                let count = try boundedNumber(nonNegativeNumber(value, for: what), countRange, for: what)
                if name == "rise" { settings.rise = count } else { settings.fall = count }
            case "host" where path != nil: host = try checkedText(value, "host")
            case "status" where path != nil: accepted = try statusRange(value)
            default: throw ConfigurationError("healthcheck: unknown field '\(name)'; \(usage)")
            }
        }
        if !timeoutGiven { settings.timeout = min(defaultTimeout, settings.interval) }
        // One check in flight per server: a timeout past the interval would stretch it.
        guard settings.timeout <= settings.interval else {
            throw ConfigurationError("healthcheck: timeout \(text(settings.timeout)) is longer than interval \(text(settings.interval))")
        }
        if let path { settings.probe = .http(path: path, host: host, accepted: accepted) }
        return settings
    }

    /// The words after `healthcheck`, every field named, in a fixed order.
    var words: [String] {
        var words: [String]
        switch probe {
        case .tcp: words = ["tcp"]
        case .http(let path, let host, let accepted):
            words = ["http", path] + (host.map { ["host", $0] } ?? []) + ["status", "\(accepted.lowerBound)-\(accepted.upperBound)"]
        }
        return words + ["interval", Self.text(interval), "timeout", Self.text(timeout), "rise", "\(rise)", "fall", "\(fall)"]
    }

    /// `2s`, `500ms`, or a bare number of seconds, within `durationRange`.
    static func duration(_ text: String, for name: String) throws -> TimeAmount {
        let inMilliseconds = text.hasSuffix("ms")
        let digits = inMilliseconds ? text.dropLast(2) : text.hasSuffix("s") ? text.dropLast() : Substring(text)
        guard let number = Int64(digits), number >= 0, number <= Int64(Limits.healthCheckSeconds) * 1000 else {
            throw ConfigurationError("healthcheck: \(name) '\(text)' is not a duration like 2s or 500ms")
        }
        let amount = inMilliseconds ? TimeAmount.milliseconds(number) : .seconds(number)
        guard durationRange.contains(amount) else {
            throw ConfigurationError("healthcheck: \(name) must be from \(Self.text(durationRange.lowerBound)) "
                + "to \(Self.text(durationRange.upperBound)), not \(text)")
        }
        return amount
    }

    /// A duration as the commands write it: `2s` when whole seconds, else `500ms`.
    static func text(_ amount: TimeAmount) -> String {
        let milliseconds = amount.nanoseconds / 1_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000)s" : "\(milliseconds)ms"
    }

    /// `LO-HI` or one status code, 100-599.
    private static func statusRange(_ text: String) throws -> ClosedRange<Int> {
        let bounds = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard (1...2).contains(bounds.count), let low = bounds.first!, let high = bounds.last!,
              (100...599).contains(low), (low...599).contains(high) else {
            throw ConfigurationError("healthcheck: status '\(text)' is not a range of HTTP status codes like 200-399")
        }
        return low...high
    }

    /// Text that goes into the request: printable ASCII only, so it cannot split the request line.
    private static func checkedText(_ text: String, _ name: String) throws -> String {
        guard text.utf8.count <= maxTextLength, text.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw ConfigurationError("healthcheck: \(name) must be printable ASCII, at most \(maxTextLength) bytes")
        }
        return text
    }

    /// The bytes an HTTP check sends to a server named `host` (as the operator wrote it) at
    /// `port`; nil for a TCP check.
    public func request(host serverHost: String, port: Int) -> String? {
        guard case .http(let path, let host, _) = probe else { return nil }
        let name = host ?? (serverHost.contains(":") ? "[\(serverHost)]" : serverHost) + (port == 80 ? "" : ":\(port)")
        return "GET \(path) HTTP/1.1\r\nHost: \(name)\r\nConnection: close\r\nUser-Agent: penha-healthcheck\r\n\r\n"
    }

    /// The most of an answer an HTTP check reads: its status line must fit.
    public static let maxStatusLineLength = 1024

    /// An HTTP check's verdict on the bytes received so far (`closed`: the server closed after
    /// them); nil while the status line is still incomplete. RFC 9112 section 4:
    /// `status-line = HTTP-version SP status-code SP [ reason-phrase ]`.
    public func verdict(on answer: some Collection<UInt8>, closed: Bool) -> HealthCheckResult? {
        guard case .http(_, _, let accepted) = probe else { return nil }
        guard let end = answer.firstIndex(of: UInt8(ascii: "\r")) ?? answer.firstIndex(of: UInt8(ascii: "\n")) else {
            if answer.count >= Self.maxStatusLineLength { return .failed("malformed answer") }
            return closed ? .failed(answer.isEmpty ? "closed without an answer" : "malformed answer") : nil
        }
        let words = answer[..<end].split(separator: UInt8(ascii: " "), maxSplits: 2, omittingEmptySubsequences: false)
        guard words.count >= 2, words[0].starts(with: "HTTP/1.".utf8), words[0].count == 8, words[1].count == 3,
              let code = Int(String(decoding: words[1], as: UTF8.self)), (100...599).contains(code) else {
            return .failed("malformed answer")
        }
        return accepted.contains(code) ? .passed("HTTP \(code)") : .failed("HTTP \(code)")
    }
}

/// One check's outcome, in words for `status` and the log (`HTTP 503`, `connection refused`).
public enum HealthCheckResult: Equatable, Sendable {
    case passed(String)
    case failed(String)
    /// This host could not make the check (no descriptor left, a source address it lacks):
    /// the server's standing does not move, as for a data-path connect (`FailureCause.isLocal`).
    case inconclusive(String)

    public var words: String {
        switch self {
        case .passed(let words), .failed(let words), .inconclusive(let words): return words
        }
    }

    public static func timeout(_ amount: TimeAmount) -> HealthCheckResult {
        .failed("timeout after \(HealthCheckSettings.text(amount))")
    }
}

/// A server's check standing, and when its next check is due. Reset (up, nothing counted,
/// a first check soon) when checks are turned on for it or its address changes.
public struct ServerHealth: Equatable, Sendable {
    public private(set) var isDown = false
    /// Consecutive passed and failed checks; one of them is 0.
    public private(set) var successes = 0
    public private(set) var failures = 0
    /// The last check's result in words; nil before the first.
    public private(set) var lastResult: String?
    /// When the server last went down or up; nil if never.
    public private(set) var lastChange: NIODeadline?
    /// nil: not scheduled yet (the first check gets a random offset into the interval).
    var nextCheck: NIODeadline?
    /// The ticket of the check in flight: at most one per server.
    var checkInFlight: UInt64?

    public init() {}

    /// Counts `result`; true when the server went down or came up.
    mutating func record(_ result: HealthCheckResult, rise: Int, fall: Int, now: NIODeadline) -> Bool {
        lastResult = result.words
        switch result {
        case .inconclusive: return false
        case .passed:
            successes += 1
            failures = 0
            guard isDown, successes >= rise else { return false }
            isDown = false
        case .failed:
            failures += 1
            successes = 0
            guard !isDown, failures >= fall else { return false }
            isDown = true
        }
        lastChange = now
        return true
    }

    /// New settings: the standing stays, the check in flight is forgotten and the next one rescheduled.
    mutating func reschedule() {
        nextCheck = nil
        checkInFlight = nil
    }
}

/// A check to make now: the server's address at the time it started, and the settings.
public struct HealthCheckJob: Equatable, Sendable {
    public let index: Int
    public let ticket: UInt64
    public let host: String
    public let address: SocketAddress
    public let settings: HealthCheckSettings
}

/// A server that went down or came back, for the log.
public struct HealthTransition: Equatable, Sendable, CustomStringConvertible {
    public let index: Int
    public let server: String
    public let isDown: Bool
    public let result: String
    public let count: Int

    public var description: String {
        isDown ? "server \(index) \(server) is down: \(result), \(count) failed checks in a row"
            : "server \(index) \(server) is up again: \(result), \(count) good checks in a row"
    }
}

/// The check schedule over the server table, with an injected clock and random source.
extension BalancerState {
    /// The configuration's `healthcheck` was `before`: unchanged settings leave every check
    /// as it runs (a reload must not restart them), changed ones start them again, and
    /// `no healthcheck` puts every server back up.
    mutating func healthCheckChanged(from before: HealthCheckSettings?) {
        guard configuration.healthCheck != before else { return }
        for index in servers.servers.indices {
            if configuration.healthCheck == nil {
                servers.servers[index].health = ServerHealth()
            } else {
                servers.servers[index].health.reschedule()
            }
        }
    }

    /// The checks due at `now`, each marked in flight. A server's first check comes at a
    /// random point of the interval, and each later one an interval after the last started,
    /// give or take a tenth at random, so that many servers are never checked in one burst.
    public mutating func startDueChecks(now: NIODeadline, random: inout some RandomNumberGenerator) -> [HealthCheckJob] {
        guard let settings = configuration.healthCheck else { return [] }
        var jobs: [HealthCheckJob] = []
        for (index, spec) in configuration.servers.enumerated() where spec.healthCheck && servers.servers.indices.contains(index) {
            let server = servers.servers[index]
            guard server.health.checkInFlight == nil else { continue }
            guard let due = server.health.nextCheck else {
                servers.servers[index].health.nextCheck = now + Self.fraction(settings.interval, 0..<1, &random)
                continue
            }
            guard due <= now else { continue }
            nextCheckTicket += 1
            servers.servers[index].health.checkInFlight = nextCheckTicket
            servers.servers[index].health.nextCheck = now + Self.fraction(settings.interval, 0.9..<1.1, &random)
            jobs.append(HealthCheckJob(index: index, ticket: nextCheckTicket, host: spec.host, address: server.address,
                                       settings: settings))
        }
        return jobs
    }

    /// A check finished; the server's transition, if it went down or came up. The result of a
    /// check made with settings or an address that have changed since is dropped.
    public mutating func recordCheck(_ job: HealthCheckJob, _ result: HealthCheckResult, now: NIODeadline) -> HealthTransition? {
        guard let settings = configuration.healthCheck, servers.servers.indices.contains(job.index),
              servers.servers[job.index].health.checkInFlight == job.ticket else { return nil }
        var health = servers.servers[job.index].health
        health.checkInFlight = nil
        let changed = health.record(result, rise: settings.rise, fall: settings.fall, now: now)
        servers.servers[job.index].health = health
        guard changed else { return nil }
        // Back up by its checks: a blacklisting from a client's failed connect while it was
        // down (`-b`) is lifted too, or failback would wait for it (and track_servers with it).
        if !health.isDown { servers.servers[job.index].blacklistedUntil = nil }
        return HealthTransition(index: job.index, server: Endpoint.describe(job.address), isDown: health.isDown,
                                result: result.words, count: health.isDown ? health.failures : health.successes)
    }

    /// When `startDueChecks` has work next: now for a server not yet scheduled; nil when
    /// nothing is to be checked (no settings, or every check in flight).
    public func nextCheckDue(now: NIODeadline) -> NIODeadline? {
        guard configuration.healthCheck != nil else { return nil }
        return configuredServers.lazy.filter { $0.healthCheck && $1.health.checkInFlight == nil }
            .map { $1.health.nextCheck ?? now }.min()
    }

    /// `amount` times a random factor from `range`.
    private static func fraction(_ amount: TimeAmount, _ range: Range<Double>,
                                 _ random: inout some RandomNumberGenerator) -> TimeAmount {
        .nanoseconds(Int64(Double(amount.nanoseconds) * Double.random(in: range, using: &random)))
    }
}
