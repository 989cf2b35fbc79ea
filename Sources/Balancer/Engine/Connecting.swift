import BalancerCore
import CEngine
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Placing a client and connecting it: the pure core chooses (client table, selection,
/// failover plan, limits) under the runtime's lock; the thread makes the non-blocking
/// connect and feeds each outcome back.
extension EngineThread {
    /// One attempt the pure core chose: the target and how to reach it.
    struct Attempt {
        let target: Target
        let address: SocketAddress
        var source: SocketAddress?
        let host: String
        let port: Int
        let noDelay: Bool
        let proxyProtocol: ProxyProtocol
    }

    /// Asks `BalancerState` where the client goes (its client table, selection and failover
    /// plan) and connects; each client in turn, so a burst sees the connections counted before it.
    func place(_ connection: Connection) {
        let key = connection.clientKey
        let now = NIODeadline.uptimeNanoseconds(self.now)
        // Fields read one by one: a copy of the whole Configuration (strings, arrays) costs
        // retains and releases on every connection.
        let (attempt, refused, connectTimeout, idleTimeout, forwardedFor) = engine.shared.withLock { runtime in
            var placement = runtime.state.accept(client: key, now: now)
            let refused = placement.isRefused
                ? (runtime.configuration.clientACL, runtime.configuration.abuse.map { Endpoint.describe(host: $0.host, port: $0.port) } ?? "none")
                : nil
            let attempt = Self.next(&placement, &runtime)
            connection.placement = placement
            return (attempt, refused, runtime.configuration.connectTimeoutSeconds, runtime.configuration.idleTimeoutSeconds,
                    runtime.configuration.forwardedFor)
        }
        connection.connectTimeout = UInt64(connectTimeout) * 1_000_000_000
        connection.idleTimeout = UInt64(idleTimeout) * 1_000_000_000
        if forwardedFor { connection.rewriter = ForwardedForRewriter(clientAddress: key.clientText) }
        if let (list, abuse) = refused {
            if let note = engine.refusalLog.withLock({ $0.admitNote(now: now) }) {
                engine.events.log(.info, "client refused by client_acl \(list)\(note)", ["client": connection.peer.text, "abuse_server": abuse])
            }
        } else if engine.events.isLogged(.debug) {
            engine.events.log(.debug, "client accepted", ["client": connection.peer.text])
        }
        connect(connection, attempt)
    }

    /// The placement's next target, under the lock; nil when the client must be closed.
    static func next(_ placement: inout BalancerState.Placement, _ runtime: inout Runtime) -> Attempt? {
        guard let target = runtime.state.nextTarget(&placement, now: .now()) else { return nil }
        let noDelay = runtime.configuration.tcpNoDelay
        // Read in place: a copy of the Server (its strings, its address) costs retains and releases.
        var attempt = runtime.state.servers.read(target) { server in
            Attempt(target: target, address: server.address, source: nil, host: server.host, port: server.port, noDelay: noDelay,
                    proxyProtocol: server.proxyProtocol)
        }
        if let address = attempt?.address { attempt?.source = runtime.configuration.sourceAddress(for: address) }
        return attempt
    }

    /// Bounded: each failure consumes one target of the failover plan.
    func connect(_ connection: Connection, _ attempt: Attempt?) {
        guard let attempt else {
            engine.events.log(.info, "no server available, closing client", ["client": connection.peer.text])
            end(connection, reset: false)
            return
        }
        connection.target = attempt.target
        connection.serverHost = attempt.host
        connection.serverPort = attempt.port
        connection.serverAddress = attempt.address
        connection.proxyProtocol = attempt.proxyProtocol
        connection.phase = .connecting
        connection.deadline = now + connection.connectTimeout
        let family = attempt.address.protocol == .inet6 ? AF_INET6 : attempt.address.protocol == .unix ? AF_UNIX : AF_INET
        let descriptor = socket(family, Socket.streamFlags, 0)
        guard descriptor >= 0 else { return connectFailed(connection, errno) }
        connection.server = Connection.Side(descriptor: descriptor)
        if family != AF_UNIX, attempt.noDelay { Listener.setNoDelay(descriptor, true) }
        if let source = attempt.source {
            let bound = source.withSockAddr { bind(descriptor, $0, socklen_t($1)) }
            guard bound == 0 else { return connectFailed(connection, errno) }
        }
        let result = attempt.address.withSockAddr { penha_connect(descriptor, $0, socklen_t($1)) }
        guard result == 0 || errno == EINPROGRESS else { return connectFailed(connection, errno) }
        guard penha_epoll_add(epoll, descriptor, Self.interest, connection.token(server: true)) == 0 else {
            return connectFailed(connection, errno)
        }
    }

    /// The connect's outcome, at its first event.
    func serverReady(_ connection: Connection, failed: Bool) {
        if failed {
            connectFailed(connection, Socket.pendingError(connection.server.descriptor))
        } else if connection.server.writable {
            connected(connection)
        }
    }

    /// A local failure (`FailureCause.isLocal`) leaves the server's standing and closes the
    /// client (another server would fail alike); any other blacklists the server and tries
    /// the next, keeping what the client sent so far.
    func connectFailed(_ connection: Connection, _ code: Int32) {
        if connection.server.descriptor >= 0 { _ = penha_close(connection.server.descriptor) }
        connection.server = Connection.Side()
        let target = connection.target
        let cause = FailureCause(errno: code == 0 ? ECONNREFUSED : code)
        if cause.isLocal {
            // end() gives the target back its count (connectFailedLocally).
            localFailure(code, while: "connecting to server \(connection.serverText)")
            end(connection, reset: false)
            return
        }
        let error = code == ETIMEDOUT ? "connect timeout" : SystemErrorText.describe(errno: code)
        engine.events.log(.info, "connect to server failed, blacklisting it", ["server": connection.serverText, "error": error])
        var placement = connection.placement!
        let attempt = engine.shared.withLock { runtime in
            runtime.state.connectFailed(target, now: .now())
            return Self.next(&placement, &runtime)
        }
        connection.placement = placement
        // The failed target's count is given back: an end before the next attempt gives back none.
        connection.phase = .accepted
        connect(connection, attempt)
    }

    func connected(_ connection: Connection) {
        let peer = connection.peer.connectionPeer
        let placement = connection.placement!
        let target = connection.target
        let number = engine.shared.withLock { $0.state.connected(placement, to: target, peer: peer, now: .now()) }
        connection.number = number
        connection.phase = .relaying
        connection.logsRequest = engine.events.logsConnections
        if connection.proxyProtocol != .off { sendProxyHeader(connection) }
        pump(connection)
    }
}
