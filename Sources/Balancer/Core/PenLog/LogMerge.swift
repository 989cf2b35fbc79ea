/// pen's `mergelogs`: the web servers' access logs, merged in time order, each line with the
/// real client from pen's log in place of the balancer's address. A web server's line takes
/// the client of the pen line that has
/// - the same server (the pen line's SERVER is the name given with the web server's log),
/// - the same request (equal in their first `PenLogLine.requestLimit` bytes: what pen keeps;
///   pen's mergelogs compares whole requests, so one longer than that never matched there),
/// - a time within `jitter` seconds of the web server's, the closest one (the first of
///   equally close ones).
/// A line without a match keeps the server's name as its client (pen's fallback) and is
/// counted. Lines in neither format are skipped and counted, and so are pen lines whose time
/// (less the offset) is beyond what any web server's line within the jitter could have: they
/// could never match, and far enough out their arithmetic would overflow.
///
/// Both logs are read as pen reads them: forward, once, in time order. Only the pen lines
/// within the jitter of the current time are held (at most `windowLimit`), so memory does not
/// grow with the logs. Pure: the lines come from the closures given, the output is returned.
public struct LogMerge {
    public typealias Source = () -> BoundedLines.Line?

    public struct Counts: Equatable, Sendable {
        public var matched = 0
        public var unmatched = 0
        /// Web-server lines that are not in their format, or too long.
        public var skippedServerLines = 0
        /// Pen lines likewise, and those with a time out of range.
        public var skippedPenLines = 0
        /// Pen lines dropped because more than `windowLimit` fell within the jitter.
        public var droppedPenLines = 0
    }

    /// `-j`: pen's default, 10 minutes.
    public static let defaultJitter = 600
    public static let jitterRange = 0...86400
    /// `-t`: seconds subtracted from pen's times (how far its clock is ahead of the web servers').
    public static let offsetRange = -86400...86400
    /// The most pen lines held at once.
    public static let windowLimit = 1_000_000

    public private(set) var counts = Counts()
    private let servers: [String]
    private let jitter: Int
    private let offset: Int
    /// The pen times (less the offset) that a web server's line could be within the jitter of.
    private let penTimes: ClosedRange<Int>
    private let penLog: Source
    private let serverLogs: [Source]
    private var heads: [AccessLogLine?]
    /// Pen lines in the order read: those from `windowStart` on are held.
    private var window: [PenLogLine] = []
    private var windowStart = 0
    private var penLogEnded = false

    /// `servers[i]` names the web server whose log `serverLogs[i]` reads.
    public init(servers: [String], serverLogs: [Source], penLog: @escaping Source,
                jitter: Int = defaultJitter, offset: Int = 0) {
        precondition(servers.count == serverLogs.count)
        precondition(Self.jitterRange.contains(jitter) && Self.offsetRange.contains(offset))
        self.servers = servers
        self.serverLogs = serverLogs
        self.penLog = penLog
        self.jitter = jitter
        self.offset = offset
        penTimes = (AccessLogLine.timeRange.lowerBound - jitter)...(AccessLogLine.timeRange.upperBound + jitter)
        heads = Array(repeating: nil, count: servers.count)
        for index in servers.indices { heads[index] = readServerLine(index) }
    }

    /// Pen lines held now, for matching the web servers' lines to come.
    public var heldPenLines: Int { window.count - windowStart }

    /// The next merged line (with its newline), oldest first; nil when every log has ended.
    public mutating func next() -> [UInt8]? {
        var oldest: Int?
        for (index, head) in heads.enumerated() {
            guard let head else { continue }
            if oldest.map({ head.time < heads[$0]!.time }) ?? true { oldest = index }
        }
        guard let index = oldest, let line = heads[index] else { return nil }
        heads[index] = readServerLine(index)
        let client = bestClient(server: servers[index], time: line.time, request: line.request)
        if client == nil { counts.unmatched += 1 } else { counts.matched += 1 }
        return line.mergedLine(client: (client ?? servers[index]).utf8)
    }

    private mutating func readServerLine(_ index: Int) -> AccessLogLine? {
        while let next = serverLogs[index]() {
            if case .line(let bytes) = next, let line = AccessLogLine(bytes) { return line }
            counts.skippedServerLines += 1
        }
        return nil
    }

    private mutating func bestClient(server: String, time: Int, request: [UInt8]) -> String? {
        slideWindow(to: time)
        let key = request.prefix(PenLogLine.requestLimit)
        var best: (distance: Int, client: String)?
        for entry in window[windowStart...] where entry.server == server && entry.request.elementsEqual(key) {
            let distance = abs(entry.time - time)
            if distance <= jitter, distance < best?.distance ?? Int.max { best = (distance, entry.client) }
        }
        return best?.client
    }

    /// Holds the pen lines from `time - jitter` to the first one after `time + jitter`.
    private mutating func slideWindow(to time: Int) {
        while windowStart < window.count, window[windowStart].time < time - jitter { windowStart += 1 }
        while !penLogEnded, window.count == windowStart || window[window.count - 1].time <= time + jitter {
            guard let next = penLog() else {
                penLogEnded = true
                break
            }
            guard case .line(let bytes) = next, var entry = PenLogLine(fileLine: bytes),
                  case (let shifted, false) = entry.time.subtractingReportingOverflow(offset), penTimes.contains(shifted) else {
                counts.skippedPenLines += 1
                continue
            }
            entry.time = shifted
            // Too old for this line, so for every later one (they come in time order).
            if entry.time < time - jitter { continue }
            window.append(entry)
            if window.count - windowStart > Self.windowLimit {
                windowStart += 1
                counts.droppedPenLines += 1
            }
        }
        // Compacts once the dropped part outweighs the held one: amortised O(1) per line.
        if windowStart > 1024, windowStart * 2 > window.count {
            window.removeFirst(windowStart)
            windowStart = 0
        }
    }
}
