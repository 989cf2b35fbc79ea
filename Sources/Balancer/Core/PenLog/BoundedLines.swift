/// Splits a byte stream (a file, stdin) into lines of at most `limit` bytes, so that a
/// reader's memory is bounded whatever it is fed: a longer line is reported once as
/// `.overlong` and its bytes are dropped up to its newline. Pure: bytes in, lines out.
public struct BoundedLines {
    public enum Line: Equatable, Sendable {
        /// Without its newline.
        case line([UInt8])
        case overlong
    }

    public let limit: Int
    private var pending: [UInt8] = []
    /// Inside a line already reported as overlong: drop up to its newline.
    private var skipping = false

    public init(limit: Int = PenLogLine.maxLineBytes) {
        self.limit = limit
    }

    /// The lines that `chunk` completes.
    public mutating func feed(_ chunk: some Collection<UInt8>) -> [Line] {
        var lines: [Line] = []
        var rest = chunk[...]
        while !rest.isEmpty {
            let newline = rest.firstIndex(of: UInt8(ascii: "\n"))
            let piece = rest[..<(newline ?? rest.endIndex)]
            if !skipping {
                if pending.count + piece.count > limit {
                    lines.append(.overlong)
                    pending = []
                    skipping = true
                } else {
                    pending += piece
                }
            }
            guard let newline else { break }
            if !skipping { lines.append(.line(pending)) }
            pending = []
            skipping = false
            rest = rest[rest.index(after: newline)...]
        }
        return lines
    }

    /// At the end of the stream: a last line without a newline, if there is one.
    public mutating func finish() -> Line? {
        defer { pending = []; skipping = false }
        return skipping || pending.isEmpty ? nil : .line(pending)
    }
}
