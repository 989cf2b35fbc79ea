import VRRP

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
    /// `vrrp interface IF vrid N ...`: one VRRP instance.
    case vrrp(VRRPInstanceConfiguration)

    public enum Flag: String, CaseIterable, Sendable {
        case roundRobin = "roundrobin"
        case hash
        case weight
        case priority = "prio"
        case stubborn
        case tcpNoDelay = "tcp_nodelay"
    }

    public enum Setting: String, CaseIterable, Sendable {
        case blacklist
        case clientsMax = "clients_max"
        case connectionsMax = "conn_max"
        case timeout
        case tracking
        case idleTimeout = "idle_timeout"
        case debug
    }

    /// Commands that are pen's but belong to parts of penha not built yet: refused by name.
    static let notYetImplemented: Set<String> = [
        "acl", "client_acl", "control_acl", "close", "connection", "control", "exit", "http",
        "include", "listen", "log", "mode", "pid", "recent", "server", "servers", "ssl_ciphers",
        "ssl_option", "ssl_sni_path", "status", "web_stats", "write",
    ]

    public static func parse(_ line: String) throws -> Command {
        var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard !words.isEmpty else { throw ConfigurationError("empty command") }
        var enabled = true
        if words[0] == "no" {
            enabled = false
            words.removeFirst()
            guard let name = words.first, Flag(rawValue: name) != nil, words.count == 1 else {
                throw ConfigurationError("'no' takes one of: \(Flag.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        let name = words[0]
        let arguments = words.dropFirst()
        if let flag = Flag(rawValue: name) {
            guard arguments.isEmpty else { throw ConfigurationError("'\(name)' takes no argument") }
            return .flag(flag, enabled)
        }
        if let setting = Setting(rawValue: name) {
            guard arguments.count <= 1 else { throw ConfigurationError("'\(name)' takes at most one number") }
            guard let text = arguments.first else { return .setting(setting, nil) }
            guard let value = Int(text), value >= 0 else {
                throw ConfigurationError("'\(name)' needs a non-negative number, not '\(text)'")
            }
            return .setting(setting, value)
        }
        if name == "source" {
            guard arguments.count == 1, let address = arguments.first else {
                throw ConfigurationError("'source' needs one IP address")
            }
            return .source(address)
        }
        if name == "vrrp" {
            do {
                return .vrrp(try VRRPInstanceConfiguration.parse(Array(arguments)))
            } catch {
                throw ConfigurationError("vrrp: \(error)")
            }
        }
        if notYetImplemented.contains(name) {
            throw ConfigurationError("command '\(name)' is not implemented yet")
        }
        throw ConfigurationError("unknown command '\(name)'")
    }

    /// The command as a line that parses back to it.
    public var text: String {
        switch self {
        case .flag(let flag, let enabled): return enabled ? flag.rawValue : "no \(flag.rawValue)"
        case .setting(let setting, let value): return value.map { "\(setting.rawValue) \($0)" } ?? setting.rawValue
        case .source(let address): return "source \(address)"
        case .vrrp(let instance): return (["vrrp"] + instance.words).joined(separator: " ")
        }
    }
}
