/// penlogd's memory: the last `capacity` pen lines, looked up by server and request. The
/// newest line for a server and request wins, as in penlogd, and a line is not used up by a
/// match (pen logs a connection once, its web server may log several requests for it).
/// Lookups and insertions are O(1): the ring holds the order, a dictionary the newest line
/// per key; when the ring drops a line, its key goes too unless a newer line has it.
/// Pure: no sockets, no clock.
public struct LogdCache {
    /// `-n`: penlogd's default.
    public static let defaultCapacity = 1000
    public static let capacityRange = 1...1_000_000

    struct Key: Hashable {
        var server: String
        var request: ArraySlice<UInt8>
    }

    public let capacity: Int
    /// Grows to `capacity` as lines arrive, then wraps: nothing is reserved up front.
    private var ring: [(key: Key, sequence: Int)] = []
    private var newest: [Key: (sequence: Int, client: String)] = [:]
    private var sequence = 0

    public init(capacity: Int = defaultCapacity) {
        self.capacity = capacity
    }

    public var count: Int { ring.count }

    public mutating func add(_ line: PenLogLine) {
        let key = Key(server: line.server, request: line.request.prefix(PenLogLine.requestLimit))
        let slot = sequence % capacity
        if slot < ring.count {
            let dropped = ring[slot]
            if newest[dropped.key]?.sequence == dropped.sequence { newest[dropped.key] = nil }
            ring[slot] = (key, sequence)
        } else {
            ring.append((key, sequence))
        }
        newest[key] = (sequence, line.client)
        sequence += 1
    }

    /// The client of the newest pen line for `server` and `request` (compared in their first
    /// `PenLogLine.requestLimit` bytes); nil when none is held.
    public func client(server: String, request: some Collection<UInt8>) -> String? {
        newest[Key(server: server, request: ArraySlice(request.prefix(PenLogLine.requestLimit)))]?.client
    }
}

/// penlogd's handling of one datagram: a pen line (`+ ...`) goes into the cache; a web
/// server's access-log line, identified by the address it came from, is written with the
/// real client when the cache knows it, unchanged when not. Anything else is skipped and
/// counted. Pure: the datagram and its source come in, the line to write goes out.
public struct LogDaemon {
    public struct Counts: Equatable, Sendable {
        public var penLines = 0
        public var rewritten = 0
        public var unmatched = 0
        /// Garbage, overlong or truncated datagrams, and lines in neither format.
        public var skipped = 0
    }

    public private(set) var cache: LogdCache
    public private(set) var counts = Counts()

    public init(capacity: Int = LogdCache.defaultCapacity) {
        cache = LogdCache(capacity: capacity)
    }

    /// The longest datagram taken: a line of `PenLogLine.maxLineBytes` and its CR LF. A
    /// receiver's buffer one byte larger tells a longer (truncated) one.
    public static let maxDatagramBytes = PenLogLine.maxLineBytes + 2

    /// The line to append to the combined log, if any. `source` is the sender's address as
    /// penha and pen write server addresses (`127.0.0.1`, `2001:db8::1`).
    public mutating func receive(_ datagram: some Collection<UInt8>, from source: String) -> [UInt8]? {
        guard datagram.count <= Self.maxDatagramBytes else {
            counts.skipped += 1
            return nil
        }
        if datagram.first == UInt8(ascii: "+") {
            guard let line = PenLogLine(datagram: datagram) else {
                counts.skipped += 1
                return nil
            }
            cache.add(line)
            counts.penLines += 1
            return nil
        }
        guard let line = AccessLogLine(datagram) else {
            counts.skipped += 1
            return nil
        }
        guard let client = cache.client(server: source, request: line.request) else {
            counts.unmatched += 1
            return line.line(client: line.client)
        }
        counts.rewritten += 1
        return line.line(client: client.utf8)
    }
}
