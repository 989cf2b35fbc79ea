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
    /// `reload`: what SIGHUP does, answered with its outcome (`systemctl reload` runs it).
    case reload
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
    case listen(Endpoint)
    /// `sync listen ADDR:PORT peer ADDR:PORT ... key FILE`: replicate the client table; `no sync` (nil): do not.
    case sync(SyncSettings?)
    /// `bgp table N vip ADDR ...`: announce the VIPs through the host's BGP daemon; `no bgp` (nil): do not.
    case bgp(BGPSettings?)
    /// `bgp withdraw`, `bgp announce`: the operator's hold on the announcement (not saved by `write`).
    case bgpOperator(BGPOperatorAction)

    public enum FileChange: Equatable, Sendable {
        /// Without an argument: which file, if any.
        case show
        case set(String)
        /// The `no` form.
        case off
    }

    public enum Query: String, CaseIterable, Sendable {
        case servers, status, mode, listen, pid, control
        /// `status json`: the status model as one line of JSON, what `penha status --json` prints.
        case statusJSON = "status json"
    }

    /// `allowingFiles` false (a TCP control port without `control_tcp_files`): a line that
    /// names a file (`CommandKeyword.FileUse`) is refused, with the reason.
    public static func parse(_ line: String, allowingFiles: Bool = true) throws -> Command {
        // Split on scalars, not Characters: after a tab a combining mark starts a Character of
        // its own, while after the space that `text` joins with it would join the space's.
        var words = line.unicodeScalars.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            .map { String(String.UnicodeScalarView($0)) }
        guard let first = words.first else { throw ConfigurationError("empty command") }
        // In a config file '#' starts a comment: a command holding one would not read back from `write`.
        guard !line.contains("#") else {
            throw ConfigurationError("'#' cannot be part of a command: in a config file it starts a comment")
        }
        // C reads text up to a NUL: an address check passed "::\0]" as "::", and a file name
        // would name another file. No command holds one.
        guard !line.unicodeScalars.contains("\0") else {
            throw ConfigurationError("a NUL character cannot be part of a command")
        }
        words.removeFirst()
        guard first == "no" else {
            guard let keyword = CommandKeyword.named[first] else { throw ConfigurationError("unknown command '\(first)'") }
            guard allowingFiles || !keyword.fileUse.isNamed(by: words) else { throw keyword.fileUse.refusal(of: first) }
            return try keyword.parse(words)
        }
        let negated = words.first.flatMap { CommandKeyword.named[$0]?.negation }
        guard let negated, let command = try negated.parse(Array(words.dropFirst())) else {
            throw ConfigurationError("'no' takes one of: \(CommandKeyword.negationUsages.joined(separator: ", "))")
        }
        return command
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
        case .reload: return "reload"
        case .vrrp(let instance): return (["vrrp"] + instance.words).joined(separator: " ")
        case .removeVRRP(let vrid, let interface): return "no vrrp vrid \(vrid)" + (interface.map { " interface \($0)" } ?? "")
        case .accessRule(let list, let rule): return (["acl", "\(list)"] + rule.words).joined(separator: " ")
        case .clearAccessList(let list): return "no acl \(list)"
        case .tls(let command): return command.text
        case .healthCheck(let settings):
            return settings.map { (["healthcheck"] + $0.words).joined(separator: " ") } ?? "no healthcheck"
        case .metrics(let endpoint): return endpoint.map { (["metrics"] + $0.words).joined(separator: " ") } ?? "no metrics"
        case .listen(let address): return "listen \(address)"
        case .sync(let settings): return settings.map { (["sync"] + $0.words).joined(separator: " ") } ?? "no sync"
        case .bgp(let settings): return settings.map { (["bgp"] + $0.words).joined(separator: " ") } ?? "no bgp"
        case .bgpOperator(let action): return "bgp \(action.rawValue)"
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
