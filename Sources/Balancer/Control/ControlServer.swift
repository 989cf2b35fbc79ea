import BalancerCore
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The control socket, as pen's: a client connects, sends one command line, reads the
/// answer until penha closes the connection (penctl does exactly this). The line ends at
/// a newline or when the client shuts its side; it is bounded in length and in time.
public enum ControlServer {
    static let maxLineBytes = 4096
    /// A client that never finishes its line is closed after this.
    static let lineTimeout = TimeAmount.seconds(10)
    /// Control connections served at once; more wait in the listen backlog. Each holds a
    /// descriptor until its line comes or `lineTimeout`: without a bound, anyone who reaches
    /// a TCP control port could take them all.
    static let maxConnections = 16

    /// Binds the control socket. A Unix socket's directory is created if missing and the
    /// socket is made mode 0600: the socket is the only authentication there is. A TCP port
    /// has none (pen's has none either), so it refuses the commands that name a file unless
    /// `control_tcp_files` is on (`BalancerService.execute`).
    /// `replacing`: the penha that listens on the path now is handing over to this one; the
    /// new socket is renamed over its path, so a client always finds one of them.
    public static func start(_ address: Endpoint, service: BalancerService, replacing: Bool = false,
                             onExit: @escaping @Sendable () -> Void) -> EventLoopFuture<Channel> {
        let eventLoop = service.eventLoop
        // And the data path's back-off when descriptors run out.
        let made = ConnectionLimiter(limit: maxConnections)
        made.warn = { service.logger.warning("control socket: \($0)") }
        // The listener and its connections are all on the service's one loop.
        let limiter = NIOLoopBoundBox.makeBoxSendingValue(made, eventLoop: eventLoop)
        let refusals = NIOLoopBoundBox.makeBoxSendingValue(LogThrottle(), eventLoop: eventLoop)
        // Not a Unix socket: a TCP port, without the file permissions that guard the socket.
        let overTCP = address.socketPath == nil
        let bootstrap = ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(limiter.value) }
            }
            .childChannelInitializer { channel in
                channel.closeFuture.assumeIsolated().whenComplete { _ in limiter.value.release() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ControlHandler(service: service, overTCP: overTCP, refusals: refusals, onExit: onExit))
                }
            }
        switch address {
        case .inet(let host, let port):
            return bootstrap.bind(host: host, port: port)
        case .unix(let path):
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if !directory.isEmpty, mkdir(directory, 0o755) != 0, errno != EEXIST {
                return eventLoop.makeFailedFuture(
                    ConfigurationError("cannot create \(directory): \(SystemErrorText.describe(errno: errno))"))
            }
            do {
                if !replacing { try claim(path) }
            } catch {
                return eventLoop.makeFailedFuture(error)
            }
            // Bound inside a new directory only penha can enter, made 0600 there, then renamed
            // into place: there is no moment in which another user could connect, and the
            // process-wide umask is left alone. Not NIO's cleanup: it would unlink a live
            // socket; `claim` removed a stale one.
            var template = Array("\(directory.isEmpty ? "." : directory)/.penha-XXXXXX".utf8CString)
            guard mkdtemp(&template) != nil else {
                return eventLoop.makeFailedFuture(
                    ConfigurationError("cannot create a directory beside \(path): \(SystemErrorText.describe(errno: errno))"))
            }
            let staging = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let staged = staging + "/s"
            return bootstrap.bind(unixDomainSocketPath: staged, cleanupExistingSocketFile: false).flatMapErrorThrowing { error in
                rmdir(staging)
                throw error
            }.flatMapThrowing { channel in
                defer { rmdir(staging) }
                guard chmod(staged, 0o600) == 0, rename(staged, path) == 0 else {
                    let failure = IOError(errnoCode: errno, reason: "rename")
                    unlink(staged)
                    channel.close(promise: nil)
                    throw failure
                }
                return channel
            }
        }
    }
}

extension ControlServer {
    /// A control socket path that must not be taken: a running penha listens there, or it
    /// is not a socket at all.
    public struct PathRefused: Error, CustomStringConvertible {
        public let description: String
    }

    /// Frees `path` for a new control socket without taking it from a running penha: a
    /// socket that accepts a connection is in use and left alone; one that refuses it was
    /// left by a penha that died (kill -9) and is removed; anything else is never unlinked.
    static func claim(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            guard errno == ENOENT else { throw IOError(errnoCode: errno, reason: "lstat") }
            return
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw PathRefused(description: "\(path) exists and is not a socket; penha does not replace it")
        }
        let address = try SocketAddress(unixDomainSocketPath: path)
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard probe >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        let connected = address.withSockAddr { connect(probe, $0, socklen_t($1)) } == 0
        let connectError = errno
        close(probe)
        // EAGAIN: a listener whose backlog is full, alive all the same.
        if connected || connectError == EAGAIN {
            throw PathRefused(description: "another penha is listening on \(path)")
        }
        guard connectError == ECONNREFUSED else { throw IOError(errnoCode: connectError, reason: "connect") }
        guard unlink(path) == 0 || errno == ENOENT else { throw IOError(errnoCode: errno, reason: "unlink") }
    }
}

/// One control connection: collects the line, runs it, writes the answer, closes.
final class ControlHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let service: BalancerService
    private let overTCP: Bool
    /// The listener's, shared by its connections.
    private let refusals: NIOLoopBoundBox<LogThrottle>
    private let onExit: @Sendable () -> Void
    private var line: [UInt8] = []
    private var answered = false
    /// Whether `control_acl` lets the peer in; a refused peer's line is read and answered
    /// with an error (closing on unread data would reset the connection before it is read).
    private var admitted = false
    private var timeout: Scheduled<Void>?

    init(service: BalancerService, overTCP: Bool, refusals: NIOLoopBoundBox<LogThrottle>,
         onExit: @escaping @Sendable () -> Void) {
        self.service = service
        self.overTCP = overTCP
        self.refusals = refusals
        self.onExit = onExit
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        admitted = service.admitsControlConnection(from: channel.remoteAddress, refusals: &refusals.value)
        timeout = context.eventLoop.scheduleTask(in: ControlServer.lineTimeout) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        let bytes = unwrapInboundIn(data).readableBytesView
        if let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
            line += bytes[..<newline]
            answer(context)
        } else {
            line += bytes
            if line.count > ControlServer.maxLineBytes {
                reply(context, Reply(errors: ["command longer than \(ControlServer.maxLineBytes) bytes"]))
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, !answered {
            answer(context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func answer(_ context: ChannelHandlerContext) {
        answered = true
        guard line.count <= ControlServer.maxLineBytes else {
            reply(context, Reply(errors: ["command longer than \(ControlServer.maxLineBytes) bytes"]))
            return
        }
        guard admitted else {
            reply(context, Reply(errors: ["access denied by control_acl"]))
            return
        }
        let text = String(decoding: line, as: UTF8.self)
        if HandoverPolicy.isRequest(text) { return handOver(context, text) }
        service.execute(text, overTCP: overTCP).assumeIsolated().whenSuccess { reply in
            self.reply(context, reply)
        }
    }

    /// A new penha process asks for this one's listener and connections: never a command (it
    /// could not carry descriptors), so it is taken before the parser. Unix sockets only: the
    /// kernel tells who is asking (SO_PEERCRED), which a TCP port cannot.
    private func handOver(_ context: ChannelHandlerContext, _ text: String) {
        guard !overTCP, let path = HandoverPolicy.requestedPath(text), let provider = context.channel as? SocketOptionProvider else {
            return reply(context, Reply(errors: ["handover refused: a handover is asked for on a Unix control socket, as "
                                                 + "'\(HandoverMessage.requestLine) /absolute/path'"]))
        }
        // Bounded by the handover's own waits, not the line's.
        timeout?.cancel()
        let service = self.service
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        credentials.flatMap { peer in
            service.handOver(to: path, requester: (peer.pid, peer.uid))
        }.recover { error in
            Reply(errors: ["handover refused: SO_PEERCRED: \(error)"])
        }.assumeIsolated().whenSuccess { reply in
            self.reply(context, reply)
        }
    }

    private func reply(_ context: ChannelHandlerContext, _ reply: Reply) {
        answered = true
        let text = reply.wireLines.map { $0 + "\n" }.joined()
        let onExit = self.onExit
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
            if reply.exitRequested { onExit() }
        }
    }
}

/// struct ucred as SO_PEERCRED fills it (Linux: pid_t, uid_t, gid_t), which Swift's Glibc
/// module does not import.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
