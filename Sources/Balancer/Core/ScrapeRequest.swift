import NIOCore

/// A metrics scrape's request head (`metrics ADDRESS`), read as the X-Forwarded-For rewriter
/// reads heads (`HeadParser`: RFC 9112's request line checked byte by byte, the head bounded),
/// then answered with one response and the connection closed. penha's own rather than
/// NIOHTTP1's: for one GET, that module and the ones it pulls in were 0.7 MB of the binary.
public struct ScrapeRequestReader {
    /// A scraper's head is a request line and a few fields.
    public static let maxHeadBytes = 8192

    public enum Outcome: Equatable, Sendable {
        case incomplete
        /// The head has ended: its method and its path (the target without its query).
        case request(method: String, path: String)
        /// Not an HTTP/1.x request head, or one longer than `maxHeadBytes`.
        case malformed
    }

    private var parser = HeadParser()
    /// Once not `.incomplete`, what every later read answers: the bytes after a head are not read.
    private var outcome = Outcome.incomplete

    public init() {}

    /// Takes the next bytes of the connection.
    public mutating func read(_ input: ByteBuffer) -> Outcome {
        guard outcome == .incomplete else { return outcome }
        outcome = parse(input)
        return outcome
    }

    private mutating func parse(_ input: ByteBuffer) -> Outcome {
        switch parser.advance(through: input.readableBytesView, maxLength: Self.maxHeadBytes).outcome {
        case .incomplete: return .incomplete
        case .notHTTP: return .malformed
        case .complete:
            // The request line passed HeadParser: method SP target SP version, after any empty lines.
            let line = parser.bytes.readableBytesView.drop { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") }
            let words = line.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }.split(separator: UInt8(ascii: " "))
            guard words.count == 3 else { return .malformed }
            let path = Self.originForm(words[1]).prefix { $0 != UInt8(ascii: "?") }
            return .request(method: String(decoding: words[0], as: UTF8.self),
                            path: path.isEmpty ? "/" : String(decoding: path, as: UTF8.self))
        }
    }

    /// The target without `http://authority` (RFC 9112 3.2.2: a server accepts the absolute
    /// form, which a client sends through a proxy); the origin form as it is.
    private static func originForm(_ target: ByteBufferView) -> ByteBufferView {
        let lowercased = target.prefix(8).map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
        guard let scheme = ["http://", "https://"].first(where: { lowercased.starts(with: $0.utf8) }) else { return target }
        let authorityAndPath = target.dropFirst(scheme.utf8.count)
        let pathStart = authorityAndPath.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }
        return authorityAndPath[(pathStart ?? authorityAndPath.endIndex)...]
    }

    /// An HTTP/1.1 response that closes the connection; `length` is the GET's body length,
    /// which a HEAD's answer announces without the body.
    public static func response(status: Int, reason: String, contentType: String, body: [UInt8], length: Int) -> [UInt8] {
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(length)\r\n"
            + "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }
}
