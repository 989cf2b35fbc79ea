import ArgumentParser
import Balancer
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// `penha [run] [pen's options] [host:]port|/path server...`: pen's command line, unchanged.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Balance connections on a listen address across servers, as pen does.",
        helpNames: [.long]
    )

    @Option(name: .customShort("b"), help: "Blacklist a failed server for this many seconds.")
    var blacklist: Int = 30
    @Option(name: .customShort("c"), help: "Client table size.")
    var clients: Int = 2048
    @Option(name: .customShort("e"), help: "Emergency server host:port, used when all servers fail.")
    var emergency: String?
    @Option(name: .customShort("t"), help: "Connect timeout in seconds.")
    var timeout: Int = 3
    @Option(name: .customShort("x"), help: "Maximum simultaneous connections (0: no limit).")
    var connections: Int = 500
    @Option(name: .customShort("T"), help: "Track clients for this many seconds (0: forever).")
    var tracking: Int = 0
    @Option(name: .customShort("q"), help: "Listen backlog.")
    var backlog: Int = 511
    @Option(name: .customShort("S"), help: "pen's maximum number of servers; penha's table grows as needed.")
    var maxServers: Int?
    @Option(name: [.customShort("O"), .customShort("o")], help: "A penctl command, applied after the options.")
    var commands: [String] = []
    @Flag(name: .customShort("r"), help: "Round-robin without client tracking.")
    var roundRobin = false
    @Flag(name: .customShort("h"), help: "Choose a new client's server by a hash of its address.")
    var hash = false
    @Flag(name: .customShort("W"), help: "Choose the server with the fewest connections per weight.")
    var weight = false
    @Flag(name: .customShort("s"), help: "Stubborn: close the client if its first server fails.")
    var stubborn = false
    @Flag(name: .customShort("f"), help: "Stay in the foreground.")
    var foreground = false
    @Flag(name: .customShort("d"), help: "Debug logging; repeat for more.")
    var debug: Int
    @Flag(name: [.customShort("P"), .customShort("Q")], help: "pen's poll/kqueue choice; penha always uses epoll.")
    var eventMechanism: Int

    // pen options whose parts of penha are not built yet: accepted by the parser only so
    // that they are refused by name, never silently ignored.
    @Option(name: .customShort("C"), help: .hidden) var control: String?
    @Option(name: .customShort("F"), help: .hidden) var configFile: String?
    @Option(name: .customShort("l"), help: .hidden) var logFile: String?
    @Option(name: .customShort("p"), help: .hidden) var pidFile: String?
    @Option(name: .customShort("w"), help: .hidden) var webStats: String?
    @Option(name: .customShort("j"), help: .hidden) var chroot: String?
    @Option(name: .customShort("u"), help: .hidden) var user: String?
    @Option(name: .customShort("E"), help: .hidden) var certificate: String?
    @Option(name: .customShort("K"), help: .hidden) var key: String?
    @Option(name: .customShort("G"), help: .hidden) var caFile: String?
    @Option(name: .customShort("A"), help: .hidden) var caDirectory: String?
    @Option(name: .customShort("L"), help: .hidden) var sslProtocol: String?
    @Option(name: .customShort("B"), help: .hidden) var abuseServer: String?
    @Option(name: .customShort("m"), help: .hidden) var multiAccept: String?
    @Option(name: .customShort("i"), help: .hidden) var windowsService: String?
    @Flag(name: .customShort("X"), help: .hidden) var exitCommand = false
    @Flag(name: .customShort("R"), help: .hidden) var requireCertificate = false
    @Flag(name: .customShort("Z"), help: .hidden) var sslCompatibility = false
    @Flag(name: .customShort("H"), help: .hidden) var forwardedFor = false
    @Flag(name: .customShort("U"), help: .hidden) var udp = false
    @Flag(name: .customShort("a"), help: .hidden) var asciiDump = false

    @Argument(help: "Listen on [host:]port, [v6]:port, :::port or a Unix socket path.")
    var listen: String
    @Argument(help: "Servers: host[:port[:maxc[:hard[:weight[:prio]]]]], IPv6 in brackets.")
    var servers: [String] = []

    func validate() throws {
        let refused: [(given: Bool, option: String, what: String)] = [
            (control != nil, "-C", "the control socket"), (configFile != nil, "-F", "the config file"),
            (logFile != nil, "-l", "the connection log"), (pidFile != nil, "-p", "the pid file"),
            (webStats != nil, "-w", "the HTML status file"), (chroot != nil, "-j", "chroot"),
            (user != nil, "-u", "dropping privileges"), (exitCommand, "-X", "the exit command"),
            (certificate != nil, "-E", "TLS"), (key != nil, "-K", "TLS"), (caFile != nil, "-G", "TLS"),
            (caDirectory != nil, "-A", "TLS"), (requireCertificate, "-R", "TLS"),
            (sslProtocol != nil, "-L", "TLS"), (sslCompatibility, "-Z", "TLS"),
            (forwardedFor, "-H", "HTTP mode"), (udp, "-U", "UDP"), (abuseServer != nil, "-B", "the abuse server"),
            (multiAccept != nil, "-m", "multi-accept"), (asciiDump, "-a", "communication dumps"),
            (windowsService != nil, "-i", "Windows services"),
        ]
        if let first = refused.first(where: \.given) {
            throw ConfigurationError("option \(first.option) (\(first.what)) is not implemented yet")
        }
        for (value, option, minimum) in [(blacklist, "-b", 0), (clients, "-c", 1), (timeout, "-t", 1),
                                         (connections, "-x", 0), (tracking, "-T", 0), (backlog, "-q", 1)]
        where value < minimum {
            throw ConfigurationError("option \(option) must be at least \(minimum), not \(value)")
        }
        guard !servers.isEmpty else { throw ConfigurationError("no servers given after the listen address") }
    }

    /// The command line as a `Configuration`: options first, then `-O` commands, as pen does.
    func makeConfiguration() throws -> Configuration {
        let listenAddress = try ListenAddress.parse(listen)
        var configuration = Configuration(
            listen: listenAddress,
            servers: try servers.map { try ServerSpec.parse($0, defaultPort: listenAddress.port) })
        configuration.emergency = try emergency.map { try ServerSpec.parse($0, defaultPort: listenAddress.port) }
        configuration.blacklistSeconds = blacklist
        configuration.clientsMax = clients
        configuration.connectTimeoutSeconds = timeout
        configuration.connectionsMax = connections
        configuration.trackingSeconds = tracking
        configuration.backlog = backlog
        configuration.debugLevel = debug
        configuration.selection.roundRobin = roundRobin
        configuration.selection.hash = hash
        configuration.selection.weight = weight
        configuration.selection.stubborn = stubborn
        for text in commands {
            do {
                try configuration.apply(try Command.parse(text))
            } catch let error as ConfigurationError {
                throw ConfigurationError("-O '\(text)': \(error.message)")
            }
        }
        return configuration
    }

    func run() throws {
        let configuration = try makeConfiguration()
        let logger = makeLogger(debugLevel: configuration.debugLevel)
        if !foreground {
            logger.warning("penha has no daemon mode yet; staying in the foreground (give -f to silence this)")
        }
        if maxServers != nil || eventMechanism > 0 {
            logger.debug("-S, -P and -Q have no effect: the server table grows as needed and NIO uses epoll")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let service = try BalancerService(configuration: configuration, eventLoop: group.next(), logger: logger)
        let address: SocketAddress?
        do {
            address = try service.start().wait()
        } catch {
            throw RuntimeFailure(description: "cannot listen on \(configuration.listen): \(error)")
        }
        logger.notice("listening on \(configuration.listen.withPort(address?.port))",
                      metadata: ["servers": "\(configuration.servers.count)"])
        let vrrp: VRRPNode
        do {
            vrrp = try VRRPNode(configuration: configuration, service: service, logger: logger)
        } catch {
            throw RuntimeFailure(description: "cannot start VRRP: \(error)")
        }
        // SIGTERM and SIGINT: stop accepting and exit promptly; nothing new is started.
        let number = Signals.next()
        _ = try? service.stop().wait()
        vrrp.stop()
        logger.notice("stopped by signal \(number)")
        Glibc.exit(0)
    }
}

func makeLogger(debugLevel: Int) -> Logger {
    LoggingSystem.bootstrap { label in StreamLogHandler.standardError(label: label) }
    var logger = Logger(label: "penha")
    logger.logLevel = debugLevel >= 2 ? .trace : debugLevel == 1 ? .debug : .info
    return logger
}
