import Logging
import NIOCore
import NIOPosix

/// The TCP data path: accepts clients, asks `BalancerState` where each goes, connects with
/// failover, and relays. All state lives on one event loop, so `BalancerState` needs no locks.
public final class BalancerService {
    public let configuration: Configuration
    public let eventLoop: EventLoop
    private var state: BalancerState
    private let logger: Logger
    private let limiter: ConnectionLimiter
    private var listener: Channel?

    /// Resolves the servers (exits early with a clear error if one cannot be resolved).
    public init(configuration: Configuration, eventLoop: EventLoop, logger: Logger) throws {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.state = try configuration.makeState()
        self.logger = logger
        self.limiter = ConnectionLimiter(limit: configuration.connectionsMax)
    }

    /// Binds the listening socket; returns the address actually bound (useful with port 0).
    public func start() -> EventLoopFuture<SocketAddress?> {
        let limiter = self.limiter
        let isUnix: Bool
        if case .unix = configuration.listen { isUnix = true } else { isUnix = false }
        var bootstrap = ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: configuration.backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(limiter) }
            }
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { self.accepted(channel) }
            }
        if !isUnix, !configuration.vrrpInstances.isEmpty {
            // A backup listens on the virtual address before it is on the interface, so it
            // serves the moment it becomes master. (IP level: Linux applies it to IPv6 sockets too.)
            bootstrap = bootstrap.serverChannelOption(
                ChannelOptions.socket(SocketOptionLevel(IPPROTO_IP), SocketOptionName(IP_FREEBIND)), value: 1)
        }
        if !isUnix {
            bootstrap = bootstrap.childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay),
                                                     value: configuration.tcpNoDelay ? 1 : 0)
        }
        let bound: EventLoopFuture<Channel>
        switch configuration.listen {
        case .inet(let host, let port): bound = bootstrap.bind(host: host, port: port)
        case .unix(let path): bound = bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
        }
        return bound.map { channel in
            self.eventLoop.assertInEventLoop()
            self.listener = channel
            return channel.localAddress
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
        eventLoop.submit { body(&self.state) }
    }

    private func accepted(_ client: Channel) {
        let limiter = self.limiter
        client.closeFuture.assumeIsolated().whenComplete { _ in limiter.release() }
        let placement = state.accept(client: ClientKey(client.remoteAddress), now: .now())
        logger.debug("client accepted", metadata: ["client": "\(client.remoteAddress.map { "\($0)" } ?? "?")"])
        connect(client, placement)
    }

    /// Tries the placement's next target; on failure blacklists it and tries the one after.
    /// Bounded: each call consumes one target of the failover plan.
    private func connect(_ client: Channel, _ placement: BalancerState.Placement) {
        var placement = placement
        guard let target = state.nextTarget(&placement, now: .now()), let server = state.servers[target] else {
            logger.info("no server available, closing client", metadata: ["client": "\(client.remoteAddress.map { "\($0)" } ?? "?")"])
            client.close(promise: nil)
            return
        }
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(Int64(configuration.connectTimeoutSeconds)))
            .channelOption(ChannelOptions.autoRead, value: false)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: configuration.tcpNoDelay ? 1 : 0)
        if let source = configuration.sourceAddress, let address = try? SocketAddress(ipAddress: source, port: 0),
           address.protocol == server.address.protocol {
            bootstrap = bootstrap.bind(to: address)
        }
        bootstrap.connect(to: server.address).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let upstream):
                self.relay(client, upstream, placement, target)
            case .failure(let error):
                self.logger.info("connect to server failed, blacklisting it",
                                 metadata: ["server": "\(server.host):\(server.port)", "error": "\(error)"])
                self.state.connectFailed(target, now: .now())
                // Retries run after the accepted channel is registered, so isActive tells whether
                // the client is still there (in the child initializer it is not yet active).
                if client.isActive { self.connect(client, placement) }
            }
        }
    }

    private func relay(_ client: Channel, _ upstream: Channel, _ placement: BalancerState.Placement, _ target: Target) {
        state.connected(placement, to: target)
        let (clientSide, serverSide) = RelayHandler.pair()
        do {
            try addRelay(clientSide, to: client)
            try addRelay(serverSide, to: upstream)
        } catch {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
        client.closeFuture.and(upstream.closeFuture).assumeIsolated().whenComplete { _ in
            self.state.finished(placement, target: target, sent: clientSide.bytesRead, received: serverSide.bytesRead)
        }
        // Either side may have gone before its relay handler was there to see it go.
        if !client.isActive || !upstream.isActive {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }
    }

    private func addRelay(_ handler: RelayHandler, to channel: Channel) throws {
        let pipeline = channel.pipeline.syncOperations
        if configuration.idleTimeoutSeconds > 0 {
            try pipeline.addHandler(IdleStateHandler(allTimeout: .seconds(Int64(configuration.idleTimeoutSeconds))))
        }
        try pipeline.addHandler(handler)
        _ = channel.setOption(ChannelOptions.autoRead, value: true)
    }
}
