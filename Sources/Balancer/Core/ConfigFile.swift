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
        Set(flatMap(\.command.preparation).compactMap { need in
            if case .resolve(let host) = need { return host }
            return nil
        })
    }
}

extension Command {
    /// The file an `include` line names, whose commands take its place.
    var includedFile: String? {
        for case .include(let path) in preparation { return path }
        return nil
    }
}

extension Array where Element == ConfigLine {
    /// The file the lines' last `log FILE` names, unless a `no log` follows it: the log the
    /// batch leaves open, if it changes the log at all.
    package var lastLogFile: String? {
        for case .log(let path) in reversed().flatMap({ $0.command.preparation.reversed() }) { return path }
        return nil
    }
}

/// pen's config file (`-F`, `include`): one command per line, `#` starts a comment, blank
/// lines are skipped. `include FILE` is replaced by FILE's commands, relative paths from the
/// current directory as pen does. A file that includes itself (directly or through others)
/// is an error at that include; includes nest at most `maxDepth` deep.
///
/// One load (a file with its includes, or one command's) reads each file once and has a
/// budget, `maxLines` lines and `maxLoadBytes` bytes, a file counting again each time it is
/// included: includes that multiply (seven files each including the next eight times make
/// 8^7 copies) end with one error instead of minutes of work and an error per copy.
public enum ConfigFile {
    public static let maxDepth = 8
    /// Larger files are refused rather than read into memory.
    public static let maxBytes = 1 << 20
    /// One load's lines, comments and blank ones included: 10,000 servers take about 20,000.
    public static let maxLines = 100_000
    /// One load's bytes: a bound on its distinct files held in memory and on what its copies scan.
    public static let maxLoadBytes = 16 * maxBytes
    /// `parseAll` stops after this many errors: a mistake repeated is not worth a screenful.
    public static let maxErrors = 100

    /// One load's bounds: the ones above, unless a caller (the fuzz target, so that an
    /// input that spends them stays quick) gives smaller ones.
    public struct Budget: Sendable {
        public var lines: Int
        public var bytes: Int
        public var errors: Int

        public init(lines: Int = maxLines, bytes: Int = maxLoadBytes, errors: Int = maxErrors) {
            self.lines = lines
            self.bytes = bytes
            self.errors = errors
        }
    }

    /// A file's text by its name: the one I/O parsing needs, for `include`; given by the
    /// caller so that parsing stays pure.
    public typealias Reader = (String) throws -> String

    /// Parses the text of a file named `name`, expanding includes read with `reader`.
    public static func parse(_ text: String, name: String, reading reader: @escaping Reader,
                             budget: Budget = Budget()) throws -> [ConfigLine] {
        var load = Load(reader: reader, collecting: false, budget: budget)
        do {
            try load.expand(text, name: name)
        } catch let stop as Load.Stop {
            throw stop.error
        }
        return load.lines
    }

    /// Parses like `parse` but goes on past a bad line or an unreadable include: the good
    /// lines' commands and every error with its file:line, for `penha check`. Past the budget
    /// (its errors too) it stops there, the last error saying why.
    public static func parseAll(_ text: String, name: String, reading reader: @escaping Reader,
                                budget: Budget = Budget()) -> (lines: [ConfigLine], errors: [ConfigurationError]) {
        var load = Load(reader: reader, collecting: true, budget: budget)
        do {
            try load.expand(text, name: name)
        } catch let stop as Load.Stop {
            load.errors.append(stop.error)
        } catch {
            // Only an error of the reader's own type gets here (the file system's are ConfigurationErrors).
            return ([], load.errors)
        }
        return (load.lines, load.errors)
    }

    /// Expands `include` in lines that came from elsewhere (`-O`, the control socket).
    public static func expandIncludes(_ lines: [ConfigLine], reading reader: @escaping Reader,
                                      budget: Budget = Budget()) throws -> [ConfigLine] {
        var load = Load(reader: reader, collecting: false, budget: budget)
        do {
            for line in lines {
                if let path = line.command.includedFile {
                    try load.include(path, at: line.origin)
                } else {
                    load.lines.append(line)
                }
            }
        } catch let stop as Load.Stop {
            throw stop.error
        }
        return load.lines
    }

    /// One load: the lines so far, the files being read (outermost first), the budget spent.
    private struct Load {
        /// Ends the whole load (the budget is spent): no include catches it.
        struct Stop: Error {
            let error: ConfigurationError
        }

        let reader: Reader
        /// `penha check` collects the errors and goes on; otherwise the first one is thrown.
        let collecting: Bool
        let budget: Budget
        var lines: [ConfigLine] = []
        var errors: [ConfigurationError] = []
        /// Each file is read once per load, however often it is included.
        private var texts: [String: String] = [:]
        private var chain: [String] = []
        private var linesRead = 0
        private var bytesRead = 0

        init(reader: @escaping Reader, collecting: Bool, budget: Budget) {
            self.reader = reader
            self.collecting = collecting
            self.budget = budget
        }

        mutating func expand(_ text: String, name: String) throws {
            bytesRead += text.utf8.count
            guard bytesRead <= budget.bytes else {
                throw Stop(error: ConfigurationError("\(name): the configuration with its includes is over \(budget.bytes) "
                    + "bytes, each file counted as often as it is included"))
            }
            chain.append(name)
            defer { chain.removeLast() }
            var rest = text[...]
            var number = 1
            while true {
                // Found in the bytes, as memchr would; a CR before the LF is dropped with it.
                let end = rest.utf8.firstIndex(of: UInt8(ascii: "\n")) ?? rest.endIndex
                var raw = rest[..<end]
                if end < rest.endIndex, raw.utf8.last == UInt8(ascii: "\r") { raw = raw.dropLast() }
                linesRead += 1
                let origin = "\(name):\(number)"
                guard linesRead <= budget.lines else {
                    throw Stop(error: ConfigurationError("the configuration with its includes is over \(budget.lines) lines, "
                        + "each file counted as often as it is included").at(origin))
                }
                try parseLine(raw, origin: origin)
                guard end < rest.endIndex else { return }
                rest = rest[rest.utf8.index(after: end)...]
                number += 1
            }
        }

        private mutating func parseLine(_ raw: Substring, origin: String) throws {
            let content = raw.prefix { $0 != "#" }
            guard content.contains(where: { $0 != " " && $0 != "\t" && $0 != "\r" }) else { return }
            let command: Command
            do {
                command = try Command.parse(String(content))
            } catch let error as ConfigurationError {
                try report(error.at(origin))
                return
            }
            if let path = command.includedFile {
                try include(path, at: origin)
            } else {
                lines.append(ConfigLine(command, origin: origin))
            }
        }

        mutating func include(_ path: String, at origin: String?) throws {
            let text: String
            do {
                guard !chain.contains(path) else {
                    throw ConfigurationError("\(path) includes itself: \((chain + [path]).joined(separator: " -> "))").at(origin)
                }
                guard chain.count < maxDepth else { throw ConfigurationError("\(path): includes nested more than \(maxDepth) deep") }
                text = try texts[path] ?? reader(path)
            } catch let error as ConfigurationError {
                try report(error)
                return
            }
            texts[path] = text
            try expand(text, name: path)
        }

        private mutating func report(_ error: ConfigurationError) throws {
            guard collecting else { throw error }
            guard errors.count < budget.errors else {
                throw Stop(error: ConfigurationError("over \(budget.errors) errors: the rest of the configuration is not checked"))
            }
            errors.append(error)
        }
    }
}
