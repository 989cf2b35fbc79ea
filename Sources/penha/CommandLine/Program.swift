/// A subcommand as help, the man page and completions show it: its `CommandSpec` without the
/// values' type, listed options only.
public struct CommandOutline: Sendable {
    public let name: String
    public let abstract: String
    public let options: [Entry]
    public let operands: [Entry]

    /// An option (`names`, `valueName`) or an operand (`names` empty) with its help.
    public struct Entry: Sendable {
        public let names: [String]
        public let valueName: String?
        /// With the default, as `(default: 30)`.
        public let help: String
        /// Given more than once means more (`-d`, `-O`), not the last one wins.
        public let repeats: Bool
        /// Must be given.
        public let required: Bool
        /// `-x <connections>` or `<listen>`: the help's first column.
        public let label: String
        /// `[-x <connections>]`, `<host>`, `[<servers> ...]`: in the usage line.
        public let usage: String
    }
}

extension CommandSpec {
    public var outline: CommandOutline {
        let options = self.options.compactMap { option -> CommandOutline.Entry? in
            guard let help = option.help else { return nil }
            let repeats: Bool
            let required: Bool
            switch option.store {
            case .count, .texts: (repeats, required) = (true, false)
            case .requiredText: (repeats, required) = (false, true)
            case .flag, .text, .number, .optionalNumber: (repeats, required) = (false, false)
            }
            let first = option.names[0] + (option.valueName.map { " <\($0)>" } ?? "")
            return .init(names: option.names, valueName: option.valueName,
                         help: help + (option.defaultText(defaults).map { " (default: \($0))" } ?? ""),
                         repeats: repeats, required: required, label: option.label,
                         usage: required ? first : "[\(first)]")
        }
        let operands = self.operands.map { operand -> CommandOutline.Entry in
            let (repeats, required): (Bool, Bool) = switch operand.store {
            case .required, .requiredNumber: (false, true)
            case .optional: (false, false)
            case .list(_, let atLeastOne): (true, atLeastOne)
            case .passthrough: (true, false)
            }
            return .init(names: [], valueName: operand.name, help: operand.help, repeats: repeats, required: required,
                         label: "<\(operand.name)>", usage: operand.usage)
        }
        return CommandOutline(name: name, abstract: abstract, options: options, operands: operands)
    }
}

/// The program: its subcommands, the first of which runs when none is named, and what the
/// program itself answers (`--help`, `--version`, completions, the man page).
public struct Program: Sendable {
    public let name: String
    public let abstract: String
    public let version: String
    /// The first is the default.
    public let commands: [CommandOutline]

    public init(name: String, abstract: String, version: String, commands: [CommandOutline]) {
        self.name = name
        self.abstract = abstract
        self.version = version
        self.commands = commands
    }

    public enum Request: Equatable, Sendable {
        /// A subcommand with the words after its name (all the words for the default one).
        case command(String, arguments: [String])
        case help
        case version
        case completionScript(Shell)
        /// The man page's part made from the table (mdoc, from `.Sh NAME` on).
        case manual
    }

    public enum Shell: String, CaseIterable, Sendable {
        case bash, zsh
    }

    private static let completionOption = "--generate-completion-script"

    /// What the command line asks for. A word that names no subcommand is the default one's:
    /// `penha -f 80 host` is `penha run -f 80 host`, as pen's command line. The program's own
    /// requests take no more words: one after them is refused, not dropped.
    public func request(_ words: [String]) throws(UsageError) -> Request {
        guard let first = words.first else { return .command(commands[0].name, arguments: []) }
        if commands.contains(where: { $0.name == first }) { return .command(first, arguments: Array(words.dropFirst())) }
        let request: Request
        var rest = words.dropFirst()
        switch first {
        case "--help": request = .help
        case "--version": request = .version
        case "--generate-manual": request = .manual
        case Self.completionOption:
            guard let shell = rest.popFirst() else { throw UsageError("Missing value for '\(Self.completionOption) <shell>'") }
            request = .completionScript(try Self.shell(shell))
        default:
            guard first.hasPrefix(Self.completionOption + "=") else { return .command(commands[0].name, arguments: words) }
            request = .completionScript(try Self.shell(String(first.dropFirst(Self.completionOption.count + 1))))
        }
        if let extra = rest.first { throw UsageError("Unexpected argument '\(extra)'") }
        return request
    }

    private static func shell(_ name: String) throws(UsageError) -> Shell {
        guard let shell = Shell(rawValue: name) else {
            throw UsageError("The value '\(name)' is invalid for '\(completionOption) <shell>'")
        }
        return shell
    }

    /// `penha --help`.
    public var help: String {
        let entries = commands.enumerated().map { index, command in
            (index == 0 ? "\(command.name) (default)" : command.name, command.abstract)
        }
        return HelpText.paragraph("OVERVIEW: \(abstract)") + "\n\n"
            + "USAGE: \(name) <subcommand>\n\n"
            + "OPTIONS:\n" + HelpText.table([("--version", "Show the version."), ("--help", "Show help information.")]) + "\n\n"
            + "SUBCOMMANDS:\n" + HelpText.table(entries) + "\n\n"
            + "  See '\(name) <subcommand> --help' for detailed help.\n"
    }

    /// `penha SUBCOMMAND --help`.
    public func help(for command: CommandOutline) -> String {
        var text = HelpText.paragraph("OVERVIEW: \(command.abstract)") + "\n\n" + HelpText.paragraph(usage(of: command), indent: 2) + "\n\n"
        if !command.operands.isEmpty {
            text += "ARGUMENTS:\n" + HelpText.table(command.operands.map { ($0.label, $0.help) }) + "\n\n"
        }
        let options = command.options.map { ($0.label, $0.help) } + [("--help", "Show help information.")]
        return text + "OPTIONS:\n" + HelpText.table(options) + "\n"
    }

    /// `USAGE: penha logd [-f] [-l <file>] ... <[host:]port>`, with `[<options>]` in place of
    /// the options when they would take more than two lines.
    func usage(of command: CommandOutline) -> String {
        let start = "USAGE: \(name) \(command.name)"
        let operands = command.operands.map(\.usage)
        let full = ([start] + command.options.map(\.usage) + operands).joined(separator: " ")
        return full.count <= 2 * HelpText.width ? full : ([start, "[<options>]"] + operands).joined(separator: " ")
    }
}

/// Help's layout: lines within 80 columns (79 characters), a table's text from column 26.
enum HelpText {
    static let width = 79
    static let textColumn = 26

    /// Text broken into lines of at most `width` columns, the later ones indented by `indent`;
    /// the first starts at `firstColumn`.
    static func paragraph(_ text: String, indent: Int = 0, firstColumn: Int = 0) -> String {
        var lines: [[Substring]] = [[]]
        var column = firstColumn
        for word in text.split(separator: " ") {
            let lineIsEmpty = lines[lines.count - 1].isEmpty
            if !lineIsEmpty && column + 1 + word.count > width {
                lines.append([word])
                column = indent + word.count
            } else {
                lines[lines.count - 1].append(word)
                column += (lineIsEmpty ? 0 : 1) + word.count
            }
        }
        return lines.enumerated().map { index, words in
            (index == 0 ? "" : String(repeating: " ", count: indent)) + words.joined(separator: " ")
        }.joined(separator: "\n")
    }

    /// Two columns: `  LABEL` then its text from `textColumn` (on the next line when the label
    /// reaches it).
    static func table(_ rows: [(label: String, text: String)]) -> String {
        rows.map { label, text in
            let start = "  " + label
            let body = paragraph(text, indent: textColumn, firstColumn: textColumn)
            if start.count + 2 > textColumn {
                return start + "\n" + String(repeating: " ", count: textColumn) + body
            }
            return start + String(repeating: " ", count: textColumn - start.count) + body
        }.joined(separator: "\n")
    }
}
