/// A subcommand's command line, declared once: its options and operands, each with its help
/// and where its value goes. Parsing, `--help`, the man page and the shell completions all
/// read this one table. Parsing is getopt's, as pen's command line is: flags bundle (`-fd`),
/// a value may be attached (`-x500`, `-fx500`) or the next word, whatever it looks like
/// (`-x -1`); options may come between operands, and `--` ends them.
public struct CommandSpec<Values> {
    public let name: String
    public let abstract: String
    /// What an unset option holds; its help shows the numbers among them as defaults.
    public let defaults: Values
    public let options: [Option<Values>]
    public let operands: [Operand<Values>]

    public init(name: String, abstract: String, defaults: Values, options: [Option<Values>] = [],
                operands: [Operand<Values>] = []) {
        self.name = name
        self.abstract = abstract
        self.defaults = defaults
        self.options = options
        self.operands = operands
    }

    /// The words after the subcommand's name, as values; `.help` for `--help`.
    public func parse(_ words: [String]) throws(UsageError) -> Parsed<Values> {
        var parser = Parser(spec: self, values: defaults)
        return try parser.run(words)
    }

    /// The option given by this name (`-x`, `--json`).
    func option(named name: String) -> Option<Values>? {
        options.first { $0.names.contains(name) }
    }
}

/// What a command line asked for.
public enum Parsed<Values> {
    case values(Values)
    /// `--help`: print `CommandSpec.help`, exit 0.
    case help
}

/// A command line that cannot be taken as given: exit 2 with this one line.
public struct UsageError: Error, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// One option: its names (`-O`, `-o`; `--json`), what its value is called (nil: a flag), its
/// help (nil: accepted but not listed) and where it goes.
public struct Option<Values> {
    public let names: [String]
    public let valueName: String?
    public let help: String?
    let store: Store

    enum Store {
        case flag(WritableKeyPath<Values, Bool>)
        /// A flag that counts its repeats (`-dd`).
        case count(WritableKeyPath<Values, Int>)
        case text(WritableKeyPath<Values, String?>)
        /// An option that must be given (`mergelogs -p`).
        case requiredText(WritableKeyPath<Values, String>)
        /// Each one given, in order (`-O` repeated).
        case texts(WritableKeyPath<Values, [String]>)
        case number(WritableKeyPath<Values, Int>)
        case optionalNumber(WritableKeyPath<Values, Int?>)
    }

    public static func flag(_ names: String..., help: String?, _ path: WritableKeyPath<Values, Bool>) -> Self {
        Self(names: names, valueName: nil, help: help, store: .flag(path))
    }

    public static func count(_ names: String..., help: String?, _ path: WritableKeyPath<Values, Int>) -> Self {
        Self(names: names, valueName: nil, help: help, store: .count(path))
    }

    public static func value(_ names: String..., valueName: String, help: String?,
                             _ path: WritableKeyPath<Values, String?>) -> Self {
        Self(names: names, valueName: valueName, help: help, store: .text(path))
    }

    /// An option that must be given.
    public static func value(_ names: String..., valueName: String, help: String?,
                             _ path: WritableKeyPath<Values, String>) -> Self {
        Self(names: names, valueName: valueName, help: help, store: .requiredText(path))
    }

    public static func value(_ names: String..., valueName: String, help: String?,
                             _ path: WritableKeyPath<Values, [String]>) -> Self {
        Self(names: names, valueName: valueName, help: help, store: .texts(path))
    }

    public static func value(_ names: String..., valueName: String, help: String?,
                             _ path: WritableKeyPath<Values, Int>) -> Self {
        Self(names: names, valueName: valueName, help: help, store: .number(path))
    }

    public static func value(_ names: String..., valueName: String, help: String?,
                             _ path: WritableKeyPath<Values, Int?>) -> Self {
        Self(names: names, valueName: valueName, help: help, store: .optionalNumber(path))
    }

    /// `-x <connections>`, as help and errors name it.
    public var label: String {
        names.joined(separator: ", ") + (valueName.map { " <\($0)>" } ?? "")
    }

    /// The value an unset numeric option has, for its help.
    func defaultText(_ defaults: Values) -> String? {
        if case .number(let path) = store { return "\(defaults[keyPath: path])" }
        return nil
    }
}

/// One operand (a positional word): its name, its help and where it goes.
public struct Operand<Values> {
    public let name: String
    public let help: String
    let store: Store

    enum Store {
        case required(WritableKeyPath<Values, String>)
        case requiredNumber(WritableKeyPath<Values, Int>)
        case optional(WritableKeyPath<Values, String?>)
        /// The operands left, none or more; `atLeastOne` makes none an error.
        case list(WritableKeyPath<Values, [String]>, atLeastOne: Bool)
        /// This word and every one after it, unparsed: another command line (`check`'s
        /// arguments for run) or a penctl command (`ctl`), whose words are not options.
        case passthrough(WritableKeyPath<Values, [String]>)
    }

    public static func required(_ name: String, help: String, _ path: WritableKeyPath<Values, String>) -> Self {
        Self(name: name, help: help, store: .required(path))
    }

    public static func required(_ name: String, help: String, _ path: WritableKeyPath<Values, Int>) -> Self {
        Self(name: name, help: help, store: .requiredNumber(path))
    }

    public static func optional(_ name: String, help: String, _ path: WritableKeyPath<Values, String?>) -> Self {
        Self(name: name, help: help, store: .optional(path))
    }

    public static func list(_ name: String, help: String, atLeastOne: Bool = false,
                            _ path: WritableKeyPath<Values, [String]>) -> Self {
        Self(name: name, help: help, store: .list(path, atLeastOne: atLeastOne))
    }

    public static func passthrough(_ name: String, help: String, _ path: WritableKeyPath<Values, [String]>) -> Self {
        Self(name: name, help: help, store: .passthrough(path))
    }

    /// `<host>`, `[<my_ip>]`, `<server:logfile> ...`, as usage lines show it.
    var usage: String {
        switch store {
        case .required, .requiredNumber: "<\(name)>"
        case .optional: "[<\(name)>]"
        case .list(_, atLeastOne: true): "<\(name)> ..."
        case .list, .passthrough: "[<\(name)> ...]"
        }
    }

    /// `<port>`, as errors name it.
    var label: String {
        if case .list(_, atLeastOne: true) = store { return "<\(name)> ..." }
        return "<\(name)>"
    }
}
