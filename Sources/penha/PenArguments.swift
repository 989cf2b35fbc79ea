/// pen's getopt takes a value attached to its option (`-x500`, `-c4096`) and flags bundled
/// (`-fd`), even both at once (`-fx500`); swift-argument-parser takes neither attached
/// values nor a value after bundled flags. This pass, run before it parses, writes such a
/// word as separate words (`-f -x 500`), as getopt reads it.
enum PenArguments {
    /// `run`'s options that take a value, as pen's getopt string has them (`x:`).
    static let valueLetters = Set("bceBtxTqSOoCFlpwjuEKGALmi")
    /// `run`'s flags.
    static let flagLetters = Set("rhNWHUsfdPQXRZa")

    /// The arguments after the program name, with `run`'s option words split; `ctl` and
    /// `status` words pass unchanged (a penctl command is not options).
    static func split(_ arguments: [String]) -> [String] {
        if let first = arguments.first, first == "ctl" || first == "status" { return arguments }
        var result: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let word = arguments[index]
            index += 1
            if word == "--" {
                result += arguments[(index - 1)...]
                break
            }
            let (words, takesNext) = splitWord(word)
            result += words
            // The value of `-x -1` or `-O -fd` is a value, not options to split.
            if takesNext, index < arguments.endIndex {
                result.append(arguments[index])
                index += 1
            }
        }
        return result
    }

    /// One word as getopt reads it: each flag letter on its own, a value letter with the
    /// rest of the word as its value. Unchanged when it is not an option cluster (`-1`,
    /// `--help`, an unknown letter, which the parser then names). `takesNext`: the last
    /// letter wants the next word as its value.
    static func splitWord(_ word: String) -> (words: [String], takesNext: Bool) {
        guard word.count >= 2, word.hasPrefix("-"), !word.hasPrefix("--") else { return ([word], false) }
        var words: [String] = []
        var rest = word.dropFirst()
        while let letter = rest.first {
            rest = rest.dropFirst()
            if flagLetters.contains(letter) {
                words.append("-\(letter)")
            } else if valueLetters.contains(letter) {
                words.append("-\(letter)")
                if rest.isEmpty { return (words, true) }
                return (words + [String(rest)], false)
            } else {
                return ([word], false)
            }
        }
        return (words, false)
    }
}
