import VRRPCore

/// pen's command language (penctl): one parser for the config file, `-O` and the control
/// socket. Each line becomes a typed `Command`; anything malformed is an error that says
/// what is wrong instead of being ignored as pen does.
public enum Command: Equatable, Sendable {
    /// The pen algorithm flags: `roundrobin`, `hash`, `weight`, `prio`, `stubborn`, `tcp_nodelay`
    /// and their `no ...` forms.
    case flag(Flag, Bool)
    /// Commands that set a number or, without one, ask for it: `blacklist`, `clients_max`, ...
    case setting(Setting, Int?)
    /// `source IP`: the local address outgoing connections are made from.
    case source(String)
    /// `server N [address A] [port P] ...`: changes server N, or adds it as the next one.
    case server(ServerChange)
    /// `log [FILE]`, `no log`, `web_stats [FILE]`, `no web_stats`.
    case file(FileSetting, FileChange)
    /// Questions with no argument: `servers`, `status`, `mode`, `listen`, `pid`, `control`.
    case query(Query)
    /// `recent [N]`: clients seen in the last N seconds (300 without N).
    case recent(Int?)
    /// `connection N`: one connection's client, server and age.
    case connection(Int)
    /// `close N`: closes connection N.
    case close(Int)
    /// `include FILE`: the commands of another file.
    case include(String)
    /// `write [FILE]`: the configuration as commands, to FILE or the `-F` file.
    case write(String?)
    /// `exit`: stops penha; only with `-X`.
    case exit
    /// `vrrp interface IF vrid N ...`: one VRRP instance; at runtime the same vrid on the same
    /// interface changes that instance.
    case vrrp(VRRPInstanceConfiguration)
    /// `no vrrp vrid N [interface IF]`: the instance resigns and is removed.
    case removeVRRP(vrid: UInt8, interface: String?)
    /// `acl N permit|deny ADDRESS ...`: appends a rule to access list N.
    case accessRule(list: Int, AccessRule)
    /// `no acl N`: empties access list N, which then permits everyone.
    case clearAccessList(Int)
    /// `ssl_ciphers LIST`, `ssl_option NAME`, `ssl_sni_path DIR`.
    case tls(TLSCommand)
    /// `healthcheck tcp|http PATH ...`: how servers are checked; nil is `no healthcheck`.
    case healthCheck(HealthCheckSettings?)
    /// `metrics ADDRESS:PORT [acl N]`: serve Prometheus' `GET /metrics` there; `no metrics` (nil): do not.
    case metrics(MetricsEndpoint?)
    /// `listen ADDRESS`: where clients connect, for a `-F` file that carries it (bound at start).
    case listen(ListenAddress)

    public enum Flag: String, CaseIterable, Sendable {
        case roundRobin = "roundrobin"
        case hash
        case weight
        case priority = "prio"
        case stubborn
        case tcpNoDelay = "tcp_nodelay"
        /// pen's HTTP mode (`-H`): add X-Forwarded-For to requests.
        case http
    }

    public enum Setting: String, CaseIterable, Sendable {
        case blacklist
        case clientsMax = "clients_max"
        case connectionsMax = "conn_max"
        case timeout
        case tracking
        case idleTimeout = "idle_timeout"
        case debug
        /// The access list clients are checked against (pen's default: 0).
        case clientACL = "client_acl"
        /// The access list control connections are checked against (pen's default: 0).
        case controlACL = "control_acl"
        /// The TCP engine's threads; 0: one per core. Read at start.
        case threads

        /// The values the setting takes; a larger one is refused where it is parsed, before
        /// it can reach an allocation or a time calculation.
        public var range: ClosedRange<Int> {
            switch self {
            case .blacklist, .tracking, .idleTimeout: return 0...Limits.seconds
            case .clientsMax: return 1...Limits.clients
            case .connectionsMax: return 0...Limits.connections
            case .timeout: return 1...Limits.connectTimeout
            case .debug: return 0...Limits.debugLevel
            case .clientACL, .controlACL: return 0...(AccessLists.count - 1)
            case .threads: return 0...Limits.threads
            }
        }

        /// `value`, if it is within `range`; `name` is how the user gave it (`-c`, `clients_max`).
        public func check(_ value: Int, as name: String? = nil) throws -> Int {
            let name = name ?? rawValue
            switch self {
            case .clientACL, .controlACL:
                guard range.contains(value) else {
                    throw ConfigurationError("\(name) must name an access list, 0-9, not \(value)")
                }
                return value
            default:
                return try boundedNumber(value, range, for: name)
            }
        }
    }

    public enum FileSetting: String, CaseIterable, Sendable {
        case log
        case webStats = "web_stats"
    }

    public enum FileChange: Equatable, Sendable {
        /// Without an argument: which file, if any.
        case show
        case set(String)
        /// The `no` form.
        case off
    }

    public enum Query: String, CaseIterable, Sendable {
        case servers, status, mode, listen, pid, control
    }

    public static func parse(_ line: String) throws -> Command {
        // Split on scalars, not Characters: after a tab a combining mark starts a Character of
        // its own, while after the space that `text` joins with it would join the space's.
        var words = line.unicodeScalars.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            .map { String(String.UnicodeScalarView($0)) }
        guard let first = words.first else { throw ConfigurationError("empty command") }
        // In a config file '#' starts a comment: a command holding one would not read back from `write`.
        guard !line.contains("#") else {
            throw ConfigurationError("'#' cannot be part of a command: in a config file it starts a comment")
        }
        if first == "no" {
            words.removeFirst()
            if words == ["metrics"] { return .metrics(nil) }
            if words.first == "acl" {
                guard words.count == 2 else { throw ConfigurationError("'no acl' needs one list number, 0-9") }
                return .clearAccessList(try AccessLists.listNumber(words[1]))
            }
            if words.first == "vrrp" { return try parseRemoveVRRP(Array(words.dropFirst())) }
            if words.first == "healthcheck" {
                guard words.count == 1 else { throw ConfigurationError("'no healthcheck' takes no argument") }
                return .healthCheck(nil)
            }
            let negatable = Flag.allCases.map(\.rawValue) + FileSetting.allCases.map(\.rawValue)
            guard words.count == 1, negatable.contains(words[0]) else {
                throw ConfigurationError("'no' takes one of: \((negatable + ["acl N", "healthcheck", "metrics", "vrrp vrid N"]).joined(separator: ", "))")
            }
            if let flag = Flag(rawValue: words[0]) { return .flag(flag, false) }
            return .file(FileSetting(rawValue: words[0])!, .off)
        }
        let arguments = Array(words.dropFirst())
        if let flag = Flag(rawValue: first) {
            try expect(arguments, atMost: 0, first)
            return .flag(flag, true)
        }
        if let setting = Setting(rawValue: first) {
            return .setting(setting, try optionalNumber(arguments, first).map { try setting.check($0) })
        }
        if first == "listen", arguments.count == 1 {
            return .listen(try ListenAddress.parse(arguments[0]))
        }
        if let query = Query(rawValue: first) {
            try expect(arguments, atMost: 0, first)
            return .query(query)
        }
        if let file = FileSetting(rawValue: first) {
            try expect(arguments, atMost: 1, first)
            return .file(file, arguments.first.map(FileChange.set) ?? .show)
        }
        switch first {
        case "source":
            guard arguments.count == 1 else { throw ConfigurationError("'source' needs one IP address") }
            return .source(arguments[0])
        case "server":
            return .server(try ServerChange.parse(arguments))
        case "recent":
            return .recent(try optionalNumber(arguments, first).map {
                try boundedNumber($0, 0...Limits.seconds, for: "'recent'")
            })
        case "connection", "close":
            guard arguments.count == 1, let number = try optionalNumber(arguments, first) else {
                throw ConfigurationError("'\(first)' needs one connection number")
            }
            return first == "close" ? .close(number) : .connection(number)
        case "include":
            guard arguments.count == 1 else { throw ConfigurationError("'include' needs one file name") }
            return .include(arguments[0])
        case "write":
            try expect(arguments, atMost: 1, first)
            return .write(arguments.first)
        case "exit":
            try expect(arguments, atMost: 0, first)
            return .exit
        case "acl":
            let (list, rule) = try AccessRule.parse(words: arguments)
            return .accessRule(list: list, rule)
        case "vrrp":
            do {
                return .vrrp(try VRRPInstanceConfiguration.parse(arguments))
            } catch {
                throw ConfigurationError("vrrp: \(error)")
            }
        case "metrics":
            return .metrics(try MetricsEndpoint.parse(arguments))
        case "ssl_ciphers", "ssl_option", "ssl_sni_path", "ssl_ocsp_response", "ssl_client_renegotiation_interval":
            return .tls(try TLSCommand.parse(first, arguments))
        case "healthcheck":
            return .healthCheck(try HealthCheckSettings.parse(arguments))
        default:
            throw ConfigurationError("unknown command '\(first)'")
        }
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

    private static func optionalNumber(_ arguments: [String], _ name: String) throws -> Int? {
        guard arguments.count <= 1 else { throw ConfigurationError("'\(name)' takes at most one number") }
        guard let text = arguments.first else { return nil }
        return try nonNegativeNumber(text, for: "'\(name)'")
    }

    /// The command as a line that parses back to it.
    public var text: String {
        switch self {
        case .flag(let flag, let enabled): return enabled ? flag.rawValue : "no \(flag.rawValue)"
        case .setting(let setting, let value): return Self.line(setting.rawValue, value)
        case .source(let address): return "source \(address)"
        case .server(let change): return (["server"] + change.words).joined(separator: " ")
        case .file(let file, .show): return file.rawValue
        case .file(let file, .set(let path)): return "\(file.rawValue) \(path)"
        case .file(let file, .off): return "no \(file.rawValue)"
        case .query(let query): return query.rawValue
        case .recent(let seconds): return Self.line("recent", seconds)
        case .connection(let number): return "connection \(number)"
        case .close(let number): return "close \(number)"
        case .include(let path): return "include \(path)"
        case .write(let path): return Self.line("write", path)
        case .exit: return "exit"
        case .vrrp(let instance): return (["vrrp"] + instance.words).joined(separator: " ")
        case .removeVRRP(let vrid, let interface): return "no vrrp vrid \(vrid)" + (interface.map { " interface \($0)" } ?? "")
        case .accessRule(let list, let rule): return (["acl", "\(list)"] + rule.words).joined(separator: " ")
        case .clearAccessList(let list): return "no acl \(list)"
        case .tls(let command): return command.text
        case .healthCheck(let settings):
            return settings.map { (["healthcheck"] + $0.words).joined(separator: " ") } ?? "no healthcheck"
        case .metrics(let endpoint): return endpoint.map { (["metrics"] + $0.words).joined(separator: " ") } ?? "no metrics"
        case .listen(let address): return "listen \(address)"
        }
    }

    private static func line(_ name: String, _ argument: (some CustomStringConvertible)?) -> String {
        argument.map { "\(name) \($0)" } ?? name
    }
}

/// A number a command needs: an integer, zero or more.
func nonNegativeNumber(_ text: String, for what: String) throws -> Int {
    guard let value = Int(text), value >= 0 else {
        throw ConfigurationError("\(what) needs a non-negative number, not '\(text)'")
    }
    return value
}
