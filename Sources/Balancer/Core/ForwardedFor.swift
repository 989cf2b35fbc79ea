import NIOCore

/// The bytes a client sends, with its address added to each HTTP/1.x request head: a state
/// machine with no I/O, fed whatever each read brought, at any byte boundary.
///
/// HTTP/1.x (RFC 9112) is parsed only as far as finding the heads needs: the request line,
/// the header names, and the values of the fields that frame a body. In each head the address
/// is appended to the last `X-Forwarded-For` field (`existing, client`), or a field is added
/// before the blank line. Bodies pass through untouched.
///
/// Where the stream stops being HTTP that can be followed, the rest of the connection passes
/// through unchanged. penha stays a transparent relay for what it cannot read: the server gets
/// exactly what the client sent and answers it as it would without penha. That happens when
/// - a head does not start `method SP target SP HTTP/1.d` (another protocol, HTTP/2's
///   preface included), has a malformed header line, or is longer than `maxHeadLength`:
///   that head passes unchanged;
/// - the body's length cannot be known (an invalid Content-Length or chunk size, a
///   Transfer-Encoding not ending in chunked or in an HTTP/1.0 request), or the request is
///   `CONNECT` or carries `Upgrade`, after which the stream may be another protocol (the
///   server's answer is not seen here): the head gets the address, what follows does not.
///
/// Memory: one incomplete head at most, bounded by `maxHeadLength`; body bytes go on as they
/// come. Bytes that could still begin a request are held back until they cannot, or until
/// `finish()` at the end of the client's input.
public struct ForwardedForRewriter {
    public static let defaultMaxHeadLength = 64 * 1024

    /// What the next bytes are.
    enum State {
        case head
        case fixedLength(remaining: Int)
        case chunked(ChunkedBody)
        case opaque
    }

    private let appendedValue: [UInt8]
    private let addedField: [UInt8]
    private let maxHeadLength: Int
    private var state = State.head
    private var head = HeadParser()

    public init(clientAddress: String, maxHeadLength: Int = defaultMaxHeadLength) {
        appendedValue = Array(clientAddress.utf8)
        addedField = Array("X-Forwarded-For: \(clientAddress)".utf8)
        self.maxHeadLength = maxHeadLength
    }

    /// Nothing held back and the next bytes start a request: a fresh rewriter would do the
    /// same from here (a connection handed over to another process gets one).
    public var isBetweenRequests: Bool {
        guard case .head = state else { return false }
        return head.bytes.readableBytes == 0
    }

    /// The bytes to pass on for `input`: everything up to the last complete head, rewritten,
    /// and the body bytes that followed it. Bytes of an incomplete head are held back.
    public mutating func process(_ input: ByteBuffer) -> ByteBuffer {
        var input = input
        var output = ByteBuffer()
        while input.readableBytes > 0 {
            switch state {
            case .head:
                let (count, outcome) = head.advance(through: input.readableBytesView, maxLength: maxHeadLength)
                input.moveReaderIndex(forwardBy: count)
                switch outcome {
                case .incomplete:
                    break
                case .complete(let next, let place):
                    output.append(rewritten(head.bytes, place: place))
                    head = HeadParser()
                    state = next
                case .notHTTP:
                    output.append(finish())
                }
            case .fixedLength(let remaining):
                // RFC 9112 §6.3 (rule 6): exactly Content-Length bytes of body, then the next request.
                let count = min(remaining, input.readableBytes)
                output.append(input.readSlice(length: count)!)
                state = count == remaining ? .head : .fixedLength(remaining: remaining - count)
            case .chunked(var body):
                let (count, outcome) = body.advance(through: input.readableBytesView)
                output.append(input.readSlice(length: count)!)
                switch outcome {
                case .inBody: state = .chunked(body)
                case .ended: state = .head
                case .invalid: state = .opaque
                }
            case .opaque:
                output.append(input)
                input.moveReaderIndex(to: input.writerIndex)
            }
        }
        return output
    }

    /// The bytes held back (an incomplete head), unchanged, for when no more will come;
    /// anything after them would pass through.
    public mutating func finish() -> ByteBuffer {
        let heldBack = head.bytes
        head = HeadParser()
        state = .opaque
        return heldBack
    }

    private func rewritten(_ head: ByteBuffer, place: AddressPlace) -> ByteBuffer {
        let offset: Int
        let insertion: [UInt8]
        switch place {
        case .endOfValue(let end, let valueIsEmpty):
            offset = end
            insertion = valueIsEmpty ? appendedValue : Array(", ".utf8) + appendedValue
        case .beforeBlankLine(let blankLine):
            // The new line ends the way the client ends its lines (CRLF or a bare LF).
            offset = blankLine
            insertion = addedField + head.readableBytesView[blankLine...]
        }
        var result = ByteBuffer()
        result.reserveCapacity(head.readableBytes + insertion.count)
        result.writeBytes(head.readableBytesView[..<offset])
        result.writeBytes(insertion)
        result.writeBytes(head.readableBytesView[offset...])
        return result
    }
}

/// Where a head takes the client address (offsets into the head's bytes).
enum AddressPlace {
    /// After the value of the last `X-Forwarded-For` field, as one more list element.
    case endOfValue(Int, valueIsEmpty: Bool)
    /// A new field, in front of the blank line that ends the head.
    case beforeBlankLine(Int)
}

/// One request head as it arrives: its bytes so far and what its lines have said. The
/// metrics server reads its scrapes' heads with it too (`ScrapeRequestReader`).
struct HeadParser {
    enum Outcome {
        case incomplete
        /// The head ended; what follows it, and where the address goes.
        case complete(ForwardedForRewriter.State, AddressPlace)
        case notHTTP
    }

    private enum LengthField {
        case absent, value(Int), invalid
    }

    private(set) var bytes = ByteBuffer()
    private var requestLine = RequestLine.method(started: false)
    /// Where the header line being read starts in `bytes`.
    private var lineStart = 0
    private var contentLength = LengthField.absent
    /// Whether the last transfer coding is chunked; nil without Transfer-Encoding.
    private var endsChunked: Bool?
    private var upgrade = false
    private var forwardedFor: AddressPlace?

    /// Takes bytes from the start of `input` up to the end of the head, line by line: how
    /// many it took and what they made of the head.
    mutating func advance(through input: ByteBufferView, maxLength: Int) -> (count: Int, outcome: Outcome) {
        var index = input.startIndex
        while index < input.endIndex {
            let newline = input[index...].firstIndex(of: .lf)
            let end = newline.map { $0 + 1 } ?? input.endIndex
            guard bytes.readableBytes + (end - index) <= maxLength else {
                return (index - input.startIndex, .notHTTP)
            }
            let taken = input[index..<end]
            bytes.writeBytes(taken)
            index = end
            let outcome: Outcome
            if case .done = requestLine {
                outcome = newline == nil ? .incomplete : endHeaderLine()
            } else {
                outcome = readRequestLine(taken)
            }
            if case .incomplete = outcome { continue }
            return (index - input.startIndex, outcome)
        }
        return (input.count, .incomplete)
    }

    /// Checks `taken` as more of the request line; the header lines start after it.
    private mutating func readRequestLine(_ taken: ByteBufferView) -> Outcome {
        for byte in taken {
            guard let next = requestLine.consuming(byte) else { return .notHTTP }
            requestLine = next
        }
        lineStart = bytes.writerIndex
        return .incomplete
    }

    /// The header line in `bytes` from `lineStart` has just ended: note what the framing needs
    /// from it, or, at the blank line, finish the head.
    private mutating func endHeaderLine() -> Outcome {
        let start = lineStart
        lineStart = bytes.writerIndex
        var line = bytes.readableBytesView[start..<lineStart - 1]
        if line.last == .cr {
            line = line.dropLast()
        }
        if line.isEmpty {
            return .complete(following, forwardedFor ?? .beforeBlankLine(start))
        }
        // RFC 9112 §5: field-name ":" OWS field-value OWS. A line folded onto the one before
        // (§5.2) or a space before the colon (§5.1) does not match, nor does anything else.
        guard let colon = line.firstIndex(of: .colon), colon > line.startIndex,
              line[..<colon].allSatisfy(\.isTokenByte) else {
            return .notHTTP
        }
        let name = line[..<colon]
        let value = line[(colon + 1)...].trimmingWhitespace()
        if name.equalsIgnoringCase("x-forwarded-for") {
            forwardedFor = .endOfValue(value.endIndex, valueIsEmpty: value.isEmpty)
        } else if name.equalsIgnoringCase("content-length") {
            contentLength = switch (contentLength, value.contentLength) {
            case (.absent, let length?): .value(length)
            case (.value(let earlier), let length?) where length == earlier: .value(length)
            default: .invalid
            }
        } else if name.equalsIgnoringCase("transfer-encoding") {
            let last = value.split(separator: .comma).last?.trimmingWhitespace()
            endsChunked = last?.equalsIgnoringCase("chunked") ?? false
        } else if name.equalsIgnoringCase("upgrade") {
            upgrade = true
        }
        return .incomplete
    }

    /// What follows the complete head: RFC 9112 §6.3, the length of a request's body.
    private var following: ForwardedForRewriter.State {
        let requestLine = bytes.readableBytesView.drop { $0 == .cr || $0 == .lf }
        guard !upgrade, !requestLine.starts(with: "CONNECT ".utf8), case .done(let minorVersion) = self.requestLine else {
            return .opaque
        }
        if let endsChunked {
            // Rule 4: not ending in chunked, the length cannot be known; §6.1: nor can it
            // in an HTTP/1.0 request with Transfer-Encoding. Rule 3: it overrides Content-Length.
            return endsChunked && minorVersion > 0 ? .chunked(.start) : .opaque
        }
        switch contentLength {
        case .absent, .value(0): return .head  // Rule 7.
        case .value(let length): return .fixedLength(remaining: length)  // Rule 6.
        case .invalid: return .opaque  // Rule 5.
        }
    }
}

/// How far a head's request line (RFC 9112 §3: `method SP request-target SP HTTP-version`)
/// has got. It is checked byte by byte, so a client speaking another protocol is noticed at
/// the first byte HTTP would not send rather than after a head's worth of buffering. Only
/// HTTP/1.x is followed: HTTP/2's connection preface (`PRI * HTTP/2.0`) passes through.
private enum RequestLine {
    case method(started: Bool)
    case target(started: Bool)
    case version(matched: Int)
    case lineEnd(minorVersion: UInt8, sawCR: Bool)
    case done(minorVersion: UInt8)

    private static let versionPrefix = Array("HTTP/1.".utf8)

    /// The state after `byte`, or nil when no request line goes on that way.
    func consuming(_ byte: UInt8) -> RequestLine? {
        switch self {
        case .method(started: false) where byte == .cr || byte == .lf:
            return self  // §2.2: empty lines before a request line are ignored.
        case .method(let started):
            if byte.isTokenByte { return .method(started: true) }
            return started && byte == .space ? .target(started: false) : nil
        case .target(let started):
            if byte > .space && byte != .delete { return .target(started: true) }
            return started && byte == .space ? .version(matched: 0) : nil
        case .version(let matched) where matched < Self.versionPrefix.count:
            return byte == Self.versionPrefix[matched] ? .version(matched: matched + 1) : nil
        case .version:
            return byte.isDigit ? .lineEnd(minorVersion: byte - .zero, sawCR: false) : nil
        case .lineEnd(let minorVersion, let sawCR):
            if byte == .lf { return .done(minorVersion: minorVersion) }
            return byte == .cr && !sawCR ? .lineEnd(minorVersion: minorVersion, sawCR: true) : nil
        case .done:
            return nil  // The line has ended; no byte belongs to it.
        }
    }
}

/// Where a chunked body (RFC 9112 §7.1) has got.
enum ChunkedBody {
    case data(remaining: Int)
    /// The lines around chunk-data, read byte by byte.
    case line(ChunkLine)

    static let start = ChunkedBody.line(.size(0, digits: 0))

    enum Outcome {
        case inBody, ended, invalid
    }

    enum Step {
        case next(ChunkedBody), ended, invalid
    }

    /// Moves through the start of `bytes`: how many of them belong to the body, and whether
    /// the body goes on after them.
    mutating func advance(through bytes: ByteBufferView) -> (count: Int, outcome: Outcome) {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let step: Step
            switch self {
            case .data(let remaining):
                let count = min(remaining, bytes.endIndex - index)
                index += count
                step = .next(count == remaining ? .line(.dataEnd) : .data(remaining: remaining - count))
            case .line(let line):
                step = line.consuming(bytes[index])
                index += 1
            }
            switch step {
            case .next(let next): self = next
            case .ended: return (index - bytes.startIndex, .ended)
            case .invalid: return (index - bytes.startIndex, .invalid)
            }
        }
        return (bytes.count, .inBody)
    }
}

/// The parts of a chunked body that are lines.
enum ChunkLine {
    /// chunk-size: the hex digits so far.
    case size(Int, digits: Int)
    /// The rest of the chunk-size line: chunk extensions (§7.1.1), not interpreted.
    case sizeLine(Int)
    /// The line end after chunk-data.
    case dataEnd
    /// trailer-section (§7.1.2): field lines up to an empty line, which ends the body.
    case trailer(lineIsEmpty: Bool)

    /// What the body is after `byte`.
    func consuming(_ byte: UInt8) -> ChunkedBody.Step {
        switch self {
        case .size(let size, let digits):
            if let digit = byte.hexDigitValue {
                // A size that does not fit is as unusable as one that does not parse.
                return size <= Int.max >> 4 ? .next(.line(.size(size << 4 | digit, digits: digits + 1))) : .invalid
            }
            guard digits > 0, [.semicolon, .space, .tab, .cr, .lf].contains(byte) else { return .invalid }
            return ChunkLine.sizeLine(size).consuming(byte)
        case .sizeLine(let size):
            guard byte == .lf else { return .next(.line(self)) }
            // last-chunk is a size of zero; the trailer section follows it.
            return .next(size == 0 ? .line(.trailer(lineIsEmpty: true)) : .data(remaining: size))
        case .dataEnd:
            if byte == .cr { return .next(.line(self)) }
            return byte == .lf ? .next(ChunkedBody.start) : .invalid
        case .trailer(let lineIsEmpty):
            if byte == .lf { return lineIsEmpty ? .ended : .next(.line(.trailer(lineIsEmpty: true))) }
            return .next(.line(.trailer(lineIsEmpty: lineIsEmpty && byte == .cr)))
        }
    }
}

private extension ByteBuffer {
    /// Appends without copying when this buffer is still empty, as it is for most reads.
    mutating func append(_ bytes: ByteBuffer) {
        if readableBytes == 0 {
            self = bytes
        } else {
            writeImmutableBuffer(bytes)
        }
    }
}

private extension ByteBufferView {
    /// Without the optional whitespace (SP, HTAB) around a field value (RFC 9110 §5.6.3).
    func trimmingWhitespace() -> ByteBufferView {
        let start = firstIndex { $0 != .space && $0 != .tab } ?? endIndex
        let end = lastIndex { $0 != .space && $0 != .tab }.map { $0 + 1 } ?? start
        return self[start..<end]
    }

    /// Field names are case-insensitive; `lowercase` is a lowercase ASCII name.
    func equalsIgnoringCase(_ lowercase: String) -> Bool {
        count == lowercase.utf8.count && zip(self, lowercase.utf8).allSatisfy { $0.asciiLowercased == $1 }
    }

    /// This Content-Length value, or nil when it is invalid. RFC 9110 §8.6: digits, or a
    /// list of the same number repeated, which a recipient may take as that number.
    var contentLength: Int? {
        let numbers = split(separator: .comma, omittingEmptySubsequences: false).map { element -> Int? in
            let digits = element.trimmingWhitespace()
            // 18 digits always fit in an Int.
            guard (1...18).contains(digits.count), digits.allSatisfy(\.isDigit) else { return nil }
            return digits.reduce(0) { $0 * 10 + Int($1 - .zero) }
        }
        guard let first = numbers.first, let length = first, numbers.allSatisfy({ $0 == length }) else { return nil }
        return length
    }
}

private extension UInt8 {
    static let tab = UInt8(ascii: "\t")
    static let lf = UInt8(ascii: "\n")
    static let cr = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let semicolon = UInt8(ascii: ";")
    static let zero = UInt8(ascii: "0")
    static let delete: UInt8 = 0x7F

    var isDigit: Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) }

    var asciiLowercased: UInt8 { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self) ? self + 0x20 : self }

    /// tchar, RFC 9110 §5.6.2: the bytes of a method or a field name.
    var isTokenByte: Bool {
        isDigit || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(asciiLowercased) || "!#$%&'*+-.^_`|~".utf8.contains(self)
    }

    var hexDigitValue: Int? {
        switch self {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(self - .zero)
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(self - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(self - UInt8(ascii: "A")) + 10
        default: nil
        }
    }
}
