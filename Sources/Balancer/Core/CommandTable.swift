import VRRPCore

/// One keyword of the command language: how the words after it parse, with their bounds, and
/// the form README's command table documents. `CommandKeyword.table` is the one place that
/// knows the keywords (HAProxy's keyword registration): `Command.parse` looks them up there.
/// The value a parse makes carries the rest (`CommandBehaviour`): its effect, its `write` line.
struct CommandKeyword: Sendable {
    let name: String
    /// The command as README's table shows it (`blacklist [T]`); nil for pen's commands that
    /// penha refuses.
    let usage: String?
    /// The words after the keyword.
    let parse: @Sendable ([String]) throws -> Command
    /// `no KEYWORD ...`, for the keywords that have it.
    let negation: Negation?
    /// Which of its lines a TCP control port refuses without `control_tcp_files`.
    let fileUse: FileUse

    struct Negation: Sendable {
        /// How the `no` form is listed when a `no` line fits none (`acl N`).
        let usage: String
        /// The words after `no KEYWORD`; nil when they do not fit, which the `no` error covers.
        let parse: @Sendable ([String]) throws -> Command?
    }

    /// The lines that have penha write, read or run a file they name. Over a TCP control port
    /// (unauthenticated, like pen's) anyone who reaches it would choose that path, and penha
    /// (root, often) would create or append to any file, read any file or run any program;
    /// so the port refuses these unless `control_tcp_files` was given (`-F`, `-O`, the Unix
    /// socket). `no` forms name no file.
    enum FileUse: Sendable {
        case none
        /// With an argument (`log FILE`); the keyword alone answers.
        case withArgument
        /// Every line (`write` alone writes the `-F` file).
        case always
        /// The lines holding this word (`vrrp ... notify PATH`: a program run on each transition).
        case withWord(String)
        /// `control_tcp_files` itself: a TCP client would otherwise turn it on.
        case switchesFiles

        func isNamed(by words: [String]) -> Bool {
            switch self {
            case .none: return false
            case .withArgument: return !words.isEmpty
            case .always, .switchesFiles: return true
            case .withWord(let word): return words.contains(word)
            }
        }

        func refusal(of name: String) -> ConfigurationError {
            guard case .switchesFiles = self else {
                return ConfigurationError("'\(name)' names a file, refused on a TCP control port (anyone who reaches it may send "
                                          + "commands): use the Unix control socket, or give control_tcp_files in -F or -O")
            }
            return ConfigurationError("'\(name)' is refused on a TCP control port: give it in -F or -O, or on the Unix control socket")
        }
    }

    init(_ name: String, usage: String?, negation: Negation? = nil, fileUse: FileUse = .none,
         parse: @escaping @Sendable ([String]) throws -> Command) {
        self.name = name
        self.usage = usage
        self.parse = parse
        self.negation = negation
        self.fileUse = fileUse
    }

    /// A `no` form that takes no words.
    private static func bareNegation(_ name: String, _ command: Command) -> Negation {
        Negation(usage: name) { $0.isEmpty ? command : nil }
    }

    /// Every keyword. The order is that of the `no` error's list; the lists of flags, settings
    /// and files come from their types, whose `allCases` is also the order `write` saves them in.
    static let table: [CommandKeyword] = Command.Flag.allCases.map { flag in
        CommandKeyword(flag.rawValue, usage: flag.rawValue, negation: bareNegation(flag.rawValue, .flag(flag, false)),
                       fileUse: flag == .controlTCPFiles ? .switchesFiles : .none) {
            try expect($0, atMost: 0, flag.rawValue)
            return .flag(flag, true)
        }
    } + Command.Setting.allCases.map { setting in
        CommandKeyword(setting.rawValue, usage: "\(setting.rawValue) [\(setting.placeholder)]") {
            .setting(setting, try optionalNumber($0, setting.rawValue).map { try setting.check($0) })
        }
    } + Command.FileSetting.allCases.map { file in
        CommandKeyword(file.rawValue, usage: "\(file.rawValue) [FILE]", negation: bareNegation(file.rawValue, .file(file, .off)),
                       fileUse: .withArgument) {
            try expect($0, atMost: 1, file.rawValue)
            return .file(file, $0.first.map(Command.FileChange.set) ?? .show)
        }
    } + Command.Query.allCases.filter { ![.listen, .status, .statusJSON].contains($0) }.map { query in
        CommandKeyword(query.rawValue, usage: query.rawValue) {
            try expect($0, atMost: 0, query.rawValue)
            return .query(query)
        }
    } + [
        CommandKeyword("status", usage: "status [json]") {
            guard $0.isEmpty else {
                guard $0 == ["json"] else { throw ConfigurationError("'status' takes nothing or 'json'") }
                return .query(.statusJSON)
            }
            return .query(.status)
        },
        CommandKeyword("acl", usage: "acl N permit|deny ADDR [MASK]",
                       negation: Negation(usage: "acl N") {
                           guard $0.count == 1 else { throw ConfigurationError("'no acl' needs one list number, 0-9") }
                           return .clearAccessList(try AccessLists.listNumber($0[0]))
                       }) {
            let (list, rule) = try AccessRule.parse(words: $0)
            return .accessRule(list: list, rule)
        },
        CommandKeyword("bgp", usage: "bgp table N vip ADDR[/LEN] [vip ...] [track_servers MIN] [interface IF second_chance PEER ...]",
                       negation: bareNegation("bgp", .bgp(nil))) { words in
            if words.count == 1, let action = BGPOperatorAction(rawValue: words[0]) { return .bgpOperator(action) }
            return .bgp(try BGPSettings.parse(words))
        },
        CommandKeyword("close", usage: "close N") { .close(try connectionNumber($0, "close")) },
        CommandKeyword("connection", usage: "connection N") { .connection(try connectionNumber($0, "connection")) },
        CommandKeyword("exit", usage: "exit") {
            try expect($0, atMost: 0, "exit")
            return .exit
        },
        CommandKeyword("healthcheck", usage: "healthcheck tcp|http ...",
                       negation: Negation(usage: "healthcheck") {
                           guard $0.isEmpty else { throw ConfigurationError("'no healthcheck' takes no argument") }
                           return .healthCheck(nil)
                       }) { .healthCheck(try HealthCheckSettings.parse($0)) },
        CommandKeyword("include", usage: "include FILE", fileUse: .always) { .include(try single($0, or: "'include' needs one file name")) },
        // `listen` alone asks; with an address it is the `-F` file's listen address.
        CommandKeyword("listen", usage: "listen ADDR") {
            guard $0.count == 1 else {
                try expect($0, atMost: 0, "listen")
                return .query(.listen)
            }
            return .listen(try Endpoint.listenAddress($0[0]))
        },
        CommandKeyword("metrics", usage: "metrics ADDR:PORT [acl N]", negation: bareNegation("metrics", .metrics(nil))) {
            .metrics(try MetricsEndpoint.parse($0))
        },
        CommandKeyword("recent", usage: "recent [N]") {
            .recent(try optionalNumber($0, "recent").map { try boundedNumber($0, 0...Limits.seconds, for: "'recent'") })
        },
        CommandKeyword("reload", usage: "reload") {
            try expect($0, atMost: 0, "reload")
            return .reload
        },
        CommandKeyword("server", usage: "server N [address A] [port P] [max M] [hard H] [weight W] [prio P] "
                       + "[blacklist T] [acl L] [healthcheck on|off] [proxy_protocol v1|v2|off]") { .server(try ServerChange.parse($0)) },
        CommandKeyword("source", usage: "source IP") { .source(try single($0, or: "'source' needs one IP address")) },
        CommandKeyword("ssl_ciphers", usage: "ssl_ciphers LIST") {
            .tls(.ciphers(try single($0, or: "'ssl_ciphers' needs one OpenSSL cipher list, its entries joined by ':' (no spaces)")))
        },
        refused("ssl_client_renegotiation_interval", "client-initiated renegotiation is always refused, so it has no interval"),
        refused("ssl_ocsp_response", "OCSP stapling is not supported"),
        CommandKeyword("ssl_option", usage: "ssl_option OPT") {
            let name = try single($0, or: "'ssl_option' needs an option name")
            guard let option = TLSOption(rawValue: name) else {
                throw ConfigurationError("ssl_option '\(name)' is not one of: " + TLSOption.allCases.map(\.rawValue).joined(separator: ", "))
            }
            return .tls(.option(option))
        },
        CommandKeyword("ssl_sni_path", usage: "ssl_sni_path DIR", fileUse: .always) {
            .tls(.sniDirectory(try single($0, or: "'ssl_sni_path' needs a directory")))
        },
        CommandKeyword("sync", usage: "sync listen ADDR:PORT peer ADDR:PORT [peer ...] key FILE",
                       negation: bareNegation("sync", .sync(nil)), fileUse: .always) { .sync(try SyncSettings.parse($0)) },
        CommandKeyword("vrrp", usage: "vrrp interface IF vrid N ...",
                       negation: Negation(usage: "vrrp vrid N", parse: parseRemoveVRRP), fileUse: .withWord("notify")) {
            do {
                return .vrrp(try VRRPInstanceConfiguration.parse($0))
            } catch {
                throw ConfigurationError("vrrp: \(error)")
            }
        },
        CommandKeyword("write", usage: "write [FILE]", fileUse: .always) {
            try expect($0, atMost: 1, "write")
            return .write($0.first)
        },
    ]

    /// What `write` saves, in this order: each kind of setting its part of the configuration.
    static let saved: [any SettingCommand.Type] = [
        ListenAddress.self, SettingChange.self, FlagChange.self, FileCommand.self, SourceAddress.self, ServerChange.self,
        HealthCheckChange.self, AccessRuleChange.self, VRRPInstanceConfiguration.self, TLSCommand.self, MetricsChange.self,
        SyncCommand.self, BGPChange.self,
    ]

    /// The table by keyword; a keyword given twice is caught by a test, not at start.
    static let named = Dictionary(table.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })

    /// What the `no` error lists.
    static let negationUsages = table.compactMap(\.negation?.usage)

    /// pen's commands that penha refuses, with the reason.
    private static func refused(_ name: String, _ reason: String) -> CommandKeyword {
        CommandKeyword(name, usage: nil) { _ in throw ConfigurationError("'\(name)' is refused: \(reason)") }
    }

    /// The words after `no vrrp`: `vrid N [interface IF]`.
    private static func parseRemoveVRRP(_ words: [String]) throws -> Command {
        let usage = ConfigurationError("'no vrrp' needs 'vrid N' (1-255) and optionally 'interface IF'")
        guard words.count == 2 || words.count == 4, words[0] == "vrid", let vrid = UInt8(words[1]), vrid > 0 else { throw usage }
        guard words.count == 4 else { return .removeVRRP(vrid: vrid, interface: nil) }
        guard words[2] == "interface" else { throw usage }
        return .removeVRRP(vrid: vrid, interface: words[3])
    }

    private static func expect(_ arguments: [String], atMost count: Int, _ name: String) throws {
        guard arguments.count > count else { return }
        switch count {
        case 0: throw ConfigurationError("'\(name)' takes no argument")
        default: throw ConfigurationError("'\(name)' takes at most one argument")
        }
    }

    private static func single(_ arguments: [String], or message: String) throws -> String {
        guard arguments.count == 1 else { throw ConfigurationError(message) }
        return arguments[0]
    }

    private static func optionalNumber(_ arguments: [String], _ name: String) throws -> Int? {
        guard arguments.count <= 1 else { throw ConfigurationError("'\(name)' takes at most one number") }
        guard let text = arguments.first else { return nil }
        return try nonNegativeNumber(text, for: "'\(name)'")
    }

    private static func connectionNumber(_ arguments: [String], _ name: String) throws -> Int {
        guard arguments.count == 1, let number = try optionalNumber(arguments, name) else {
            throw ConfigurationError("'\(name)' needs one connection number")
        }
        return number
    }
}
