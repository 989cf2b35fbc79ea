/// One pass over the words, getopt's way (see `CommandSpec`). The errors are worded as
/// swift-argument-parser's were, which penha used before.
struct Parser<Values> {
    let spec: CommandSpec<Values>
    var values: Values
    /// The operand the next operand word is for.
    private var operandIndex = 0
    private var givenOptions = Set<String>()

    init(spec: CommandSpec<Values>, values: Values) {
        self.spec = spec
        self.values = values
    }

    mutating func run(_ words: [String]) throws(UsageError) -> Parsed<Values> {
        var index = words.startIndex
        var optionsEnded = false
        while index < words.endIndex {
            let word = words[index]
            index += 1
            if !optionsEnded && word == "--" {
                optionsEnded = true
                continue
            }
            if !optionsEnded && !startsPassthrough(word) {
                if word == "--help" { return .help }
                if word.hasPrefix("--") {
                    try takeLong(word, next: &index, in: words)
                    continue
                }
                if word.count >= 2 && word.hasPrefix("-") {
                    try takeCluster(word, next: &index, in: words)
                    continue
                }
            }
            if let operand = currentOperand, case .passthrough(let path) = operand.store {
                values[keyPath: path] = Array(words[(index - 1)...])
                operandIndex += 1
                break
            }
            try takeOperand(word)
        }
        try checkComplete()
        return .values(values)
    }

    private var currentOperand: Operand<Values>? {
        spec.operands.indices.contains(operandIndex) ? spec.operands[operandIndex] : nil
    }

    /// A passthrough operand begins at the first word that is not one of this command's own
    /// options: `check -x500 80 h` hands `-x500` on to run, `ctl -C SOCKET servers` takes `-C`.
    private func startsPassthrough(_ word: String) -> Bool {
        guard let operand = currentOperand, case .passthrough = operand.store else { return false }
        if word == "--help" { return false }
        let name = word.hasPrefix("--") ? String(word.prefix { $0 != "=" }) : String(word.prefix(2))
        return !word.hasPrefix("-") || spec.option(named: name) == nil
    }

    /// `--json`, `--name value`, `--name=value`.
    private mutating func takeLong(_ word: String, next index: inout Int, in words: [String]) throws(UsageError) {
        let name = String(word.prefix { $0 != "=" })
        guard let option = spec.option(named: name) else { throw UsageError("Unknown option '\(name)'") }
        if option.valueName == nil {
            guard name == word else { throw UsageError("The option '\(name)' takes no value") }
            try store(nil, for: option)
        } else if name != word {
            try store(String(word.dropFirst(name.count + 1)), for: option)
        } else {
            try store(try nextValue(for: option, next: &index, in: words), for: option)
        }
    }

    /// `-f`, `-fd`, `-x500`, `-fx 500`: each flag letter on its own; a value letter takes
    /// the rest of the word, or the next word when it ends the word.
    private mutating func takeCluster(_ word: String, next index: inout Int, in words: [String]) throws(UsageError) {
        var rest = word.dropFirst()
        while let letter = rest.first {
            rest = rest.dropFirst()
            guard let option = spec.option(named: "-\(letter)") else { throw UsageError("Unknown option '-\(letter)'") }
            if option.valueName == nil {
                try store(nil, for: option)
            } else {
                try store(rest.isEmpty ? try nextValue(for: option, next: &index, in: words) : String(rest), for: option)
                return
            }
        }
    }

    /// The word after an option is its value, whatever it looks like (`-x -1`, `-O -fd`).
    private func nextValue(for option: Option<Values>, next index: inout Int, in words: [String]) throws(UsageError) -> String {
        guard index < words.endIndex else { throw UsageError("Missing value for '\(option.label)'") }
        index += 1
        return words[index - 1]
    }

    private mutating func store(_ value: String?, for option: Option<Values>) throws(UsageError) {
        givenOptions.insert(option.names[0])
        switch option.store {
        case .flag(let path): values[keyPath: path] = true
        case .count(let path): values[keyPath: path] += 1
        case .text(let path): values[keyPath: path] = value
        case .requiredText(let path): values[keyPath: path] = value ?? ""
        case .texts(let path): values[keyPath: path].append(value ?? "")
        case .number(let path): values[keyPath: path] = try number(value, for: "'\(option.label)'")
        case .optionalNumber(let path): values[keyPath: path] = try number(value, for: "'\(option.label)'")
        }
    }

    private mutating func takeOperand(_ word: String) throws(UsageError) {
        guard let operand = currentOperand else { throw UsageError("Unexpected argument '\(word)'") }
        switch operand.store {
        case .required(let path):
            values[keyPath: path] = word
            operandIndex += 1
        case .requiredNumber(let path):
            values[keyPath: path] = try number(word, for: "'\(operand.label)'")
            operandIndex += 1
        case .optional(let path):
            values[keyPath: path] = word
            operandIndex += 1
        case .list(let path, _), .passthrough(let path):
            // A list takes every operand left, so it stays the current one.
            values[keyPath: path].append(word)
        }
    }

    /// Required options and operands that were not given.
    private func checkComplete() throws(UsageError) {
        for option in spec.options {
            if case .requiredText = option.store, !givenOptions.contains(option.names[0]) {
                throw UsageError("Missing expected argument '\(option.label)'")
            }
        }
        for operand in spec.operands.dropFirst(operandIndex) {
            switch operand.store {
            case .required, .requiredNumber:
                throw UsageError("Missing expected argument '\(operand.label)'")
            case .list(let path, atLeastOne: true) where values[keyPath: path].isEmpty:
                throw UsageError("Missing expected argument '\(operand.label)'")
            case .optional, .list, .passthrough:
                continue
            }
        }
    }

    private func number(_ text: String?, for label: String) throws(UsageError) -> Int {
        guard let text, let value = Int(text) else { throw UsageError("The value '\(text ?? "")' is invalid for \(label)") }
        return value
    }
}
