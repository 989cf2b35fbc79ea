import BalancerCore
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// UDP mode's sockets (`-U`): the listening socket takes every client's datagrams and sends
/// the replies back from the listening address; each flow (`UDPFlows`, which decides
/// everything) has a socket of its own connected to its server. Runs on the balancer's event
/// loop, with the balancer's state: made there, and reached from NIO's closures through
/// `NIOLoopBound`.
final class UDPRelay: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    /// Room for any datagram (IPv6's largest payload is 65527 bytes), so none is cut short.
    static let datagramCapacity = 65536
    /// Datagrams a flow keeps while its socket opens and until its server first answers, to
    /// send them to the next server if this one refuses. Later ones are not kept.
    static let keptDatagrams = 16
    /// And at most this many bytes of them: a one-way service (syslog, statsd) never answers,
    /// and every flow, spoofed sources included, could otherwise hold 16 × 64 KiB.
    static let keptBytes = 65536
    static let sweepInterval = TimeAmount.seconds(1)

    private unowned let service: BalancerService
    private var flows: UDPFlows
    private var sockets: [SocketAddress: Upstream] = [:]
    private var listener: Channel?
    private var localFailureLog = LogThrottle()

    /// A flow's socket to its server and the datagrams kept for a failover.
    private final class Upstream {
        let attempt: Int
        var channel: Channel?
        var kept: [ByteBuffer]
        var answered = false

        init(attempt: Int, kept: [ByteBuffer]) {
            self.attempt = attempt
            self.kept = kept
        }
    }

    init(service: BalancerService) {
        self.service = service
        self.flows = UDPFlows(configuration: service.configuration)
    }

    /// Binds the listening socket and starts expiring idle flows.
    func bind(_ listen: Endpoint, freeBind: ChannelOptions.Types.SocketOption?) -> EventLoopFuture<Channel> {
        let eventLoop = service.eventLoop
        guard case .inet(let host, let port) = listen else {
            return eventLoop.makeFailedFuture(ConfigurationError("UDP (-U) needs an IP address and port to listen on"))
        }
        let relay = NIOLoopBound(self, eventLoop: eventLoop)
        var bootstrap = Self.bootstrap(eventLoop)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(relay.value) }
            }
        if let freeBind { bootstrap = bootstrap.channelOption(freeBind, value: 1) }
        eventLoop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) { _ in
            relay.value.expire()
        }
        return bootstrap.bind(host: host, port: port).assumeIsolated().map { channel in
            self.listener = channel
            return channel
        }.nonisolated()
    }

    /// The flow limits from a changed configuration (`BalancerService` calls it after each command).
    func adopt(_ configuration: Configuration) {
        flows.adopt(configuration)
    }

    /// `close N` for a flow.
    func close(connection number: Int) {
        guard let client = flows.client(ofConnection: number),
              let flow = service.shared.withLock({ flows.remove(client, state: &$0.state) }) else { return }
        ended(flow)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let client = envelope.remoteAddress
        switch service.shared.withLock({ flows.arrived(from: client, bytes: envelope.data.readableBytes, now: .now(), state: &$0.state) }) {
        case .forward(let flow):
            guard let upstream = sockets[flow.client] else { return }
            send(envelope.data, on: upstream)
        case .open(let flow, let replacing):
            if let replacing { ended(replacing) }
            open(flow, kept: [])
            if let upstream = sockets[client] { send(envelope.data, on: upstream) }
        case .full:
            service.logger.debug("UDP flow table full, dropping datagram", metadata: ["client": "\(client)"])
        case .noServer(let ended):
            if let ended { self.ended(ended) }
            // Debug, not info: one line per datagram would let a flood fill the log.
            service.logger.debug("no server available, dropping datagram", metadata: ["client": "\(client)"])
        }
    }

    /// The listening socket has no peer: an error on it concerns one datagram, not the socket.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        service.logger.debug("UDP listener error", metadata: ["error": "\(error)"])
    }

    /// Sends on the flow's socket once it is open; keeps the first datagrams until the server answers.
    private func send(_ datagram: ByteBuffer, on upstream: Upstream) {
        if !upstream.answered, upstream.kept.count < Self.keptDatagrams,
           upstream.kept.reduce(datagram.readableBytes, { $0 + $1.readableBytes }) <= Self.keptBytes {
            // A copy: the datagram shares a receive buffer of `datagramCapacity` bytes.
            var copy = ByteBufferAllocator().buffer(capacity: datagram.readableBytes)
            copy.writeImmutableBuffer(datagram)
            upstream.kept.append(copy)
            if upstream.channel == nil { return }
        }
        // UDP may drop: a datagram the socket cannot take now is not queued without bound.
        guard let channel = upstream.channel, channel.isWritable else { return }
        channel.writeAndFlush(datagram, promise: nil)
    }

    /// Opens a socket connected to the flow's server, then sends what was kept for it.
    private func open(_ flow: UDPFlows.Flow, kept: [ByteBuffer]) {
        let client = flow.client
        let attempt = flow.attempt
        let upstream = Upstream(attempt: attempt, kept: kept)
        sockets[client] = upstream
        let server = service.shared.withLock { $0.state.servers[flow.target]?.address }
        // `source` when it is of the server's family, else any local address of that family.
        guard let server, let local = service.configuration.sourceAddress(for: server)
                ?? (try? SocketAddress(ipAddress: server.protocol == .inet6 ? "::" : "0.0.0.0", port: 0)) else {
            failed(client, attempt: attempt, reason: "no address for the server")
            return
        }
        let relay = NIOLoopBound(self, eventLoop: service.eventLoop)
        Self.bootstrap(service.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let relay = relay.value
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(
                        onRead: { relay.answered(client, attempt: attempt, reply: $0) },
                        onRefused: { relay.failed(client, attempt: attempt, reason: "refused (ICMP port unreachable)") }))
                }
            }
            .bind(to: local)
            .flatMap { channel in channel.connect(to: server).map { channel } }
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success(let channel):
                    guard self.sockets[client] === upstream else {
                        channel.close(promise: nil)
                        return
                    }
                    upstream.channel = channel
                    channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(client, attempt: attempt) }
                    for datagram in upstream.kept where channel.isWritable { channel.write(datagram, promise: nil) }
                    channel.flush()
                case .failure(let error) where FailureCause(error).isLocal:
                    self.failedLocally(client, attempt: attempt, error)
                case .failure(let error):
                    self.failed(client, attempt: attempt, reason: "\(error)")
                }
            }
    }

    /// A reply from the server goes back to the client from the listening socket.
    private func answered(_ client: SocketAddress, attempt: Int, reply: ByteBuffer) {
        guard service.shared.withLock({ flows.answered(client, attempt: attempt, bytes: reply.readableBytes, now: .now(),
                                                       state: &$0.state) }) != nil else { return }
        if let upstream = sockets[client] {
            upstream.answered = true
            upstream.kept = []
        }
        guard let listener, listener.isWritable else { return }
        listener.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: reply), promise: nil)
    }

    /// The server is not there: blacklisted, and the flow moves on with what it kept.
    private func failed(_ client: SocketAddress, attempt: Int, reason: String) {
        let now = NIODeadline.now()
        let server = flows.flows[client].flatMap { flow in
            service.shared.withLock { $0.state.withServer(flow.target) { spec, _ in Endpoint.describe(host: spec.host, port: spec.port) } }
        }
        switch service.shared.withLock({ flows.failed(client, attempt: attempt, now: now, state: &$0.state) }) {
        case .stale:
            return
        case .moved(let flow):
            service.logger.info("UDP server failed, blacklisting it",
                                metadata: ["server": "\(server ?? "?")", "error": "\(reason)"])
            let previous = sockets.removeValue(forKey: client)
            previous?.channel?.close(promise: nil)
            open(flow, kept: previous?.kept ?? [])
        case .closed(let flow):
            service.logger.info("no server available for UDP client", metadata: ["client": "\(client)"])
            ended(flow)
        }
    }

    /// This host could not open the flow's socket (no descriptor left, a source address it
    /// lacks): the server is not to blame and stays available. The flow ends, its datagrams
    /// are dropped, and the client's next datagram starts a new one.
    private func failedLocally(_ client: SocketAddress, attempt: Int, _ error: Error) {
        if let note = localFailureLog.admitNote(now: .now()) {
            service.logger.warning("local failure opening a UDP flow's socket, no server blacklisted: \(error)\(note)")
        }
        closed(client, attempt: attempt)
    }

    /// A flow's socket closed by itself (an error NIO cannot recover from).
    private func closed(_ client: SocketAddress, attempt: Int) {
        guard sockets[client]?.attempt == attempt, let flow = service.shared.withLock({ flows.remove(client, state: &$0.state) }) else {
            return
        }
        ended(flow)
    }

    private func expire() {
        for flow in service.shared.withLock({ flows.expire(now: .now(), state: &$0.state) }) { ended(flow) }
    }

    /// Closes an ended flow's socket and logs it as TCP logs a connection.
    private func ended(_ flow: UDPFlows.Flow) {
        sockets.removeValue(forKey: flow.client)?.channel?.close(promise: nil)
        let server = service.shared.withLock { $0.state.servers[flow.target]?.address }
        service.connectionLog.record(client: ConnectionLog.logAddress(flow.client), server: ConnectionLog.logAddress(server),
                                     request: PenLogLine.noRequest, logger: service.logger)
    }

    private static func bootstrap(_ eventLoop: EventLoop) -> DatagramBootstrap {
        DatagramBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: datagramCapacity))
    }
}

/// A flow's socket: replies go to `onRead`; ICMP port unreachable (ECONNREFUSED, which NIO
/// reports without closing the socket) to `onRefused`.
private final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let onRead: (ByteBuffer) -> Void
    private let onRefused: () -> Void

    init(onRead: @escaping (ByteBuffer) -> Void, onRefused: @escaping () -> Void) {
        self.onRead = onRead
        self.onRefused = onRefused
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onRead(unwrapInboundIn(data).data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if (error as? IOError)?.errnoCode == ECONNREFUSED { onRefused() }
    }
}
