/// The man page's sections made from the table (mdoc(7), from `.Sh NAME` to the
/// subcommands); deploy/manual.sh adds the header and README's sections.
extension Program {
    public var manual: String {
        var lines = [".Sh NAME", ".Nm \(name)", ".Nd \(Self.text(abstract))", ".Sh SYNOPSIS"]
        for (index, command) in commands.enumerated() {
            lines += [".Nm", index == 0 ? ".Op Cm \(command.name)" : ".Cm \(command.name)"]
            lines += command.options.map { option in
                let usage = ".Fl \(Self.flag(option.names[0]))" + (option.valueName.map { " Ar \(Self.argument($0))" } ?? "")
                return option.required ? usage : ".Op \(usage.dropFirst())"
            }
            lines += command.operands.map { operand in
                let usage = "Ar \(Self.argument(operand.valueName ?? ""))" + (operand.repeats ? " No ..." : "")
                return operand.required ? ".\(usage)" : ".Op \(usage)"
            }
        }
        lines += [".Nm", ".Fl -help", ".Nm", ".Fl -version", ".Sh DESCRIPTION", Self.text(abstract),
                  "With no subcommand named,", ".Nm", "runs", ".Cm \(commands[0].name) ."]
        lines += [".Sh SUBCOMMANDS", ".Bl -tag -width Ds"]
        for command in commands {
            lines += [".It Cm \(command.name)", Self.text(command.abstract)]
            let entries = command.operands + command.options
            guard !entries.isEmpty else { continue }
            lines.append(".Bl -tag -width Ds")
            for entry in entries {
                let value = entry.valueName.map { " Ar \(Self.argument($0))" } ?? ""
                let names = entry.names.map { "Fl \(Self.flag($0))" }.joined(separator: " , ")
                lines += [".It " + (entry.names.isEmpty ? String(value.dropFirst()) : names + value), Self.text(entry.help)]
            }
            lines.append(".El")
        }
        lines += [".El", ".Pp", "Each subcommand takes", ".Fl -help", "for its help."]
        return lines.joined(separator: "\n") + "\n"
    }

    /// A text line roff takes as text: `\` escaped, a leading `.` or `'` guarded.
    private static func text(_ line: String) -> String {
        let escaped = line.split(separator: "\\", omittingEmptySubsequences: false).joined(separator: "\\e")
        return escaped.hasPrefix(".") || escaped.hasPrefix("'") ? "\\&" + escaped : escaped
    }

    /// `-x` as `.Fl`'s argument: without its dash; `--json` keeps one.
    private static func flag(_ name: String) -> String {
        String(name.dropFirst())
    }

    /// A value name as one macro argument (quoted when it has a space).
    private static func argument(_ name: String) -> String {
        name.contains(" ") ? "\"\(name)\"" : name
    }
}
