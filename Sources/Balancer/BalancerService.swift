import Logging
import NIOCore
import NIOPosix
import VRRP

#if canImport(Glibc)
import Glibc
#endif

/// The TCP data path: accepts clients, asks `BalancerState` where each goes, connects with
/// failover, and relays. All state lives on one event loop, so `BalancerState` needs no
/// locks; commands change it there too (`execute`), after their blocking parts (reading
/// files, resolving host names) ran on a thread pool.
public final class BalancerService {
    public let eventLoop: EventLoop
    var runtime: Runtime
    var logger: Logger
    private let limiter: ConnectionLimiter
    private let options: Options
    private let started = NIODeadline.now()
    let connectionLog = ConnectionLog()
    /// Blocking work off the event loop: NIO's own threads, not libdispatch (see Signals).
    private let blockingPool = NIOThreadPool(numberOfThreads: 1)
    private var listener: Channel?
    /// `-U`: the UDP relay in place of TCP's acceptor.
    private var udp: UDPRelay?
    private var boundListen: String
    private var relayed: [Int: (client: Channel, upstream: Channel)] = [:]
    private var vrrpStatus: @Sendable () -> [VRRPInstance.Status] = { [] }
    private var controlAddress: ControlAddress?
    private let tls: TLSTermination?

    /// What the process was started with that commands need to know.
    public struct Options: Sendable {
        /// `-X`: the `exit` command is allowed.
        public var exitEnabled = false
        /// `-F`: what SIGHUP re-reads and `write` without a file name writes.
        public var configFile: String?
        /// The configuration the command line and `-O` give, before `-F`: a reload applies
        /// the file to it, so that what the file no longer says returns to it.
        public var commandLine: Configuration?
        public init(exitEnabled: Bool = false, configFile: String? = nil, commandLine: Configuration? = nil) {
            self.exitEnabled = exitEnabled
            self.configFile = configFile
            self.commandLine = commandLine
        }
    }

    /// A command's answer; `exit` is done by the caller once the answer is sent.
    public struct Reply: Sendable {
        public var lines: [String]
        public var exitRequested = false
    }

    /// Resolves the servers (exits early with a clear error if one cannot be resolved).
    public init(configuration: Configuration, eventLoop: EventLoop, logger: Logger, options: Options = Options()) throws {
        self.eventLoop = eventLoop
        self.runtime = Runtime(configuration: configuration, state: try configuration.makeState())
        self.logger = logger
        self.options = options
        self.limiter = ConnectionLimiter(limit: configuration.connectionsMax)
        self.boundListen = configuration.listen.description
        self.tls = configuration.tls.isEnabled ? try TLSTermination(settings: configuration.tls) : nil
        connectionLog.file = try LogFile.open(configuration.logFile)
        if let report = configuration.webStatsFile { try FileAccess.checkReplaceable(report) }
        blockingPool.start()
    }

    deinit {
        blockingPool.shutdownGracefully { _ in }
    }

    /// How often the `-w` report is rewritten.
    static let webStatsInterval = TimeAmount.seconds(30)

    /// pen's `-d` levels as log levels.
    public static func logLevel(debug: Int) -> Logger.Level {
        debug >= 2 ? .trace : debug == 1 ? .debug : .info
    }

    /// Binds the listening socket; returns the address actually bound (useful with port 0).
    public func start() -> EventLoopFuture<SocketAddress?> {
        let configuration = runtime.configuration
        var freeBind: ChannelOptions.Types.SocketOption?
        if case .inet = configuration.listen, !configuration.vrrpInstances.isEmpty {
            // A backup listens on the virtual address before it is on the interface, so it
            // serves the moment it becomes master. (IP level: Linux applies it to IPv6 sockets too.)
            freeBind = ChannelOptions.socket(SocketOptionLevel(IPPROTO_IP), SocketOptionName(IP_FREEBIND))
        }
        let bound: EventLoopFuture<Channel>
        if configuration.udp {
            let relay = UDPRelay(service: self)
            udp = relay
            bound = relay.bind(configuration.listen, freeBind: freeBind)
        } else {
            bound = bindTCP(configuration, freeBind: freeBind)
        }
        // pen rewrites its report on USR1; penha also keeps it fresh on its own.
        eventLoop.scheduleRepeatedTask(initialDelay: Self.webStatsInterval, delay: Self.webStatsInterval) { _ in
            self.writeWebStats()
        }
        return bound.map { channel in
            self.eventLoop.assertInEventLoop()
            self.listener = channel
            self.boundListen = configuration.listen.withPort(channel.localAddress?.port).description
            return channel.localAddress
        }
    }

    private func bindTCP(_ configuration: Configuration, freeBind: ChannelOptions.Types.SocketOption?) -> EventLoopFuture<Channel> {
        let limiter = self.limiter
        var bootstrap = ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: configuration.backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(limiter) }
            }
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { self.accepted(channel) }
            }
        if let freeBind { bootstrap = bootstrap.serverChannelOption(freeBind, value: 1) }
        switch configuration.listen {
        case .inet(let host, let port):
            // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one setsockopt
            // instead of one per connection.
            return bootstrap.serverChannelOption(Self.noDelay, value: configuration.tcpNoDelay ? 1 : 0)
                .bind(host: host, port: port)
        case .unix(let path): return bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
        }
    }

    /// Stops accepting; established connections are left to the caller (exit closes them).
    public func stop() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit {
            self.listener?.close() ?? self.eventLoop.makeSucceededVoidFuture()
        }
    }

    /// Runs `body` on the balancer's event loop with its state, for the control socket and stats.
    public func withState<Result: Sendable>(_ body: @escaping (inout BalancerState) -> Result) -> EventLoopFuture<Result> {
        eventLoop.submit { body(&self.runtime.state) }
    }

    /// Where `status` gets the VRRP instances' states (and so the role) from once VRRP runs.
    public func setVRRPStatusProvider(_ provider: @escaping @Sendable () -> [VRRPInstance.Status]) {
        eventLoop.execute { self.vrrpStatus = provider }
    }

    /// Whether a control connection from `address` passes `control_acl` (a refusal is logged);
    /// called on the event loop, where the control socket runs.
    func admitsControlConnection(from address: SocketAddress?) -> Bool {
        eventLoop.assertInEventLoop()
        let configuration = runtime.configuration
        guard configuration.accessLists.permits(ClientKey(address), list: configuration.controlACL) else {
            logger.warning("control connection refused by control_acl \(configuration.controlACL)",
                           metadata: ["client": "\(Self.describe(address))"])
            return false
        }
        return true
    }

    /// What the `control` command answers.
    public func setControlAddress(_ address: ControlAddress) {
        eventLoop.execute { self.controlAddress = address }
    }

    /// One command line from the control socket: its answer, or one `error: ...` line.
    public func execute(_ text: String) -> EventLoopFuture<Reply> {
        run(reading: { try ConfigFile.expandIncludes([ConfigLine(try Command.parse(text))]) })
            .recover { error in Reply(lines: ["error: \(error)"]) }
    }

    /// SIGHUP. With `-F`: the file is read again and applied to the command line's
    /// configuration as one transaction (`Runtime.converge`), so the running configuration is
    /// what the command line and the file say; a file with an error changes nothing. The log
    /// is reopened (rotation) and the TLS files are read again: if they do not load, the
    /// running certificates stay and the log says why. Established connections are not touched.
    public func reload() -> EventLoopFuture<Void> {
        guard let path = options.configFile else {
            return blockingPool.runIfActive(eventLoop: eventLoop) { [configuration = runtime.configuration] in
                try Prepared(lines: [], logPath: configuration.logFile)
            }.flatMap { prepared in
                self.connectionLog.file = prepared.log
                return self.adoptTLS(previous: self.runtime.configuration.tls, reloading: true).map(self.logProblems)
            }
        }
        let commandLine = options.commandLine ?? runtime.configuration
        return blockingPool.runIfActive(eventLoop: eventLoop) { () -> (Configuration, Prepared) in
            let lines = try ConfigFile.read(path)
            let target = try commandLine.applying(lines)
            return (target, try Prepared(lines: lines, hosts: Set(target.servers.map(\.host)), logPath: target.logFile))
        }.flatMapThrowing { target, prepared in
            let tlsBefore = self.runtime.configuration.tls
            let changes = try self.runtime.converge(to: target, facts: self.facts(), resolved: prepared.resolved)
            self.adoptRuntime()
            self.connectionLog.file = prepared.log
            for change in changes { self.logger.notice("reload: \(change)") }
            return tlsBefore
        }.flatMap { tlsBefore in
            self.adoptTLS(previous: tlsBefore, reloading: true).map(self.logProblems)
        }
    }

    private func logProblems(_ lines: [String]) {
        for line in lines { logger.warning("\(line)") }
    }

    /// SIGUSR1: the statistics as `status` shows them; the HTML report is written too.
    public func statistics() -> EventLoopFuture<[String]> {
        writeWebStats()
        return execute("status").map(\.lines)
    }

    /// Writes the `-w` report, if there is one, off the event loop; a failure is logged.
    private func writeWebStats() {
        eventLoop.execute {
            guard let path = self.runtime.configuration.webStatsFile else { return }
            let page = self.runtime.webStats(facts: self.facts())
            self.blockingPool.runIfActive(eventLoop: self.eventLoop) { try FileAccess.replace(path, with: page) }
                .whenFailure { error in self.logger.warning("cannot write the status report: \(error)") }
        }
    }

    /// Reads and prepares on the thread pool, then applies on the event loop.
    private func run(reading: @escaping @Sendable () throws -> [ConfigLine]) -> EventLoopFuture<Reply> {
        blockingPool.runIfActive(eventLoop: eventLoop) { () -> Prepared in
            let lines = try reading()
            return try Prepared(lines: lines, hosts: lines.hostsToResolve, logPath: lines.lastLogFile)
        }.flatMapThrowing { prepared in
            let tlsBefore = self.runtime.configuration.tls
            let outcome = try self.runtime.execute(prepared.lines, facts: self.facts(), resolved: prepared.resolved)
            self.adoptRuntime()
            return (outcome, prepared, tlsBefore)
        }.flatMap { outcome, prepared, tlsBefore in
            self.adoptTLS(previous: tlsBefore, reloading: false).flatMap { problems in
                self.perform(outcome, prepared).map { reply in
                    var reply = reply
                    reply.lines += problems
                    return reply
                }
            }
        }
    }

    /// Changed ssl_* settings (or, `reloading`, the same ones with the files read again)
    /// apply to new connections once a context with them has loaded; when it does not load,
    /// the previous settings and certificates stay and the answer says why.
    private func adoptTLS(previous: TLSSettings, reloading: Bool) -> EventLoopFuture<[String]> {
        let settings = runtime.configuration.tls
        guard reloading || settings != previous, let tls else { return eventLoop.makeSucceededFuture([]) }
        return tls.reload(settings, pool: blockingPool, eventLoop: eventLoop).map { [] }.recover { error in
            // Unless a later change has replaced these settings meanwhile (loads run in order
            // on the one pool thread, so that one's context is the one that counts).
            if self.runtime.configuration.tls == settings { self.runtime.configuration.tls = previous }
            return ["error: TLS not reloaded, keeping the previous certificates: \(error)"]
        }
    }

    /// A batch's blocking part, done on the thread pool before it runs: its host names
    /// looked up, the log file it ends with opened, the report files it names checked, so
    /// that a path that cannot be used is refused with the command and never stalls the loop.
    private struct Prepared: Sendable {
        let lines: [ConfigLine]
        let resolved: [String: SocketAddress]
        /// The connection log the batch leaves open; nil for none. `logPath` nil: no log.
        let log: LogFile?

        init(lines: [ConfigLine], hosts: Set<String> = [], logPath: String?) throws {
            self.lines = lines
            var resolved: [String: SocketAddress] = [:]
            for host in hosts {
                resolved[host] = try? SocketAddress.makeAddressResolvingHost(host, port: 0)
            }
            self.resolved = resolved
            log = try LogFile.open(logPath)
            for case .file(.webStats, .set(let path)) in lines.map(\.command) {
                try FileAccess.checkReplaceable(path)
            }
        }
    }

    private func facts() -> Runtime.Facts {
        Runtime.Facts(now: .now(), started: started, vrrp: vrrpStatus(), listen: boundListen, control: controlAddress,
                      pid: Int(getpid()), exitEnabled: options.exitEnabled, configFile: options.configFile,
                      tlsHandshakes: tls.map { ($0.completed, $0.failed) })
    }

    /// Settings that live outside `Runtime`: the connection limits, the log level and TCP_NODELAY.
    private func adoptRuntime() {
        let configuration = runtime.configuration
        limiter.limit = configuration.connectionsMax
        udp?.adopt(configuration)
        logger.logLevel = Self.logLevel(debug: configuration.debugLevel)
        if case .inet = configuration.listen, !configuration.udp, let listener {
            // For the connections accepted from now on (see bindTCP).
            _ = listener.setOption(Self.noDelay, value: configuration.tcpNoDelay ? 1 : 0)
        }
    }

    private static let noDelay = ChannelOptions.tcpOption(.tcp_nodelay)

    private func perform(_ outcome: Runtime.Outcome, _ prepared: Prepared) -> EventLoopFuture<Reply> {
        var reply = Reply(lines: outcome.lines)
        var writes: [EventLoopFuture<Void>] = []
        for effect in outcome.effects {
            switch effect {
            case .reopenLog:
                connectionLog.file = prepared.log
            case .closeConnection(let number):
                relayed[number]?.client.close(promise: nil)
                relayed[number]?.upstream.close(promise: nil)
                udp?.close(connection: number)
            case .write(let path, let contents):
                writes.append(blockingPool.runIfActive(eventLoop: eventLoop) { try FileAccess.replace(path, with: contents) })
            case .exit:
                reply.exitRequested = true
            }
        }
        return EventLoopFuture.andAllSucceed(writes, on: eventLoop).map { reply }
    }

    private func accepted(_ client: Channel) {
        let limiter = self.limiter
        client.closeFuture.assumeIsolated().whenComplete { _ in limiter.release() }
        let key = ClientKey(client.remoteAddress)
        // The server is chosen and connected to once the client is active (in this initializer
        // it is not yet, and a connect that fails at once must be able to fail over or close
        // it), and with TLS once its handshake is done.
        let clientSide = RelayHandler(whenActive: tls == nil ? { [self] relay in place(client, key, relay) } : nil)
        do {
            if let tls {
                try tls.secure(client, client: Self.describe(client.remoteAddress), logger: logger) {
                    self.place(client, key, clientSide)
                }
            }
            if runtime.configuration.forwardedFor {
                // Before the relay: requests are rewritten on their way to the server.
                try client.pipeline.syncOperations.addHandler(ForwardedForHandler(clientAddress: key.description))
            }
            try addRelay(clientSide, to: client)
        } catch {
            logger.warning("cannot set up the client's connection: \(error)")
            client.close(promise: nil)
        }
    }

    /// Chooses the client's server (each client in turn, so a burst sees the connections
    /// counted before it) and connects.
    private func place(_ client: Channel, _ key: ClientKey, _ clientSide: RelayHandler) {
        let placement = runtime.state.accept(client: key, now: .now())
        if placement.isRefused {
            logger.info("client refused by client_acl \(runtime.configuration.clientACL)",
                        metadata: ["client": "\(Self.describe(client.remoteAddress))",
                                   "abuse_server": "\(runtime.configuration.abuse.map { "\($0.host):\($0.port)" } ?? "none")"])
        } else {
            logger.debug("client accepted", metadata: ["client": "\(Self.describe(client.remoteAddress))"])
        }
        connect(client, clientSide, placement)
    }

    /// Tries the placement's next target; on failure blacklists it and tries the one after.
    /// Bounded: each call consumes one target of the failover plan.
    private func connect(_ client: Channel, _ clientSide: RelayHandler, _ placement: BalancerState.Placement) {
        var placement = placement
        guard let target = runtime.state.nextTarget(&placement, now: .now()), let server = runtime.state.servers[target] else {
            logger.info("no server available, closing client", metadata: ["client": "\(Self.describe(client.remoteAddress))"])
            client.close(promise: nil)
            return
        }
        let configuration = runtime.configuration
        // Its own for each attempt: one that failed to connect is never linked to the client.
        let serverSide = RelayHandler()
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(Int64(configuration.connectTimeoutSeconds)))
            .channelOption(Self.noDelay, value: configuration.tcpNoDelay ? 1 : 0)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.addRelay(serverSide, to: channel) }
            }
        if let source = configuration.sourceAddress, let address = try? SocketAddress(ipAddress: source, port: 0),
           address.protocol == server.address.protocol {
            bootstrap = bootstrap.bind(to: address)
        }
        bootstrap.connect(to: server.address).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let upstream):
                self.relay(client, clientSide, upstream, serverSide, placement, target)
            case .failure(let error):
                self.logger.info("connect to server failed, blacklisting it",
                                 metadata: ["server": "\(server.host):\(server.port)", "error": "\(error)"])
                self.runtime.state.connectFailed(target, now: .now())
                // Connects start once the client is active, so this tells whether it is still there.
                if client.isActive {
                    self.connect(client, clientSide, placement)
                } else {
                    client.close(promise: nil)
                }
            }
        }
    }

    private func relay(_ client: Channel, _ clientSide: RelayHandler, _ upstream: Channel, _ serverSide: RelayHandler,
                       _ placement: BalancerState.Placement, _ target: Target) {
        let clientName = Self.describe(client.remoteAddress)
        let number = runtime.state.connected(placement, to: target, client: clientName, now: .now())
        relayed[number] = (client, upstream)
        connectionLog.watch(upstream, client: client.remoteAddress, logger: logger)
        RelayHandler.link(clientSide, serverSide) { toServer, toClient in
            self.runtime.state.relayed(placement, target: target, toServer: toServer, toClient: toClient)
        }
        client.closeFuture.and(upstream.closeFuture).assumeIsolated().whenComplete { _ in
            self.relayed[number] = nil
            self.runtime.state.finished(placement, connection: number, target: target)
        }
        // Either side may have closed before the link, when its relay had no partner to tell.
        if !client.isActive || !upstream.isActive {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
    }

    /// Half-close is set here rather than as a bootstrap option: NIO applies those through a
    /// generic option store that costs about twice as much per option and connection.
    private func addRelay(_ handler: RelayHandler, to channel: Channel) throws {
        try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        let pipeline = channel.pipeline.syncOperations
        let idleTimeout = runtime.configuration.idleTimeoutSeconds
        if idleTimeout > 0 {
            try pipeline.addHandler(IdleStateHandler(allTimeout: .seconds(Int64(idleTimeout))))
        }
        try pipeline.addHandler(handler)
    }

    static func describe(_ address: SocketAddress?) -> String {
        switch address {
        case .v4: return "\(address?.ipAddress ?? "?"):\(address?.port ?? 0)"
        case .v6: return "[\(address?.ipAddress ?? "?")]:\(address?.port ?? 0)"
        case .unixDomainSocket: return "local"
        case nil: return "?"
        }
    }
}
