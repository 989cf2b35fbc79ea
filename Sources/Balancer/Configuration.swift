import NIOCore
import VRRP

/// Everything a running balancer is configured with: pen's options and commands, before
/// host names are resolved.
public struct Configuration: Equatable, Sendable {
    public var listen: ListenAddress
    public var servers: [ServerSpec]
    /// `-e`: the server of last resort.
    public var emergency: ServerSpec?
    public var selection = Selection()
    /// `-b`, seconds.
    public var blacklistSeconds = 30
    /// `-c`: client table slots.
    public var clientsMax = 2048
    /// `-t`, seconds.
    public var connectTimeoutSeconds = 3
    /// `-x`: simultaneous connections; 0 means no limit.
    public var connectionsMax = 500
    /// `-T`: seconds a client is tracked; 0 means forever.
    public var trackingSeconds = 0
    /// `idle_timeout`: close a connection with no traffic for this many seconds; 0 means never.
    public var idleTimeoutSeconds = 0
    /// `-q`: listen backlog.
    public var backlog = 511
    public var tcpNoDelay = false
    /// `source`: local address for connections to servers.
    public var sourceAddress: String?
    /// `-d`, repeatable.
    public var debugLevel = 0
    /// `vrrp` commands; none means penha runs standalone.
    public var vrrpInstances: [VRRPInstanceConfiguration] = []

    public init(listen: ListenAddress, servers: [ServerSpec]) {
        self.listen = listen
        self.servers = servers
    }

    /// Applies a configuration command (from `-O`, and later the config file and control socket).
    public mutating func apply(_ command: Command) throws {
        switch command {
        case .flag(let flag, let enabled):
            switch flag {
            case .roundRobin: selection.roundRobin = enabled
            case .hash: selection.hash = enabled
            case .weight: selection.weight = enabled
            case .priority: selection.priority = enabled
            case .stubborn: selection.stubborn = enabled
            case .tcpNoDelay: tcpNoDelay = enabled
            }
        case .setting(let setting, let value):
            guard let value else {
                throw ConfigurationError("'\(setting.rawValue)' needs a value here")
            }
            switch setting {
            case .blacklist: blacklistSeconds = value
            case .clientsMax:
                guard value > 0 else { throw ConfigurationError("clients_max must be at least 1") }
                clientsMax = value
            case .connectionsMax: connectionsMax = value
            case .timeout:
                guard value > 0 else { throw ConfigurationError("timeout must be at least 1 second") }
                connectTimeoutSeconds = value
            case .tracking: trackingSeconds = value
            case .idleTimeout: idleTimeoutSeconds = value
            case .debug: debugLevel = value
            }
        case .source(let address):
            guard (try? SocketAddress(ipAddress: address, port: 0)) != nil else {
                throw ConfigurationError("source '\(address)' is not an IP address")
            }
            sourceAddress = address
        case .vrrp(let instance):
            guard !vrrpInstances.contains(where: { $0.vrid == instance.vrid && $0.interface == instance.interface }) else {
                throw ConfigurationError("vrrp: vrid \(instance.vrid) on \(instance.interface) is configured twice")
            }
            vrrpInstances.append(instance)
        }
    }

    /// The pure balancer state this configuration starts with (host names resolved).
    public func makeState() throws -> BalancerState {
        let table = ServerTable(servers: try servers.map { try $0.resolve() },
                                emergency: try emergency?.resolve())
        let clients = ClientTable(capacity: clientsMax,
                                  trackingTime: trackingSeconds > 0 ? .seconds(Int64(trackingSeconds)) : nil)
        return BalancerState(servers: table, clients: clients, selection: selection,
                             blacklistTime: .seconds(Int64(blacklistSeconds)))
    }
}
