import BalancerCore
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The TCP data path: accepts clients (within `-x`, `ConnectionLimiter`), asks
/// `BalancerState` where each goes, connects with failover, and relays (`RelayHandler`),
/// with TLS and X-Forwarded-For in front when they are on. Runs on the service's event loop.
final class TCPFrontEnd {
    private unowned let service: BalancerService
    private let limiter: ConnectionLimiter
    private let tls: TLSTermination?
    private var listener: Channel?

    init(service: BalancerService) {
        self.service = service
        limiter = ConnectionLimiter(limit: service.runtime.configuration.connectionsMax)
        tls = service.tls
    }

    func bind(_ configuration: Configuration, freeBind: ChannelOptions.Types.SocketOption?) -> EventLoopFuture<Channel> {
        let limiter = self.limiter
        limiter.warn = { [service] in service.logger.warning("\($0)") }
        var bootstrap = ServerBootstrap(group: service.eventLoop)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: configuration.backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(limiter) }
            }
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { self.accepted(channel) }
            }
        if let freeBind { bootstrap = bootstrap.serverChannelOption(freeBind, value: 1) }
        let bound: EventLoopFuture<Channel>
        switch configuration.listen {
        case .inet(let host, let port):
            // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one setsockopt
            // instead of one per connection.
            bound = bootstrap.serverChannelOption(Self.noDelay, value: configuration.tcpNoDelay ? 1 : 0)
                .bind(host: host, port: port)
        case .unix(let path):
            // As the control socket: a stale socket is replaced, a live one or a file is not.
            do {
                try ControlServer.claim(path)
            } catch {
                return service.eventLoop.makeFailedFuture(error)
            }
            bound = bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false)
        }
        return bound.map { channel in
            self.listener = channel
            return channel
        }
    }

    /// The connection limit and TCP_NODELAY for the connections accepted from now on.
    func adopt(_ configuration: Configuration) {
        limiter.limit = configuration.connectionsMax
        if case .inet = configuration.listen, let listener {
            _ = listener.setOption(Self.noDelay, value: configuration.tcpNoDelay ? 1 : 0)
        }
    }

    private static let noDelay = ChannelOptions.tcpOption(.tcp_nodelay)

    func accepted(_ client: Channel) {
        let limiter = self.limiter
        client.closeFuture.assumeIsolated().whenComplete { _ in limiter.release() }
        let key = ClientKey(client.remoteAddress)
        // The server is chosen and connected to once the client is active (in this initializer
        // it is not yet, and a connect that fails at once must be able to fail over or close
        // it), and with TLS once its handshake is done.
        let clientSide = RelayHandler(whenActive: tls == nil ? { [self] relay in place(client, key, relay) } : nil)
        do {
            if let tls {
                try tls.secure(client, client: Endpoint.describe(client.remoteAddress), logger: service.logger) {
                    self.place(client, key, clientSide)
                }
            }
            if service.runtime.configuration.forwardedFor {
                // Before the relay: requests are rewritten on their way to the server.
                try client.pipeline.syncOperations.addHandler(ForwardedForHandler(clientAddress: key.clientText))
            }
            try addRelay(clientSide, to: client)
        } catch {
            service.logger.warning("cannot set up the client's connection: \(error)")
            client.close(promise: nil)
        }
    }

    /// Chooses the client's server (each client in turn, so a burst sees the connections
    /// counted before it) and connects.
    private func place(_ client: Channel, _ key: ClientKey, _ clientSide: RelayHandler) {
        let placement = service.runtime.state.accept(client: key, now: .now())
        if placement.isRefused {
            service.logger.info("client refused by client_acl \(service.runtime.configuration.clientACL)",
                        metadata: ["client": "\(Endpoint.describe(client.remoteAddress))",
                                   "abuse_server": "\(service.runtime.configuration.abuse.map { Endpoint.describe(host: $0.host, port: $0.port) } ?? "none")"])
        } else {
            service.logger.debug("client accepted", metadata: ["client": "\(Endpoint.describe(client.remoteAddress))"])
        }
        connect(client, clientSide, placement)
    }

    /// Tries the placement's next target; on failure blacklists it and tries the one after.
    /// Bounded: each call consumes one target of the failover plan.
    private func connect(_ client: Channel, _ clientSide: RelayHandler, _ placement: BalancerState.Placement) {
        var placement = placement
        guard let target = service.runtime.state.nextTarget(&placement, now: .now()), let server = service.runtime.state.servers[target] else {
            service.logger.info("no server available, closing client", metadata: ["client": "\(Endpoint.describe(client.remoteAddress))"])
            client.close(promise: nil)
            return
        }
        let configuration = service.runtime.configuration
        // Its own for each attempt: one that failed to connect is never linked to the client.
        let serverSide = RelayHandler()
        var bootstrap = ClientBootstrap(group: service.eventLoop)
            .connectTimeout(.seconds(Int64(configuration.connectTimeoutSeconds)))
            .channelOption(Self.noDelay, value: configuration.tcpNoDelay ? 1 : 0)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.addRelay(serverSide, to: channel) }
            }
        if let source = configuration.sourceAddress(for: server.address) {
            bootstrap = bootstrap.bind(to: source)
        }
        bootstrap.connect(to: server.address).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let upstream):
                self.relay(client, clientSide, upstream, serverSide, placement, target)
            case .failure(let error) where FailureCause(error).isLocal:
                // This host's fault (no descriptor left, a source address it lacks): the server
                // stays available. Another server would fail alike, so the client is closed.
                self.service.runtime.state.connectFailedLocally(target)
                self.limiter.localFailure(error, while: "connecting to server \(Endpoint.describe(host: server.host, port: server.port))")
                client.close(promise: nil)
            case .failure(let error):
                self.service.logger.info("connect to server failed, blacklisting it",
                                 metadata: ["server": "\(Endpoint.describe(host: server.host, port: server.port))", "error": "\(error)"])
                self.service.runtime.state.connectFailed(target, now: .now())
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
        let clientName = Endpoint.describe(client.remoteAddress)
        let number = service.runtime.state.connected(placement, to: target, client: clientName, now: .now())
        service.connections.add(number, client: client, upstream: upstream)
        service.connectionLog.watch(upstream, client: client.remoteAddress, logger: service.logger)
        RelayHandler.link(clientSide, serverSide) { toServer, toClient in
            self.service.runtime.state.relayed(placement, target: target, toServer: toServer, toClient: toClient)
        }
        client.closeFuture.and(upstream.closeFuture).assumeIsolated().whenComplete { _ in
            self.service.connections.remove(number)
            self.service.runtime.state.finished(placement, connection: number, target: target)
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
        let idleTimeout = service.runtime.configuration.idleTimeoutSeconds
        if idleTimeout > 0 {
            try pipeline.addHandler(IdleStateHandler(allTimeout: .seconds(Int64(idleTimeout))))
        }
        try pipeline.addHandler(handler)
    }
}
