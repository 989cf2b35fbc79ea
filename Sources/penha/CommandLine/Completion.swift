/// Shell completion of the subcommands and their options, from the same table as the help.
extension Program {
    public func completionScript(_ shell: Shell) -> String {
        switch shell {
        case .bash: bashCompletion
        case .zsh: zshCompletion
        }
    }

    /// Subcommands as the first word, then the options of the subcommand named (or the
    /// default one's); an option's value and the operands complete as file names.
    private var bashCompletion: String {
        let function = "_\(name)"
        let names = commands.map(\.name).joined(separator: " ")
        var lines = [
            "# bash completion for \(name): subcommands, their options, and file names.",
            "\(function)() {",
            "    local current=${COMP_WORDS[COMP_CWORD]} previous=${COMP_WORDS[COMP_CWORD-1]} command=\(commands[0].name)",
            "    local options values",
            "    case ${COMP_WORDS[1]} in",
            "        \(commands.map(\.name).joined(separator: "|"))) [ \"$COMP_CWORD\" -gt 1 ] && command=${COMP_WORDS[1]} ;;",
            "    esac",
            "    case $command in",
        ]
        for command in commands {
            let options = command.options.flatMap(\.names) + ["--help"]
            let values = command.options.filter { $0.valueName != nil }.flatMap(\.names)
            lines.append("        \(command.name)) options='\(options.joined(separator: " "))' values='\(values.joined(separator: " "))' ;;")
        }
        lines += [
            "    esac",
            // A line a completion: a file name with a space stays one word, and one with a `*`
            // is not taken as a pattern (an unquoted `$(compgen ...)` is split and globbed).
            "    if [[ \" $values \" == *\" $previous \"* ]]; then",
            "        mapfile -t COMPREPLY < <(compgen -f -- \"$current\")",
            "    elif [[ $current == -* ]]; then",
            "        mapfile -t COMPREPLY < <(compgen -W \"$options\" -- \"$current\")",
            "    elif [ \"$COMP_CWORD\" -eq 1 ]; then",
            "        mapfile -t COMPREPLY < <(compgen -W '\(names)' -- \"$current\"; compgen -f -- \"$current\")",
            "    else",
            "        mapfile -t COMPREPLY < <(compgen -f -- \"$current\")",
            "    fi",
            "}",
            "complete -o filenames -F \(function) \(name)",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// `_arguments` per subcommand, with each option's help; the default subcommand's options
    /// are offered with the subcommands as the first word.
    private var zshCompletion: String {
        let function = "_\(name)"
        var lines = [
            "#compdef \(name)",
            "# zsh completion for \(name): subcommands, their options with their help, and file names.",
            "\(function)() {",
            "    local -a subcommands=(",
        ]
        // _describe splits an item at its first colon only: the text keeps its own.
        lines += commands.map { "        \(Self.shellQuoted("\($0.name):\($0.abstract)"))" }
        lines += [
            "    )",
            "    local command=\(commands[0].name)",
            "    if (( CURRENT > 2 )) && (( ${subcommands[(I)${words[2]}:*]} )); then",
            "        command=${words[2]}",
            "        shift words",
            "        (( CURRENT-- ))",
            "    elif (( CURRENT == 2 )) && [[ ${words[2]} != -* ]]; then",
            "        _describe -t subcommands '\(name) subcommand' subcommands",
            "    fi",
            "    case $command in",
        ]
        for command in commands {
            let specifications = command.options.flatMap { option in
                option.names.map { optionName in
                    let value = option.valueName.map { ":\(Self.zshEscaped($0)):" + Self.zshAction($0) } ?? ""
                    let attached = option.valueName != nil && !optionName.hasPrefix("--") ? "+" : ""
                    return (option.repeats ? "*" : "") + optionName + attached + "[\(Self.zshEscaped(option.help))]" + value
                }
            } + ["--help[Show help information.]", "*:argument:_files"]
            lines.append("        \(command.name)) _arguments -s -S \\")
            lines += specifications.map { "            \(Self.shellQuoted($0))" + ($0 == specifications.last ? " ;;" : " \\") }
        }
        lines += ["    esac", "}", "\(function) \"$@\""]
        return lines.joined(separator: "\n") + "\n"
    }

    /// How a value completes, by what its name says it is: files, directories, or nothing (a
    /// number, a host) with its name shown. (Compared word by word: String's `contains` of a
    /// string is _StringProcessing's, whose regex engine this alone would link, 1.3 MB.)
    private static func zshAction(_ valueName: String) -> String {
        let words = valueName.split(separator: "|")
        if words.contains("directory") { return "_files -/" }
        return words.contains { $0.hasSuffix("file") || $0 == "socket" || $0 == "penlog" } ? "_files" : ""
    }

    /// Text inside an `_arguments` specification or a `_describe` item: its brackets and colons literal.
    private static func zshEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "\\[]:".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    /// One shell word, in single quotes.
    static func shellQuoted(_ text: String) -> String {
        "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}
