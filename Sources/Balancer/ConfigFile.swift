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
    var lastLogFile: String? {
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
    static let maxDepth = 8
    /// Larger files are refused rather than read into memory.
    static let maxBytes = 1 << 20

    /// Reads and parses `path`; the error names the file, the line and the reason.
    public static func read(_ path: String) throws -> [ConfigLine] {
        try read(path, depth: 0)
    }

    /// Parses the text of a file, expanding includes with `read`.
    public static func parse(_ text: String, name: String) throws -> [ConfigLine] {
        try parse(text, name: name, depth: 0)
    }

    /// Expands `include` in lines that came from elsewhere (`-O`, the control socket).
    public static func expandIncludes(_ lines: [ConfigLine]) throws -> [ConfigLine] {
        try lines.flatMap { line -> [ConfigLine] in
            guard case .include(let path) = line.command else { return [line] }
            return try read(path, depth: 1)
        }
    }

    private static func read(_ path: String, depth: Int) throws -> [ConfigLine] {
        guard depth < maxDepth else { throw ConfigurationError("\(path): includes nested more than \(maxDepth) deep") }
        return try parse(try contents(of: path), name: path, depth: depth)
    }

    private static func parse(_ text: String, name: String, depth: Int) throws -> [ConfigLine] {
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
                throw error.at(origin)
            }
            if case .include(let path) = command {
                lines += try read(path, depth: depth + 1)
            } else {
                lines.append(ConfigLine(command, origin: origin))
            }
        }
        return lines
    }

    /// The file's text; a regular file only, opened without blocking (a FIFO or a device
    /// named by `include` or `-F` is refused instead of waiting for a writer). Callers still
    /// keep it off the event loop: the read itself is disk I/O.
    /// A file that cannot be read is a configuration error (exit 2), as a bad line in it is.
    static func contents(of path: String) throws -> String {
        do {
            return String(decoding: try FileAccess.read(path, maxBytes: maxBytes), as: UTF8.self)
        } catch let error as FileError {
            throw ConfigurationError(error.description)
        }
    }
}
