/// A web server's access-log line in Apache's common or combined format,
/// `CLIENT IDENT USER [TIME] "REQUEST" STATUS BYTES ["REFERER" "AGENT"]`, cut where pen's
/// mergelogs cuts it: the client, the text before the time, the time, the text between the
/// time and the request, the request, and the rest. Everything but the client and the time
/// is kept as the web server wrote it, so a rewritten line differs from the original only
/// there; only a byte no web server writes raw (outside printable ASCII) is escaped
/// (`LogText`), since a datagram from anyone can reach the log daemon and its log. Pure.
public struct AccessLogLine: Equatable, Sendable {
    public var client: [UInt8]
    /// From after the client's space up to `[` (` - - ` minus the first space: `- - `).
    public var beforeTime: [UInt8]
    /// The time as logged, without its brackets.
    public var timeText: [UInt8]
    /// The same as seconds since 1970 UTC (its `+0100` applied).
    public var time: Int
    /// From `]` up to the request's opening quote (normally one space).
    public var beforeRequest: [UInt8]
    /// The request line as the server logged it, without its quotes (`GET / HTTP/1.1`).
    public var request: [UInt8]
    /// After the request's closing quote, without the newline: status, size, and in the
    /// combined format the referer and the user agent.
    public var rest: [UInt8]

    /// nil for a line that is not in either format: no client, no `[TIME]` with a valid time,
    /// no quoted request, a line longer than `PenLogLine.maxLineBytes`.
    public init?(_ line: some Collection<UInt8>) {
        let line = Array(PenLogLine.withoutNewline(line))
        guard PenLogLine.isOneLine(line),
              let space = line.firstIndex(of: UInt8(ascii: " ")), space > 0,
              let open = line[space...].firstIndex(of: UInt8(ascii: "[")),
              let close = line[open...].firstIndex(of: UInt8(ascii: "]")),
              let time = Self.parseTime(line[(open + 1)..<close]),
              let quote = line[close...].firstIndex(of: UInt8(ascii: "\"")),
              let endQuote = Self.closingQuote(in: line, after: quote) else { return nil }
        client = Array(line[..<space])
        beforeTime = LogText.escaped(line[(space + 1)..<open])
        timeText = Array(line[(open + 1)..<close])
        self.time = time
        beforeRequest = LogText.escaped(line[(close + 1)..<quote])
        request = LogText.escaped(line[(quote + 1)..<endQuote])
        rest = LogText.escaped(line[(endQuote + 1)...])
        guard !client.contains(where: { !(0x21...0x7E).contains($0) }) else { return nil }
    }

    /// The line with another client address, everything else as it was (what penlogd writes).
    public func line(client newClient: some Sequence<UInt8>) -> [UInt8] {
        Array(newClient) + [UInt8(ascii: " ")] + beforeTime + rendered(timeText: nil)
    }

    /// The line as mergelogs writes it: another client, and the time in UTC (`+0000`).
    public func mergedLine(client newClient: some Sequence<UInt8>) -> [UInt8] {
        Array(newClient) + [UInt8(ascii: " ")] + beforeTime + rendered(timeText: Self.formatTime(time))
    }

    private func rendered(timeText newTime: String?) -> [UInt8] {
        var line = [UInt8(ascii: "[")]
        line += newTime.map { Array($0.utf8) } ?? timeText
        line.append(UInt8(ascii: "]"))
        line += beforeRequest
        line.append(UInt8(ascii: "\""))
        line += request
        line.append(UInt8(ascii: "\""))
        line += rest
        line.append(UInt8(ascii: "\n"))
        return line
    }

    /// Apache escapes a quote inside the request as `\"`; the request ends at the first
    /// quote that is not escaped.
    private static func closingQuote(in line: [UInt8], after open: Int) -> Int? {
        var index = open + 1
        while index < line.count {
            switch line[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""): return index
            default: index += 1
            }
        }
        return nil
    }

    /// Every time `parseTime` gives: from 1970 to 9999, in zones up to 14:59 either side.
    static let timeRange = -(14 * 3600 + 59 * 60)...(daysSince1970(year: 10000, month: 1, day: 1) * 86400 + 14 * 3600 + 59 * 60)

    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Apache's `%t`: `09/Jan/2002:00:27:15 +0100`, as seconds since 1970 UTC. Every field is
    /// checked (a day of 31 in any month is taken, as mktime takes it).
    static func parseTime(_ text: some Collection<UInt8>) -> Int? {
        let text = String(decoding: text, as: UTF8.self)
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2, text.utf8.count == 26 else { return nil }
        let date = parts[0].split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard date.count == 3, let day = Int(date[0]), (1...31).contains(day),
              let month = months.firstIndex(of: String(date[1])) else { return nil }
        let clock = date[2].split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 4, let year = Int(clock[0]), (1970...9999).contains(year),
              let hour = Int(clock[1]), (0...23).contains(hour), let minute = Int(clock[2]), (0...59).contains(minute),
              let second = Int(clock[3]), (0...60).contains(second) else { return nil }
        let zone = parts[1]
        guard zone.count == 5, let sign = zone.first, sign == "+" || sign == "-",
              let hours = Int(zone.dropFirst().prefix(2)), let minutes = Int(zone.suffix(2)),
              hours <= 14, minutes <= 59 else { return nil }
        let offset = (hours * 3600 + minutes * 60) * (sign == "+" ? 1 : -1)
        let days = daysSince1970(year: year, month: month + 1, day: day)
        return days * 86400 + hour * 3600 + minute * 60 + second - offset
    }

    /// `%t` for a time in UTC.
    static func formatTime(_ time: Int) -> String {
        let days = time >= 0 ? time / 86400 : (time - 86399) / 86400
        let seconds = time - days * 86400
        let (year, month, day) = civilDate(daysSince1970: days)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(two(day))/\(months[month - 1])/\(year):\(two(seconds / 3600)):\(two(seconds / 60 % 60)):\(two(seconds % 60)) +0000"
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
    /// days_from_civil algorithm).
    static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146097 + dayOfEra - 719468
    }

    /// The inverse of `daysSince1970` (civil_from_days).
    static func civilDate(daysSince1970 days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let dayOfEra = z - era * 146097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
