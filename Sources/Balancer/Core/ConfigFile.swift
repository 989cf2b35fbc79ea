/// One command and where it came from ("file:line"), so that an error can say where.
public struct ConfigLine: Equatable, Sendable {
    public let command: Command
    public let origin: String?

    public init(_ command: Command, origin: String? = nil) {
        self.command = command
        self.origin = origin
    }
}

extension Array where Element == ConfigLine {
    /// Host names the lines' `server ... address` commands need looked up.
    public var hostsToResolve: Set<String> {
        Set(compactMap { line in
            if case .server(let change) = line.command { return change.address }
            return nil
        })
    }
}

extension Array where Element == ConfigLine {
    /// The file the lines' last `log FILE` names, unless a `no log` follows it: the log the
    /// batch leaves open, if it changes the log at all.
    package var lastLogFile: String? {
        for line in reversed() {
            switch line.command {
            case .file(.log, .set(let path)): return path
            case .file(.log, .off): return nil
            default: continue
            }
        }
        return nil
    }
}

/// pen's config file (`-F`, `include`): one command per line, `#` starts a comment, blank
/// lines are skipped. `include FILE` is replaced by FILE's commands, relative paths from the
/// current directory as pen does, nested at most `maxDepth` deep so a file that includes
/// itself ends with an error.
public enum ConfigFile {
    public static let maxDepth = 8
    /// Larger files are refused rather than read into memory.
    public static let maxBytes = 1 << 20

    /// A file's text by its name: the one I/O parsing needs, for `include`; given by the
    /// caller so that parsing stays pure.
    public typealias Reader = (String) throws -> String

    /// Parses the text of a file named `name`, expanding includes read with `reader`.
    public static func parse(_ text: String, name: String, reading reader: Reader) throws -> [ConfigLine] {
        try parse(text, name: name, depth: 0, reading: reader, report: { throw $0 })
    }

    /// Parses like `parse` but goes on past a bad line or an unreadable include: the good
    /// lines' commands and every error with its file:line, for `penha check`.
    public static func parseAll(_ text: String, name: String, reading reader: Reader) -> (lines: [ConfigLine], errors: [ConfigurationError]) {
        var errors: [ConfigurationError] = []
        // `report` never throws here, so neither does the parse.
        let lines = (try? parse(text, name: name, depth: 0, reading: reader, report: { errors.append($0) })) ?? []
        return (lines, errors)
    }

    /// Expands `include` in lines that came from elsewhere (`-O`, the control socket).
    public static func expandIncludes(_ lines: [ConfigLine], reading reader: Reader) throws -> [ConfigLine] {
        try lines.flatMap { line -> [ConfigLine] in
            guard case .include(let path) = line.command else { return [line] }
            return try include(path, depth: 1, reading: reader, report: { throw $0 })
        }
    }

    /// Where a parse sends an error: `throw` it to stop at the first, or collect it and go on.
    private typealias Report = (ConfigurationError) throws -> Void

    private static func include(_ path: String, depth: Int, reading reader: Reader, report: Report) throws -> [ConfigLine] {
        guard depth < maxDepth else { throw ConfigurationError("\(path): includes nested more than \(maxDepth) deep") }
        return try parse(try reader(path), name: path, depth: depth, reading: reader, report: report)
    }

    private static func parse(_ text: String, name: String, depth: Int, reading reader: Reader, report: Report) throws -> [ConfigLine] {
        var lines: [ConfigLine] = []
        // "\r\n" is one Character in Swift: a file with CRLF line endings splits on it too.
        let rawLines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, raw) in rawLines.enumerated() {
            let origin = "\(name):\(index + 1)"
            let content = raw.prefix { $0 != "#" }
            guard content.contains(where: { $0 != " " && $0 != "\t" && $0 != "\r" }) else { continue }
            let command: Command
            do {
                command = try Command.parse(String(content))
            } catch let error as ConfigurationError {
                try report(error.at(origin))
                continue
            }
            if case .include(let path) = command {
                do {
                    lines += try include(path, depth: depth + 1, reading: reader, report: report)
                } catch let error as ConfigurationError {
                    try report(error)
                }
            } else {
                lines.append(ConfigLine(command, origin: origin))
            }
        }
        return lines
    }
}
