import NIOCore
import VRRPCore

/// The settings that are more than one field: each keyword's effect on the configuration,
/// what it does to a running penha and its `write` line, together (the flags, numbers and
/// files are in CommandSettings.swift, the parses in `CommandKeyword.table`).

/// `source IP`: the local address outgoing connections are made from.
struct SourceAddress: SettingCommand {
    let address: String

    var line: [String] { ["source", address] }

    func apply(to configuration: inout Configuration) throws {
        guard (try? SocketAddress(ipAddress: address, port: 0)) != nil else {
            throw ConfigurationError("source '\(address)' is not an IP address")
        }
        configuration.sourceAddress = address
    }

    static func saved(from configuration: Configuration) -> [Command] {
        configuration.sourceAddress.map { [.source($0)] } ?? []
    }
}

/// `server N [address A] [port P] ...`: changes server N, or adds it as the next one.
extension ServerChange: SettingCommand {
    var line: [String] { ["server"] + words }

    var preparation: [Command.Preparation] { address.map { [.resolve(host: $0)] } ?? [] }

    /// Changes server N, or adds it when N is the next number (pen grows its table the same way).
    func apply(to configuration: inout Configuration) throws {
        if configuration.servers.indices.contains(index) {
            apply(to: &configuration.servers[index])
            return
        }
        guard index == configuration.servers.count else {
            throw ConfigurationError("server \(index) does not exist; the next new server is \(configuration.servers.count)")
        }
        guard let host = address else { throw ConfigurationError("new server \(index) needs an address") }
        guard let port = port ?? configuration.listen.port else {
            throw ConfigurationError("new server \(index) needs a port when listening on a Unix socket")
        }
        var spec = ServerSpec(host: host, port: port)
        apply(to: &spec)
        configuration.servers.append(spec)
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        let before = runtime.configuration.servers.indices.contains(index) ? runtime.configuration.servers[index] : nil
        try apply(to: &runtime.configuration)
        try runtime.state.serverConfigured(index, before: before, lookUp: address != nil, resolved: resolved)
        if let blacklistSeconds {
            let until = blacklistSeconds > 0 ? facts.now + .seconds(Int64(blacklistSeconds)) : nil
            runtime.state.servers.modify(.server(index)) { $0.blacklistedUntil = until }
        }
        return Runtime.Outcome()
    }

    static func saved(from configuration: Configuration) -> [Command] {
        configuration.servers.enumerated().map { .server(ServerChange(index: $0, recreating: $1)) }
    }
}

/// `vrrp interface IF vrid N ...`: one VRRP instance; at runtime the same vrid on the same
/// interface changes that instance.
extension VRRPInstanceConfiguration: SettingCommand {
    var line: [String] { ["vrrp"] + words }

    func apply(to configuration: inout Configuration) throws {
        guard !configuration.vrrpInstances.contains(where: { $0.vrid == vrid && $0.interface == interface }) else {
            throw ConfigurationError("vrrp: vrid \(vrid) on \(interface) is configured twice")
        }
        configuration.vrrpInstances.append(self)
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        // The same router changes in place (the executor adopts it); another is added.
        if let index = runtime.configuration.vrrpInstances.firstIndex(where: { $0.isSameRouter(as: self) }) {
            runtime.configuration.vrrpInstances[index] = self
        } else {
            try apply(to: &runtime.configuration)
        }
        return Runtime.Outcome()
    }

    static func saved(from configuration: Configuration) -> [Command] { configuration.vrrpInstances.map(Command.vrrp) }
}

/// `no vrrp vrid N [interface IF]`: the instance resigns and is removed.
struct RemoveVRRP: SettingCommand {
    let vrid: UInt8
    let interface: String?

    var line: [String] { ["no", "vrrp", "vrid", "\(vrid)"] + (interface.map { ["interface", $0] } ?? []) }

    func apply(to configuration: inout Configuration) throws {
        let count = configuration.vrrpInstances.count
        configuration.vrrpInstances.removeAll { $0.vrid == vrid && (interface == nil || $0.interface == interface) }
        guard configuration.vrrpInstances.count < count else {
            throw ConfigurationError("no vrrp instance with vrid \(vrid)\(interface.map { " on \($0)" } ?? "")")
        }
    }
}

/// `acl N permit|deny ADDRESS ...`: appends a rule to access list N.
struct AccessRuleChange: SettingCommand {
    let list: Int
    let rule: AccessRule

    var line: [String] { ["acl", "\(list)"] + rule.words }

    func apply(to configuration: inout Configuration) {
        configuration.accessLists.append(rule, to: list)
    }

    /// Each list with the `no acl N` that empties it first (`AccessLists.commands`).
    static func saved(from configuration: Configuration) -> [Command] { configuration.accessLists.commands }
}

/// `no acl N`: empties access list N, which then permits everyone.
struct ClearAccessList: SettingCommand {
    let list: Int

    var line: [String] { ["no", "acl", "\(list)"] }

    func apply(to configuration: inout Configuration) {
        configuration.accessLists.clear(list)
    }
}

/// `ssl_ciphers LIST`, `ssl_option NAME`, `ssl_sni_path DIR`.
extension TLSCommand: SettingCommand {
    var line: [String] {
        switch self {
        case .ciphers(let list): return ["ssl_ciphers", list]
        case .option(let option): return ["ssl_option", option.rawValue]
        case .sniDirectory(let path): return ["ssl_sni_path", path]
        }
    }

    func apply(to configuration: inout Configuration) {
        configuration.tls.apply(self)
    }

    static func saved(from configuration: Configuration) -> [Command] { configuration.tls.commands.map(Command.tls) }
}

/// `healthcheck tcp|http PATH ...`: how servers are checked; nil is `no healthcheck`.
struct HealthCheckChange: SettingCommand {
    let settings: HealthCheckSettings?

    var line: [String] { settings.map { ["healthcheck"] + $0.words } ?? ["no", "healthcheck"] }

    func apply(to configuration: inout Configuration) {
        configuration.healthCheck = settings
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        let before = runtime.configuration.healthCheck
        apply(to: &runtime.configuration)
        runtime.state.healthCheckChanged(from: before)
        return Runtime.Outcome()
    }

    static func saved(from configuration: Configuration) -> [Command] { [.healthCheck(configuration.healthCheck)] }
}

/// `metrics ADDRESS:PORT [acl N]`: serve Prometheus' `GET /metrics` there; `no metrics` (nil): do not.
struct MetricsChange: SettingCommand {
    let endpoint: MetricsEndpoint?

    var line: [String] { endpoint.map { ["metrics"] + $0.words } ?? ["no", "metrics"] }

    func apply(to configuration: inout Configuration) {
        configuration.metrics = endpoint
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        // Like vrrp: bound at start, so a line can only restate it.
        guard runtime.configuration.metrics == endpoint else { throw Runtime.metricsAreSetAtStart }
        return Runtime.Outcome()
    }

    static func saved(from configuration: Configuration) -> [Command] { configuration.metrics.map { [.metrics($0)] } ?? [] }
}

/// `listen ADDRESS`: where clients connect, for a `-F` file that carries it (bound at start).
public struct ListenAddress: SettingCommand {
    public let address: Endpoint

    var line: [String] { ["listen", address.description] }

    func apply(to configuration: inout Configuration) {
        if !configuration.listenOnCommandLine { configuration.listen = address }
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        // Also when the command line gave it (a file's line is then ignored): an answer
        // of success would say the address had changed.
        guard runtime.configuration.listen == address else { throw Runtime.listenIsSetAtStart }
        return Runtime.Outcome()
    }

    static func saved(from configuration: Configuration) -> [Command] { [.listen(configuration.listen)] }
}

/// `sync listen ADDR:PORT peer ADDR:PORT ... key FILE`: replicate the client table; `no sync` (nil): do not.
struct SyncCommand: SettingCommand {
    let settings: SyncSettings?

    var line: [String] { settings.map { ["sync"] + $0.words } ?? ["no", "sync"] }

    var preparation: [Command.Preparation] { settings.map { [.syncKey(path: $0.keyFile)] } ?? [] }

    func apply(to configuration: inout Configuration) {
        configuration.sync = settings
    }

    static func saved(from configuration: Configuration) -> [Command] { configuration.sync.map { [.sync($0)] } ?? [] }
}

/// `bgp table N vip ADDR ...`: announce the VIPs through the host's BGP daemon; `no bgp` (nil): do not.
struct BGPChange: SettingCommand {
    let settings: BGPSettings?

    var line: [String] { settings.map { ["bgp"] + $0.words } ?? ["no", "bgp"] }

    func apply(to configuration: inout Configuration) {
        configuration.bgp = settings
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        apply(to: &runtime.configuration)
        return Runtime.Outcome(effects: [.updateBGP])
    }

    static func saved(from configuration: Configuration) -> [Command] { configuration.bgp.map { [.bgp($0)] } ?? [] }
}
