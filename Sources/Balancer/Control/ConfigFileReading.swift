import BalancerCore

/// Config files read from disk: `-F`, `include`. Blocking, so callers keep it off the
/// event loop.
extension ConfigFile {
    /// Reads and parses `path`; the error names the file, the line and the reason.
    public static func read(_ path: String) throws -> [ConfigLine] {
        try parse(try contents(of: path), name: path)
    }

    /// Parses the text of a file, its includes read from disk.
    public static func parse(_ text: String, name: String) throws -> [ConfigLine] {
        try parse(text, name: name, reading: contents(of:))
    }

    /// Expands `include` in lines from `-O` or the control socket, reading from disk.
    public static func expandIncludes(_ lines: [ConfigLine]) throws -> [ConfigLine] {
        try expandIncludes(lines, reading: contents(of:))
    }

    /// The file's text; a regular file only, opened without blocking (a FIFO or a device
    /// named by `include` or `-F` is refused instead of waiting for a writer). A file that
    /// cannot be read is a configuration error (exit 2), as a bad line in it is.
    static func contents(of path: String) throws -> String {
        do {
            return String(decoding: try FileAccess.read(path, maxBytes: maxBytes), as: UTF8.self)
        } catch let error as PenhaError where error.kind == .io {
            throw ConfigurationError(error.description)
        }
    }
}
