#if canImport(Glibc)
import Glibc
#endif

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
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
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

    /// The file's text; a blocking read, so callers keep it off the event loop.
    static func contents(of path: String) throws -> String {
        guard let file = fopen(path, "r") else {
            throw ConfigurationError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= maxBytes {
            let count = fread(&chunk, 1, chunk.count, file)
            if count == 0 { break }
            bytes += chunk.prefix(count)
        }
        guard ferror(file) == 0 else { throw ConfigurationError("cannot read \(path): \(String(cString: strerror(errno)))") }
        guard bytes.count <= maxBytes else { throw ConfigurationError("\(path) is larger than \(maxBytes) bytes") }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `contents` to `path` through a temporary file and a rename, so a reader never
    /// sees half a file. Blocking, like `contents(of:)`.
    public static func write(_ contents: String, to path: String) throws {
        let temporary = path + ".tmp"
        guard let file = fopen(temporary, "w") else {
            throw ConfigurationError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let written = fputs(contents, file) >= 0
        guard fclose(file) == 0, written, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ConfigurationError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
