/// pen's connection log line, in its two forms:
/// - the `-l FILE` line `CLIENT UNIXTIME SERVER REQUEST`, which pen's `mergelogs` reads;
/// - the `-l HOST:PORT` datagram `+ CLIENT SERVER REQUEST`, which pen's `penlogd` reads
///   (the `+` tells it from a web server's line; the log daemon stamps no time).
///
/// CLIENT and SERVER are addresses without ports (pen's `pen_ntoa`); REQUEST is the start of
/// what the client sent, up to the first CR or LF, escaped (`LogText`): at most
/// `requestLimit` bytes. Pure: the time comes in as an argument.
public struct PenLogLine: Equatable, Sendable {
    public var client: String
    public var time: Int
    public var server: String
    /// Never empty, holds no CR or LF: a field that pen's tools can read back.
    public var request: [UInt8]

    /// pen's KEEP_MAX: how much of the request its log keeps, and so how much of it the
    /// matching can compare.
    public static let requestLimit = 100
    /// The longest line (or datagram) the log tools take; longer ones are skipped and
    /// counted. pen reads 1024-byte buffers and splits a longer line; penha takes the whole
    /// line up to this bound. 8 KiB is Apache's own request-line limit (LimitRequestLine).
    public static let maxLineBytes = 8192
    /// The REQUEST of a connection (or UDP flow) that sent nothing: Apache's own word for a
    /// request that never came.
    public static let noRequest: [UInt8] = Array("-".utf8)

    public init(client: String, time: Int, server: String, request: [UInt8]) {
        self.client = client
        self.time = time
        self.server = server
        self.request = request.isEmpty ? Self.noRequest : request
    }

    /// The REQUEST field for the first bytes a client sent: up to the first CR or LF, escaped
    /// (`LogText`: no control character reaches the log or a terminal), then cut at
    /// `requestLimit` bytes as pen cuts it. pen writes bytes above 127 as `.` and control
    /// characters as they came; penha escapes both as Apache escapes its own log, so the
    /// first `requestLimit` bytes are those of the web server's line for the same request,
    /// which is what the log tools compare.
    public static func requestStart(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var request: [UInt8] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") || request.count >= requestLimit { break }
            LogText.append(byte, to: &request)
        }
        // An escape may end past the limit: cut as the tools cut the web server's line.
        if request.count > requestLimit { request.removeLast(request.count - requestLimit) }
        return request.isEmpty ? noRequest : request
    }

    /// `CLIENT UNIXTIME SERVER REQUEST\n`.
    public var fileLine: [UInt8] {
        Array("\(client) \(time) \(server) ".utf8) + request + [UInt8(ascii: "\n")]
    }

    /// `+ CLIENT SERVER REQUEST\n`.
    public var datagram: [UInt8] {
        Array("+ \(client) \(server) ".utf8) + request + [UInt8(ascii: "\n")]
    }

    /// A `-l FILE` line (with or without its newline) read back, as mergelogs reads it: three
    /// fields separated by spaces, then the request to the end of the line. nil for anything
    /// else: too few fields, a time that is not a number, an empty request.
    public init?(fileLine line: some Collection<UInt8>) {
        let line = Self.withoutNewline(line)
        guard Self.isOneLine(line) else { return nil }
        var fields = line.split(separator: UInt8(ascii: " "), maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, let time = Int(String(decoding: fields[1], as: UTF8.self)),
              let client = Self.address(fields[0]), let server = Self.address(fields[2]) else { return nil }
        fields[3] = fields[3].prefix(Self.requestLimit)
        guard !fields[3].isEmpty else { return nil }
        self.init(client: client, time: time, server: server, request: Array(fields[3]))
    }

    /// A `+ CLIENT SERVER REQUEST` datagram; nil for anything else. It carries no time: 0.
    public init?(datagram: some Collection<UInt8>) {
        let line = Self.withoutNewline(datagram)
        guard Self.isOneLine(line) else { return nil }
        let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, fields[0].elementsEqual("+".utf8),
              let client = Self.address(fields[1]), let server = Self.address(fields[2]),
              !fields[3].isEmpty else { return nil }
        self.init(client: client, time: 0, server: server, request: Array(fields[3].prefix(Self.requestLimit)))
    }

    /// An address field: not empty, printable ASCII without spaces.
    private static func address(_ field: some Collection<UInt8>) -> String? {
        guard !field.isEmpty, field.count <= 255, field.allSatisfy({ (0x21...0x7E).contains($0) }) else { return nil }
        return String(decoding: field, as: UTF8.self)
    }

    /// Within `maxLineBytes`, without a CR or LF inside (a datagram holding two lines would
    /// otherwise write a line of its sender's choosing).
    static func isOneLine(_ line: some Collection<UInt8>) -> Bool {
        line.count <= maxLineBytes && !line.contains(UInt8(ascii: "\n")) && !line.contains(UInt8(ascii: "\r"))
    }

    /// The line without one trailing LF (and a CR before it).
    static func withoutNewline(_ line: some Collection<UInt8>) -> ArraySlice<UInt8> {
        var body = Array(line)[...]
        if body.last == UInt8(ascii: "\n") { body = body.dropLast() }
        if body.last == UInt8(ascii: "\r") { body = body.dropLast() }
        return body
    }
}
