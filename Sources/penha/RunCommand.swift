import Balancer
import BalancerCore
import Logging
import NIOCore
import NIOPosix
import PenhaCommandLine
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// `penha [run] [pen's options] [host:]port|/path server...`: pen's command line, unchanged.
struct RunCommand: Subcommand {
    var blacklist = 30
    var clients = 2048
    var emergency: String?
    var abuseServer: String?
    var timeout = 3
    var connections = 500
    var tracking = 0
    var backlog = 511
    var maxServers: Int?
    var commands: [String] = []
    var roundRobin = false
    var hash = false
    var hashWithoutTracking = false
    var weight = false
    var forwardedFor = false
    var udp = false
    var stubborn = false
    var foreground = false
    var debug = 0
    var eventMechanism = 0
    var control: String?
    var configFile: String?
    var logFile: String?
    var pidFile: String?
    var exitCommand = false
    var webStats: String?
    var chroot: String?
    var user: String?
    var certificate: String?
    var key: String?
    var caFile: String?
    var caDirectory: String?
    var sslProtocol: String?
    var requireCertificate = false
    var sslCompatibility = false
    // pen options whose parts of penha are not built yet: accepted by the parser only so
    // that they are refused by name, never silently ignored.
    var multiAccept: String?
    var windowsService: String?
    var asciiDump = false
    var takeover: String?
    var listen: String?
    var servers: [String] = []

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "run", abstract: "Balance connections on a listen address across servers, as pen does.", defaults: Self(),
            options: [
                .value("-b", valueName: "seconds", help: "Blacklist a failed server for this many seconds.", \.blacklist),
                .value("-c", valueName: "slots", help: "Client table size.", \.clients),
                .value("-e", valueName: "host:port", help: "Emergency server host:port, used when all servers fail.", \.emergency),
                .value("-B", valueName: "host:port", help: "Abuse server host:port: where clients refused by client_acl go.",
                       \.abuseServer),
                .value("-t", valueName: "seconds", help: "Connect timeout in seconds.", \.timeout),
                .value("-x", valueName: "connections", help: "Maximum simultaneous connections (0: no limit).", \.connections),
                .value("-T", valueName: "seconds", help: "Track clients for this many seconds (0: forever).", \.tracking),
                .value("-q", valueName: "backlog", help: "Listen backlog.", \.backlog),
                .value("-S", valueName: "servers", help: "pen's maximum number of servers; penha's table grows as needed.",
                       \.maxServers),
                .value("-O", "-o", valueName: "command", help: "A penctl command, applied after the options.", \.commands),
                .flag("-r", help: "Round-robin without client tracking.", \.roundRobin),
                .flag("-h", help: "Choose a new client's server by a hash of its address.", \.hash),
                .flag("-N", help: "Hash of the client address, without client tracking (-h -r).", \.hashWithoutTracking),
                .flag("-W", help: "Choose the server with the fewest connections per weight.", \.weight),
                .flag("-H", help: "HTTP mode: add X-Forwarded-For with the client's address to each request.", \.forwardedFor),
                .flag("-U", help: "UDP: balance datagrams, a flow per client address and port.", \.udp),
                .flag("-s", help: "Stubborn: close the client if its first server fails.", \.stubborn),
                .flag("-f", help: "Stay in the foreground.", \.foreground),
                .count("-d", help: "Debug logging; repeat for more.", \.debug),
                .count("-P", "-Q", help: "pen's poll/kqueue choice; penha always uses epoll.", \.eventMechanism),
                .value("-C", valueName: "socket", help: "Control socket: digits are a port (on loopback), a ':' makes host:port "
                           + "(off loopback only with control_acl), anything else is a Unix socket path (relative: from the "
                           + "working directory).", \.control),
                .value("-F", valueName: "file", help: "Config file of penctl commands, read after the command line and on SIGHUP.",
                       \.configFile),
                .value("-l", valueName: "file|host:port",
                       help: "pen's log, a line per connection: a file, or host:port of a log daemon (penha logd).", \.logFile),
                .value("-p", valueName: "file", help: "Write the process id to this file.", \.pidFile),
                .flag("-X", help: "Allow the exit command on the control socket.", \.exitCommand),
                .value("-w", valueName: "file", help: "HTML status report, written on SIGUSR1 and every 30 seconds.", \.webStats),
                .value("-j", valueName: "directory", help: "chroot into this directory after binding.", \.chroot),
                .value("-u", valueName: "user",
                       help: "Run as this user after binding (with vrrp keeping CAP_NET_RAW and CAP_NET_ADMIN).", \.user),
                .value("-E", valueName: "file", help: "TLS: serve clients with this certificate (PEM, chain after it).",
                       \.certificate),
                .value("-K", valueName: "file", help: "TLS: the private key (PEM), if not in the -E file.", \.key),
                .value("-G", valueName: "file", help: "TLS: CA certificates that client certificates are checked against.",
                       \.caFile),
                .value("-A", valueName: "directory", help: "TLS: a directory of hashed CA certificates, the same use.",
                       \.caDirectory),
                .value("-L", valueName: "version", help: "TLS: the oldest version accepted, tls1.2 (default) or tls1.3.",
                       \.sslProtocol),
                .flag("-R", help: "TLS: refuse clients without a certificate from the -G/-A CAs.", \.requireCertificate),
                .flag("-Z", help: nil, \.sslCompatibility),
                .value("-m", valueName: "count", help: nil, \.multiAccept),
                .value("-i", valueName: "name", help: nil, \.windowsService),
                .flag("-a", help: nil, \.asciiDump),
                .value("--takeover", valueName: "socket",
                       help: "Take the listener and connections of the penha whose control socket this is, with the same "
                           + "configuration (penha upgrade does this); it exits once they moved.", \.takeover),
            ],
            operands: [
                .optional("listen", help: "Listen on [host:]port, [v6]:port, :::port or a Unix socket path (or a 'listen' "
                              + "line in the -F file).", \.listen),
                .list("servers", help: "Servers: host[:port[:maxc[:hard[:weight[:prio]]]]], IPv6 in brackets.", \.servers),
            ])
    }

    func validate() throws {
        let refused: [(given: Bool, option: String, what: String)] = [
            (multiAccept != nil, "-m", "multi-accept"), (asciiDump, "-a", "communication dumps"),
            (windowsService != nil, "-i", "Windows services"),
        ]
        if let first = refused.first(where: \.given) {
            throw ConfigurationError("option \(first.option) (\(first.what)) is not implemented yet")
        }
        if udp && certificate != nil {
            throw ConfigurationError("options -U and -E cannot be combined: penha terminates TLS over TCP only")
        }
        for (value, setting, option) in settingOptions { _ = try setting.check(value, as: "option \(option)") }
        _ = try boundedNumber(backlog, 1...Limits.backlog, for: "option -q")
        guard !servers.isEmpty || configFile != nil else {
            throw ConfigurationError(listen == nil ? "no listen address and no servers given" : "no servers given after the listen address")
        }
    }

    /// The options that set a command's number, checked by its bounds.
    private var settingOptions: [(Int, Command.Setting, String)] {
        [(blacklist, .blacklist, "-b"), (clients, .clientsMax, "-c"), (timeout, .timeout, "-t"),
         (connections, .connectionsMax, "-x"), (tracking, .tracking, "-T")]
    }

    /// The command line as a `Configuration`: options first, then `-O` commands, then the
    /// `-F` file, as pen does. `commandLine` is the part before the file, which a reload
    /// applies the file to again.
    func makeConfiguration() throws -> (commandLine: Configuration, running: Configuration) {
        var errors = ConfigurationErrors(collecting: false)
        let made = try makeConfiguration(reporting: &errors)
        return (made.commandLine, made.running)
    }

    /// The same, with errors in `-O` and the `-F` file sent to `errors`, which stops at the
    /// first (run) or collects them and goes on (check). `lines` are `-O`'s and the file's,
    /// for the origins of later errors. An error in the options themselves is thrown.
    func makeConfiguration(reporting errors: inout ConfigurationErrors) throws
        -> (commandLine: Configuration, running: Configuration, lines: [ConfigLine]) {
        var given: [ConfigLine] = []
        for text in commands {
            let origin = "-O '\(text)'"
            do {
                given.append(ConfigLine(try Command.parse(text), origin: origin))
            } catch let error as ConfigurationError {
                try errors.add(error.at(origin))
            }
        }
        do {
            given = try ConfigFile.expandIncludes(given)
        } catch let error as ConfigurationError {
            try errors.add(error)
        }
        let (fileLines, fileErrors) = configFile.map(ConfigFile.readAll) ?? ([], [])
        try errors.add(fileErrors)
        let options = try optionsConfiguration(listen: try listenAddress(in: given + fileLines))
        let (commandLine, commandErrors) = options.applyingAll(given)
        try errors.add(commandErrors)
        let (configuration, applyErrors) = commandLine.applyingAll(fileLines)
        try errors.add(applyErrors)
        for check in [{ try controlAddress.checkProtected(by: configuration) },
                      { try configuration.metrics?.checkProtected(by: configuration.accessLists) }] {
            do {
                try check()
            } catch let error as ConfigurationError {
                try errors.add(error)
            }
        }
        try errors.add(configuration.conflicts)
        if configuration.servers.isEmpty {
            try errors.add(ConfigurationError("no servers: give them after the listen address or as 'server' lines in \(configFile ?? "-F")"))
        }
        return (commandLine, configuration, given + fileLines)
    }

    /// The listen address: the command line's, else the last `listen` line of `-O` or the
    /// `-F` file (an operator's unit then names no address).
    private func listenAddress(in lines: [ConfigLine]) throws -> Endpoint {
        if let listen { return try Endpoint.listenAddress(listen) }
        for line in lines.reversed() {
            if let listen = line.command.payload(as: ListenAddress.self) { return listen.address }
        }
        throw ConfigurationError("no listen address: give it first on the command line or as 'listen ADDRESS' in the -F file")
    }

    /// The options alone, before `-O` and `-F`.
    private func optionsConfiguration(listen listenAddress: Endpoint) throws -> Configuration {
        var configuration = Configuration(
            listen: listenAddress,
            servers: try servers.map { try ServerSpec.parse($0, defaultPort: listenAddress.port) })
        configuration.emergency = try emergency.map { try ServerSpec.parse($0, defaultPort: listenAddress.port) }
        configuration.abuse = try abuseServer.map { try ServerSpec.parse($0, defaultPort: listenAddress.port) }
        configuration.listenOnCommandLine = listen != nil
        for (value, setting, _) in settingOptions { configuration[keyPath: setting.field] = value }
        configuration.backlog = backlog
        configuration.debugLevel = debug
        configuration.selection.roundRobin = roundRobin || hashWithoutTracking
        configuration.selection.hash = hash || hashWithoutTracking
        configuration.selection.weight = weight
        configuration.selection.stubborn = stubborn
        configuration.forwardedFor = forwardedFor
        configuration.udp = udp
        configuration.logFile = logFile
        configuration.webStatsFile = webStats
        configuration.tls = try TLSSettings.commandLine(
            certificate: certificate, key: key, caFile: caFile, caDirectory: caDirectory,
            requireClientCertificate: requireCertificate, protocolName: sslProtocol, compatibility: sslCompatibility)
        return configuration
    }

    func run() throws {
        let (commandLine, configuration) = try makeConfiguration()
        // Before any thread exists: the detached penha is a fresh process.
        if !foreground { Daemon.start(arguments: Array(CommandLine.arguments.dropFirst())) }
        let logger = makeLogger(debugLevel: configuration.debugLevel)
        if maxServers != nil || eventMechanism > 0 {
            logger.debug("-S, -P and -Q have no effect: the server table grows as needed and the engine uses epoll")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let service: BalancerService
        do {
            service = try BalancerService(configuration: configuration, eventLoop: group.next(), logger: logger,
                                          options: .init(exitEnabled: exitCommand, configFile: configFile,
                                                         commandLine: commandLine))
        } catch let error as PenhaError where error.kind == .configuration {
            throw error
        } catch {
            throw RuntimeFailure(description: "cannot start: \(SystemErrorText.describe(error))")
        }
        let handover: Takeover?
        do {
            handover = try takeover.map { try Takeover(controlPath: $0, oldUser: try Takeover.oldProcessUser(runAs: user, chroot: chroot)) }
        } catch {
            throw RuntimeFailure(description: "takeover failed, the old penha serves on: \(error)")
        }
        let address: SocketAddress?
        do {
            address = try service.start(adoptingListener: handover?.listener).wait()
        } catch {
            throw RuntimeFailure(description: "cannot listen on \(configuration.listen): \(SystemErrorText.describe(error))")
        }
        var resumedVRRP: [VRRPResumption] = []
        if let handover {
            do {
                let (answer, vrrp) = try handover.adoptConnections(into: service)
                logger.notice("took over from pid \(handover.oldProcess): \(answer)")
                resumedVRRP = vrrp
            } catch {
                throw RuntimeFailure(description: "takeover failed, the old penha serves on: \(error)")
            }
        }
        let controlChannel: Channel?, metricsChannel: Channel?, vrrp: VRRPNode
        do {
            (controlChannel, metricsChannel, vrrp) = try startAfterListening(service, configuration: configuration,
                                                                             address: address, replacing: handover != nil,
                                                                             resumingVRRP: resumedVRRP, logger: logger)
        } catch {
            // A start that fails after the listener leaves nothing announced: the BGP routes go.
            _ = try? service.stop().wait()
            throw error
        }
        service.attachVRRP(vrrp)
        Daemon.signalReady()
        if handover != nil { Successor.signalTookOver() }
        let systemd = SystemdNotifier(logger: logger)
        try? systemd?.ready(service).wait()
        let updates = systemd?.startUpdates(service, vrrp: vrrp)
        serveSignals(service, systemd: systemd, logger: logger)
        // Its own waits bound a handover under way (5 s a frame); the successor's start is given as long.
        service.closeHandovers(waitingAtMost: .seconds(Int(Successor.startSeconds)))
        let successor = service.handedOverTo
        if let successor {
            // systemd follows the new process as the unit's main one (NotifyAccess=main: this one may say so).
            systemd?.send(["MAINPID=\(successor)", "STATUS=handed over to pid \(successor)"])
        } else {
            systemd?.stopping()
        }
        updates?.forEach { $0.cancel() }
        // What this process made and leaves: the pid file, and the Unix sockets it bound (a
        // later penha would replace them as stale, but a socket nobody serves is litter).
        // Not after -j: the paths would name files inside the jail. Not after a handover
        // either: the new process has them now.
        let bound = [configuration.listen.socketPath, controlChannel == nil ? nil : (try? controlAddress)?.socketPath]
        let sockets = chroot == nil && successor == nil ? bound.compactMap { $0 } : []
        let ownPidFile = successor == nil ? pidFile : nil
        let removeFiles: @Sendable () -> Void = { (sockets + [ownPidFile].compactMap { $0 }).forEach { _ = unlink($0) } }
        let deadline = ShutdownDeadline(logger: logger, beforeExit: removeFiles)
        // VRRP first: the master resigns (priority 0) and removes its VIPs, so the backup
        // takes over at once, even if a later step is what the deadline cuts short.
        vrrp.stop()
        _ = try? service.stop().wait()
        drain(service, deadline: deadline, systemd: systemd, logger: logger)
        vrrp.drainEnded()
        _ = try? service.drainEnded().wait()
        _ = try? controlChannel?.close().wait()
        _ = try? metricsChannel?.close().wait()
        removeFiles()
        Glibc.exit(0)
    }

    /// What starts once the listener is bound: the control socket, the metrics, the pid file,
    /// the privileges given up, and VRRP.
    private func startAfterListening(_ service: BalancerService, configuration: Configuration, address: SocketAddress?,
                                     replacing: Bool, resumingVRRP: [VRRPResumption],
                                     logger: Logger) throws -> (control: Channel?, metrics: Channel?, vrrp: VRRPNode) {
        let controlChannel = try startControl(service, replacing: replacing, logger: logger)
        let metricsChannel = try configuration.metrics.map { endpoint in
            do {
                let channel = try startMetrics(endpoint, service, replacing: replacing)
                logger.info("metrics on http://\(endpoint)/metrics")
                return channel
            } catch {
                throw RuntimeFailure(description: "cannot listen for metrics on \(endpoint): \(SystemErrorText.describe(error))")
            }
        }
        if let pidFile {
            do {
                try FileAccess.replace(pidFile, with: "\(getpid())\n")
            } catch {
                throw RuntimeFailure(description: "\(error)")
            }
        }
        // bgp adds and deletes its routes through netlink: CAP_NET_ADMIN, as vrrp's addresses.
        try Privileges.confine(chroot: chroot, user: user,
                               keepNetworkCapabilities: !configuration.vrrpInstances.isEmpty || configuration.bgp != nil,
                               keepBPF: configuration.vrrpInstances.contains { $0.secondChance != nil } || configuration.bgp?.secondChance != nil)
        logger.notice("listening on \(configuration.listen.withPort(address?.port))",
                      metadata: ["servers": "\(configuration.servers.count)"])
        let vrrp: VRRPNode
        do {
            vrrp = try VRRPNode(configuration: configuration, service: service, logger: logger, resuming: resumingVRRP)
        } catch {
            throw RuntimeFailure(description: "cannot start VRRP: \(error)")
        }
        return (controlChannel, metricsChannel, vrrp)
    }

    /// The metrics listener; after a takeover the old penha holds the port until it exits,
    /// a moment after the handover, so the bind is tried again for at most 3 s.
    private func startMetrics(_ endpoint: MetricsEndpoint, _ service: BalancerService, replacing: Bool) throws -> Channel {
        for _ in 0..<(replacing ? 30 : 0) {
            if let channel = try? MetricsServer.start(endpoint, service: service).wait() { return channel }
            usleep(100_000)
        }
        return try MetricsServer.start(endpoint, service: service).wait()
    }

    /// The listener is closed (new clients are refused at once): the established connections
    /// are relayed on until they end, `drain`'s bound passes or a second SIGTERM comes
    /// (`Drain`); the main thread takes the signals meanwhile, and STATUS= says how it goes.
    private func drain(_ service: BalancerService, deadline: ShutdownDeadline, systemd: SystemdNotifier?, logger: Logger) {
        service.startDraining()
        var started = false
        var reported = ContinuousClock.now
        while case .wait = service.drainDecision() {
            if !started || ContinuousClock.now - reported >= .seconds(1) {
                reported = .now
                // Read without the event loop or the thread pool: a batch stuck there (a host
                // name that does not resolve) must not make the deadline cut the drain short.
                if let draining = service.drainReport() {
                    if !started { logger.notice("\(draining.text) (drain \(draining.secondsLeft))") }
                    // The bound, as `drain N` may have moved it, and the margin after it.
                    deadline.allow(draining.secondsLeft + ShutdownDeadline.seconds)
                    systemd?.send(["STATUS=\(SystemdNotifier.stoppingStatus(draining))"])
                }
                started = true
            }
            switch Signals.next(within: 100) {
            case let number? where number == SIGTERM || number == SIGINT:
                logger.notice("stopped by \(Signals.name(number)) again: closing the connections still open")
                service.interruptDrain()
            case let number?:
                logger.notice("\(Signals.name(number)) ignored: penha is stopping (draining)")
            case nil:
                break
            }
        }
        // What is left after the drain (closing, the control socket) gets the margin again.
        deadline.allow(ShutdownDeadline.seconds)
        if case .exit(let closing) = service.drainDecision(), closing > 0 {
            logger.notice("drain: closing \(closing) connections still open")
        }
    }

    /// `-C`, or the default socket.
    var controlAddress: Endpoint {
        get throws { try control.map(Endpoint.controlAddress) ?? .unix(path: Endpoint.defaultControlPath) }
    }

    /// `-C`, or the default socket when it can be made (root); a `-C` that fails is fatal.
    private func startControl(_ service: BalancerService, replacing: Bool, logger: Logger) throws -> Channel? {
        let address = try controlAddress
        // `exit` is sent as SIGTERM to this process, so it takes the same path as a signal.
        let onExit: @Sendable () -> Void = { kill(getpid(), SIGTERM) }
        do {
            let channel = try ControlServer.start(address, service: service, replacing: replacing, onExit: onExit).wait()
            let bound: Endpoint
            if case .inet(let host, _) = address, let port = channel.localAddress?.port {
                bound = .inet(host: host, port: port)
            } else {
                bound = address
            }
            service.setControlAddress(bound)
            logger.info("control socket on \(bound)")
            return channel
        } catch let refused as ControlServer.PathRefused {
            // Not a warning even for the default socket: the penha that owns it would lose it.
            throw ConfigurationError(refused.description)
        } catch where control == nil {
            logger.warning("no control socket: cannot listen on \(address): \(SystemErrorText.describe(error)) (give -C to choose one)")
            return nil
        } catch {
            throw RuntimeFailure(description: "cannot listen for control on \(address): \(SystemErrorText.describe(error))")
        }
    }

    /// Serves SIGHUP (reload), SIGUSR1 (statistics) and SIGUSR2 (upgrade: `SignalledUpgrade`)
    /// until SIGTERM or SIGINT, never waiting for them here: a reload stuck on a file must not
    /// keep SIGTERM from being taken. A successful upgrade stops this process with SIGTERM.
    private func serveSignals(_ service: BalancerService, systemd: SystemdNotifier?, logger: Logger) {
        let reload = CoalescedWork(on: service.eventLoop) {
            systemd?.reloading()
            // The service logs the outcome; a refused reload leaves penha running as it was.
            return service.reload().map { _ in }.recover { _ in }.flatMap {
                systemd?.ready(service) ?? service.eventLoop.makeSucceededVoidFuture()
            }
        }
        let statistics = CoalescedWork(on: service.eventLoop) {
            service.statistics().recover { _ in ["statistics unavailable"] }.map { lines in
                for line in lines { logger.notice("\(line)") }
            }
        }
        let upgrade = SignalledUpgrade(logger: logger)
        while true {
            let number = Signals.next()
            switch number {
            case SIGHUP:
                reload.request()
            case SIGUSR1:
                statistics.request()
            case SIGUSR2:
                upgrade.request(socket: (try? controlAddress)?.socketPath)
            default:
                logger.notice("stopped by \(Signals.name(number))")
                return
            }
        }
    }
}
