import BalancerCore
import CEngine
import EngineCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Placing a client and connecting it: the pure core chooses (client table, selection,
/// failover plan, limits) under the runtime's lock; the thread makes the non-blocking
/// connect and feeds each outcome to the connection's machine.
extension EngineThread {
    /// Asks `BalancerState` where the client goes (its client table, selection and failover
    /// plan) and connects; each client in turn, so a burst sees the connections counted before it.
    func place(_ connection: Connection) {
        let key = connection.clientKey
        let now = NIODeadline.uptimeNanoseconds(self.now)
        // Fields read one by one: a copy of the whole Configuration (strings, arrays) costs
        // retains and releases on every connection.
        let (lease, refused, timeouts, forwardedFor) = engine.shared.withLock { runtime in
            var placement = runtime.state.accept(client: key, now: now)
            let refused = placement.isRefused
                ? (runtime.state.configuration.clientACL, runtime.state.configuration.abuse.map { Endpoint.describe(host: $0.host, port: $0.port) } ?? "none")
                : nil
            let lease = Self.next(&placement, &runtime)
            let timeouts = ConnectionStateMachine.Timeouts(connectSeconds: runtime.state.configuration.connectTimeoutSeconds,
                                                           idleSeconds: runtime.state.configuration.idleTimeoutSeconds)
            return (lease, refused, timeouts, runtime.state.configuration.forwardedFor)
        }
        if forwardedFor { connection.rewriter = ForwardedForRewriter(clientAddress: key.clientText) }
        if let (list, abuse) = refused {
            if let note = engine.refusalLog.withLock({ $0.admitNote(now: now) }) {
                engine.events.log(.info, "client refused by client_acl \(list)\(note)", ["client": connection.peer.text, "abuse_server": abuse])
            }
        } else if engine.events.isLogged(.debug) {
            engine.events.log(.debug, "client accepted", ["client": connection.peer.text])
        }
        perform(connection, connection.machine.placed(lease, timeouts: timeouts, now: self.now))
    }

    /// The placement's next attempt, under the lock; nil when the client must be closed.
    static func next(_ placement: inout BalancerState.Placement, _ runtime: inout Runtime) -> Lease? {
        guard let target = runtime.state.nextTarget(&placement, now: .now()) else { return nil }
        return lease(placement, target, &runtime)
    }

    /// The attempt on `target` the placement was counted against, with what connecting needs
    /// of its server; nil when the table has no such target. Under the lock.
    static func lease(_ placement: BalancerState.Placement, _ target: Target, _ runtime: inout Runtime) -> Lease? {
        let noDelay = runtime.state.configuration.tcpNoDelay
        // Read in place: a copy of the server (its strings, its address) costs retains and releases.
        guard let (address, host, port, proxyProtocol) = runtime.state.withServer(target, { spec, server in
            (server.address, spec.host, spec.port, spec.proxyProtocol)
        }) else { return nil }
        return Lease(placement: placement, target: target, address: address, source: runtime.state.configuration.sourceAddress(for: address),
                     host: host, port: port, noDelay: noDelay, proxyProtocol: proxyProtocol)
    }

    /// A non-blocking connect; its outcome comes as the server socket's first event. Bounded:
    /// each failure consumes one target of the failover plan.
    func connect(_ connection: Connection, _ lease: Lease) {
        let family = lease.address.protocol == .inet6 ? AF_INET6 : lease.address.protocol == .unix ? AF_UNIX : AF_INET
        let descriptor = socket(family, Socket.streamFlags, 0)
        guard descriptor >= 0 else { return connectFailed(connection, errno) }
        connection.server = Connection.Side(descriptor: descriptor)
        if family != AF_UNIX, lease.noDelay { Listener.setNoDelay(descriptor, true) }
        if let source = lease.source {
            let bound = source.withSockAddr { bind(descriptor, $0, socklen_t($1)) }
            guard bound == 0 else { return connectFailed(connection, errno) }
        }
        let result = lease.address.withSockAddr { penha_connect(descriptor, $0, socklen_t($1)) }
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

    /// The machine decides: a local failure (`FailureCause.isLocal`, logged here) closes the
    /// client, any other fails over.
    func connectFailed(_ connection: Connection, _ code: Int32) {
        let code = code == 0 ? ECONNREFUSED : code
        let cause = FailureCause(errno: code)
        if cause.isLocal { localFailure(code, while: "connecting to server \(connection.machine.lease?.serverText ?? "")") }
        perform(connection, connection.machine.connectFailed(.system(code), cause: cause))
    }

    /// The failed attempt's socket closed, the server blacklisted (its count back) and the
    /// next target asked for, keeping what the client sent so far.
    func failover(_ connection: Connection, _ failed: Lease, _ error: ConnectionStateMachine.ConnectError) {
        Socket.close(connection.server.descriptor, reset: false)
        connection.server = Connection.Side()
        let text: String
        switch error {
        case .timedOut: text = "connect timeout"
        case .system(let code): text = SystemErrorText.describe(errno: code)
        }
        engine.events.log(.info, "connect to server failed, blacklisting it", ["server": failed.serverText, "error": text])
        var placement = failed.placement
        let next = engine.shared.withLock { runtime in
            runtime.state.connectFailed(failed.target, of: placement, now: .now())
            return Self.next(&placement, &runtime)
        }
        perform(connection, connection.machine.failedOver(next, now: now))
    }

    func connected(_ connection: Connection) {
        guard let lease = connection.machine.lease else { return }
        let peer = connection.peer.connectionPeer
        let number = engine.shared.withLock { $0.state.connected(lease.placement, to: lease.target, peer: peer, now: .now()) }
        perform(connection, connection.machine.connected(number: number, logsRequest: engine.events.logsConnections, now: now))
        if lease.proxyProtocol != .off { sendProxyHeader(connection, lease.proxyProtocol) }
        pump(connection)
    }
}
