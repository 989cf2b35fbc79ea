import Balancer
import BalancerCore
import PenhaCommandLine
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// `penha logd [-f] [-l FILE] [-n N] [-p PIDFILE] [HOST:]PORT`: pen's penlogd. Takes pen
/// lines (from penha's or pen's `-l HOST:PORT`) and web servers' access-log lines (from
/// `penha logpipe` or pen's penlog) on a UDP port and writes each web server's line with
/// the real client (`LogDaemon` has the rules) to FILE, or stdout. SIGHUP reopens FILE
/// (rotation), SIGUSR1 logs the counts, SIGTERM and SIGINT end it with status 0.
struct LogdCommand: Subcommand {
    var foreground = false
    var logFile: String?
    var capacity = LogdCache.defaultCapacity
    var pidFile: String?
    var listen = ""

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "logd",
            abstract: "Write web servers' access logs with the real clients from penha's -l datagrams (pen's penlogd).",
            defaults: Self(),
            options: [.flag("-f", help: "Stay in the foreground.", \.foreground),
                      .value("-l", valueName: "file", help: "The combined log (default stdout); reopened on SIGHUP.", \.logFile),
                      .value("-n", valueName: "lines", help: "pen lines held for matching.", \.capacity),
                      .value("-p", valueName: "pidfile", help: "Write the process id to this file.", \.pidFile)],
            operands: [.required("[host:]port", help: "The UDP port (on all IPv4 addresses, as penlogd), or host:port.",
                                 \.listen)])
    }

    func validate() throws {
        _ = try boundedNumber(capacity, LogdCache.capacityRange, for: "-n")
        _ = try address()
    }

    /// The address to bind: a bare port is on all IPv4 addresses.
    private func address() throws -> (host: String, port: Int) {
        guard case .inet(let host, let port) = try Endpoint.listenAddress(listen) else {
            throw ConfigurationError("bad logd address '\(listen)': expected [host:]port")
        }
        return (host, port)
    }

    func run() throws {
        let (host, port) = try address()
        let output = try openOutput()
        if !foreground { Daemon.start(arguments: Array(CommandLine.arguments.dropFirst())) }
        let logger = makeLogger(debugLevel: 0)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel: Channel
        let handler: NIOLoopBound<LogdHandler>
        do {
            channel = try DatagramBootstrap(group: group)
                .channelOption(ChannelOptions.recvAllocator,
                               value: FixedSizeRecvByteBufferAllocator(capacity: LogDaemon.maxDatagramBytes + 1))
                .channelInitializer { [capacity] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(LogdHandler(capacity: capacity, output: output))
                    }
                }
                .bind(host: host, port: port).wait()
            // The signal thread reaches the handler only through its event loop.
            handler = try channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: LogdHandler.self), eventLoop: channel.eventLoop)
            }.wait()
        } catch {
            throw RuntimeFailure(description: "cannot listen on UDP \(listen): \(error)")
        }
        if let pidFile {
            do {
                try FileAccess.replace(pidFile, with: "\(getpid())\n")
            } catch {
                throw RuntimeFailure(description: "\(error)")
            }
        }
        logger.notice("logd listening on UDP \(Endpoint.inet(host: host, port: channel.localAddress?.port ?? port))")
        Daemon.signalReady()
        serveSignals(handler, logger: logger)
        _ = try? channel.close().wait()
        if let pidFile { unlink(pidFile) }
        Glibc.exit(0)
    }

    /// FILE opened for appending (a regular file only), or stdout.
    private func openOutput() throws -> Int32 {
        guard let logFile else { return 1 }
        do {
            return try FileAccess.openForAppending(logFile, action: "open log")
        } catch {
            throw RuntimeFailure(description: "\(error)")
        }
    }

    private func serveSignals(_ handler: NIOLoopBound<LogdHandler>, logger: Logger) {
        while true {
            let number = Signals.next()
            switch number {
            case SIGHUP:
                guard logFile != nil else { continue }
                do {
                    let output = try openOutput()
                    try handler.eventLoop.submit { handler.value.replaceOutput(output) }.wait()
                    logger.notice("log reopened")
                } catch {
                    logger.error("log not reopened, still writing the old one: \(error)")
                }
            case SIGUSR1:
                logger.notice("\(Self.describeCounts(handler))")
            default:
                logger.notice("stopped by signal \(number): \(Self.describeCounts(handler))")
                return
            }
        }
    }

    /// `pen lines P rewritten R unmatched U skipped S`.
    private static func describeCounts(_ handler: NIOLoopBound<LogdHandler>) -> String {
        guard let counts = try? handler.eventLoop.submit({ handler.value.counts }).wait() else { return "counts unavailable" }
        return "pen lines \(counts.penLines) rewritten \(counts.rewritten) unmatched \(counts.unmatched) skipped \(counts.skipped)"
    }
}

/// Runs `LogDaemon` on the datagrams and appends what it says to the output, a line a write.
private final class LogdHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private var daemon: LogDaemon
    private var output: Int32

    /// Event loop only (the signal thread reaches it through `submit`, as `NIOLoopBound`).
    init(capacity: Int, output: Int32) {
        daemon = LogDaemon(capacity: capacity)
        self.output = output
    }

    var counts: LogDaemon.Counts { daemon.counts }

    func replaceOutput(_ descriptor: Int32) {
        if output != 1 { close(output) }
        output = descriptor
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let source = Self.ipAddress(envelope.remoteAddress)
        if let line = daemon.receive(envelope.data.readableBytesView, from: source) {
            _ = FileAccess.writeAll(line, to: output)
        }
    }

    /// A datagram socket's errors concern one datagram, not the socket.
    func errorCaught(context: ChannelHandlerContext, error: Error) {}

    /// The sender as pen's lines name servers; an IPv4 sender reaching an IPv6 socket as
    /// `::ffff:a.b.c.d` is `a.b.c.d`.
    static func ipAddress(_ address: SocketAddress) -> String {
        let text = address.ipAddress ?? "?"
        let mapped = "::ffff:"
        if text.hasPrefix(mapped), text.contains(".") { return String(text.dropFirst(mapped.count)) }
        return text
    }
}
