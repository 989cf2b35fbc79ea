import NIOCore
import VRRPCore

/// Everything a running balancer is configured with: pen's options and commands, before
/// host names are resolved.
public struct Configuration: Equatable, Sendable {
    public var listen: Endpoint
    /// The servers' settings, their one home; what running adds to each is the state's
    /// `ServerTable`, at the same index.
    public var servers: [ServerSpec]
    /// `-e`: the server of last resort.
    public var emergency: ServerSpec?
    /// `-B`: where clients refused by `client_acl` are sent; without it they are closed.
    public var abuse: ServerSpec?
    /// `acl N ...`: pen's ten access lists.
    public var accessLists = AccessLists()
    /// `client_acl N`, `control_acl N`: the lists clients and control connections are
    /// checked against; pen checks list 0 unless told otherwise (an empty list permits).
    public var clientACL = 0
    public var controlACL = 0
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
    /// `trackingSeconds` as the client table takes it: nil is forever.
    public var trackingTime: TimeAmount? { trackingSeconds > 0 ? .seconds(Int64(trackingSeconds)) : nil }
    /// `idle_timeout`: close a connection with no traffic for this many seconds; 0 means never.
    public var idleTimeoutSeconds = 0
    /// `threads`: the TCP engine's event loops; 0, the default, is one per core.
    public var threads = 0
    /// `drain`: seconds a stopping penha relays its established connections (`Drain`).
    public var drainSeconds = Drain.defaultSeconds
    /// `-q`: listen backlog.
    public var backlog = 511
    public var tcpNoDelay = false
    /// `-U`: balance UDP datagrams instead of TCP connections.
    public var udp = false
    /// `-H`, `http`: add X-Forwarded-For with the client's address to each HTTP request.
    public var forwardedFor = false
    /// `accept_proxy`: clients start with a PROXY protocol header (`ProxyHeader`).
    public var acceptProxy = false
    /// `freebind`: listen on the address even while this host does not have it (IP_FREEBIND).
    public var freeBind = false
    /// `control_tcp_files`: a TCP control port may run the commands that name a file
    /// (`CommandKeyword.fileUse`); off, they need the Unix control socket.
    public var controlTCPFiles = false
    /// `source`: local address for connections to servers.
    public var sourceAddress: String?
    /// `-d`, repeatable.
    public var debugLevel = 0
    /// `vrrp` commands; none means penha runs standalone.
    public var vrrpInstances: [VRRPInstanceConfiguration] = []
    /// `-l`, `log FILE`: the connection log.
    public var logFile: String?
    /// `-w`, `web_stats FILE`: the HTML status report.
    public var webStatsFile: String?
    /// `-E` and the other TLS options, `ssl_*` commands.
    public var tls = TLSSettings()
    /// `healthcheck ...`: active checks of every server; nil, the default, checks none.
    public var healthCheck: HealthCheckSettings?
    /// `metrics ADDRESS:PORT`: where Prometheus scrapes; nil: no metrics.
    public var metrics: MetricsEndpoint?
    /// `sync ...`: the client table is replicated to these peers; nil: it is not.
    public var sync: SyncSettings?
    /// `bgp ...`: the VIPs penha announces through the host's BGP daemon; nil: none.
    public var bgp: BGPSettings?
    /// The command line named the listen address: a `listen` line then changes nothing, so
    /// that `penha -F FILE ADDRESS` recreates a written FILE on another address.
    public var listenOnCommandLine = false

    public init(listen: Endpoint, servers: [ServerSpec]) {
        self.listen = listen
        self.servers = servers
    }

    /// Applies a command that changes the configuration (from `-O`, `-F` or the control
    /// socket); questions and actions are refused here, `Runtime` answers them.
    public mutating func apply(_ command: Command) throws {
        try command.behaviour.apply(to: &self)
    }

    /// What no single line can see: settings that cannot work together, an error each.
    public var conflicts: [ConfigurationError] {
        var found: [ConfigurationError] = []
        if udp && acceptProxy {
            found.append(ConfigurationError("accept_proxy reads a PROXY protocol header from TCP clients; with -U penha balances datagrams"))
        }
        for (index, server) in servers.enumerated() where udp && server.proxyProtocol != .off {
            found.append(ConfigurationError("server \(index) proxy_protocol sends a header on TCP connections; with -U penha balances datagrams"))
        }
        if freeBind, let path = listen.socketPath {
            found.append(ConfigurationError("freebind is for an IP listen address, not the Unix socket \(path)"))
        }
        return found
    }

    /// A change made while penha runs (a control line, a reload): refused where it conflicts,
    /// or where it changes a setting read only when the listener is bound.
    public func checkChange(from running: Configuration) throws {
        if let conflict = conflicts.first { throw conflict }
        guard freeBind == running.freeBind else {
            throw ConfigurationError("freebind is set when the listener is bound; restart penha to change it")
        }
    }

    /// `source`, for a connection to `server`: nil when none is set or it is of the other
    /// family (that connection then takes any local address of its own family).
    public func sourceAddress(for server: SocketAddress) -> SocketAddress? {
        guard let sourceAddress, let address = try? SocketAddress(ipAddress: sourceAddress, port: 0),
              address.protocol == server.protocol else { return nil }
        return address
    }

    /// This configuration with `lines` applied in order, as start-up applies `-O` and `-F`;
    /// the error names the failing line.
    public func applying(_ lines: [ConfigLine]) throws -> Configuration {
        var result = self
        for line in lines {
            do {
                try result.apply(line.command)
            } catch let error as ConfigurationError {
                throw error.at(line.origin)
            }
        }
        return result
    }

    /// Like `applying`, but goes on past a line that fails: the configuration the good
    /// lines make and every failing line's error, for `penha check`.
    public func applyingAll(_ lines: [ConfigLine]) -> (configuration: Configuration, errors: [ConfigurationError]) {
        var result = self
        var errors: [ConfigurationError] = []
        for line in lines {
            do {
                try result.apply(line.command)
            } catch let error as ConfigurationError {
                errors.append(error.at(line.origin))
            } catch {
                errors.append(ConfigurationError("\(error)").at(line.origin))
            }
        }
        return (result, errors)
    }

    /// Commands that recreate this configuration on top of the same command line: what
    /// `write` saves, each kind of setting saving its own (`CommandKeyword.saved`). `-e` and
    /// `-q` are command-line options, not commands.
    public var commands: [Command] {
        CommandKeyword.saved.flatMap { $0.saved(from: self) }
    }
}
