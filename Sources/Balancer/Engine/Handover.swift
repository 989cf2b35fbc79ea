import BalancerCore
import CEngine
import EngineCore
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A connection taken out of an engine for a handover (`penha upgrade`): what moves, and its
/// two sockets, which the caller now owns (sends, then closes).
public struct CapturedConnection: Sendable {
    public let record: HandedOverConnection
    public let client: Int32
    public let server: Int32

    public init(record: HandedOverConnection, client: Int32, server: Int32) {
        self.record = record
        self.client = client
        self.server = server
    }
}

/// What the threads answered to one capture: the connections they let go, and how many they
/// keep that could move once set up (connecting, placing, reading a PROXY protocol header).
public struct HandoverCapture: Sendable {
    public var connections: [CapturedConnection] = []
    public var settingUp = 0
}

/// The threads' answers to a capture, gathered as each one answers.
final class CaptureCollector: Sendable {
    let done: Countdown
    private let gathered = Mutex(HandoverCapture())

    init(threads: Int) {
        done = Countdown(threads)
    }

    func add(_ connections: [CapturedConnection], settingUp: Int) {
        gathered.withLock {
            $0.connections += connections
            $0.settingUp += settingUp
        }
        done.countDown()
    }

    var capture: HandoverCapture { gathered.withLock { $0 } }
}

extension Engine {
    /// The listening socket, for a handover; nil once it is closed (or for none).
    public var listenerDescriptor: Int32? {
        let descriptor = listener.load(ordering: .relaxed)
        return descriptor >= 0 ? descriptor : nil
    }

    /// Stops accepting (the listener stays open: another process accepts on it now, or this
    /// one again after `resumeAccepting`) and takes out of the threads every connection that
    /// can move: relaying, not TLS (OpenSSL's state stays in this process), a `-H` one only
    /// between two requests. Waits at most `wait` for the threads; one that answers later
    /// keeps its connections.
    public func capture(wait: Duration = .milliseconds(500)) -> HandoverCapture {
        let threads = self.threads
        let collector = CaptureCollector(threads: threads.count)
        for thread in threads { thread.post(.capture(collector)) }
        collector.done.wait(upTo: wait)
        return collector.capture
    }

    /// A handover that failed before its connections left: the threads accept again.
    public func resumeAccepting() {
        let descriptor = listener.load(ordering: .relaxed)
        guard descriptor >= 0 else { return }
        for thread in threads { thread.post(.listen(descriptor)) }
    }

    /// The handover is done: another process accepts on the listener, this one closes its copy.
    public func closeListener() {
        stopAccepting()
    }

    /// Connections another penha process handed over, relayed from now on, spread over the
    /// threads; waits at most `wait` for the threads to take them (a thread that answers later
    /// still adopts its share). The descriptors are the engine's from here, whatever happens.
    public func adopt(_ connections: [CapturedConnection], wait: Duration = .milliseconds(500)) {
        let threads = self.threads
        guard !threads.isEmpty else {
            for connection in connections { Socket.close(connection.client, reset: true); Socket.close(connection.server, reset: true) }
            return
        }
        var shares = [[CapturedConnection]](repeating: [], count: threads.count)
        for (index, connection) in connections.enumerated() { shares[index % threads.count].append(connection) }
        let done = Countdown(threads.count)
        for (thread, share) in zip(threads, shares) { thread.post(.adopt(share, done)) }
        done.wait(upTo: wait)
    }
}

extension EngineThread {
    /// `Engine.capture` on this thread, between two loop turns: no connection is in the middle
    /// of a pump.
    func capture(into collector: CaptureCollector) {
        stopAccepting()
        var captured: [CapturedConnection] = []
        var settingUp = 0
        for connection in slots where !connection.machine.isClosed {
            switch connection.machine.stage {
            case .relaying:
                if let taken = capture(connection) { captured.append(taken) }
            case .awaitingProxyHeader, .placing, .connecting:
                settingUp += 1
            case .handshaking, .closed:
                break
            }
        }
        collector.add(captured, settingUp: settingUp)
    }

    /// One relaying connection out of this thread: its queued bytes taken, its sockets out of
    /// epoll and kept open, the state given its counters and its server's count back (the
    /// new process counts it again). nil for one that stays.
    private func capture(_ connection: Connection) -> CapturedConnection? {
        guard connection.tls == nil, connection.rewriter?.isBetweenRequests ?? true,
              connection.toServer.pending <= HandoverMessage.maxPendingBytes,
              connection.toClient.pending <= HandoverMessage.maxPendingBytes,
              let lease = connection.machine.lease, let number = connection.machine.number else { return nil }
        guard let toServer = connection.toServer.takeAll(&pool), let toClient = connection.toClient.takeAll(&pool) else {
            // A kernel pipe that cannot be read: its bytes are lost, so the connection is reset.
            perform(connection, connection.machine.failed())
            return nil
        }
        _ = penha_epoll_remove(epoll, connection.client.descriptor)
        _ = penha_epoll_remove(epoll, connection.server.descriptor)
        let since = engine.shared.withLock { $0.state.connections[number]?.since }
        let client = connection.peer.proxyEndpoint
        let record = HandedOverConnection(
            client: client?.address ?? .local, clientPort: client?.port ?? 0, target: lease.target,
            connectedAt: since?.uptimeNanoseconds ?? now,
            toServer: HandedOverFlow(pending: toServer, sourceEnded: connection.machine.toServer.sourceEnded,
                                     shutDown: connection.machine.toServer.shutDown),
            toClient: HandedOverFlow(pending: toClient, sourceEnded: connection.machine.toClient.sourceEnded,
                                     shutDown: connection.machine.toClient.shutDown),
            requestUnlogged: connection.machine.logsRequest, rewritesForwardedFor: connection.rewriter != nil)
        let captured = CapturedConnection(record: record, client: connection.client.descriptor, server: connection.server.descriptor)
        // Not this thread's to close any more: the end below closes nothing.
        connection.client.descriptor = -1
        connection.server.descriptor = -1
        perform(connection, connection.machine.handedOver())
        return captured
    }

    /// `Engine.resumeAccepting` on this thread.
    func listen(_ descriptor: Int32) {
        guard listener < 0 else { return }
        let interest = penha_epoll_in | penha_epoll_et | penha_epoll_exclusive
        guard penha_epoll_add(epoll, descriptor, interest, Self.listenerToken) == 0 else {
            return localFailure(errno, while: "accepting again after a failed handover")
        }
        listener = descriptor
        accepting = true
        listenerReady = true
    }

    /// `Engine.adopt` on this thread: each connection placed in the state on the server the
    /// other process had it on, its queued bytes back in its buffers, its sockets in epoll,
    /// and pumped at once. One whose server this process does not have is closed.
    func adopt(_ captured: CapturedConnection) {
        let record = captured.record
        engine.active.wrappingAdd(1, ordering: .relaxed)
        let connection = takeSlot()
        connection.client.descriptor = captured.client
        connection.server.descriptor = captured.server
        connection.peer = record.client == .local ? PeerAddress() : PeerAddress(ProxyEndpoint(address: record.client, port: record.clientPort))
        connection.clientKey = record.client
        let wallNow = NIODeadline.uptimeNanoseconds(now)
        let adopted = engine.shared.withLock { runtime -> (Lease, Int, ConnectionStateMachine.Timeouts)? in
            guard let (placement, number) = runtime.state.adopt(client: record.client, target: record.target,
                                                                peer: connection.peer.connectionPeer,
                                                                connectedAt: NIODeadline.uptimeNanoseconds(record.connectedAt),
                                                                now: wallNow),
                  let lease = Self.lease(placement, record.target, &runtime) else { return nil }
            return (lease, number, ConnectionStateMachine.Timeouts(connectSeconds: runtime.state.configuration.connectTimeoutSeconds,
                                                                  idleSeconds: runtime.state.configuration.idleTimeoutSeconds))
        }
        guard let (lease, number, timeouts) = adopted else {
            engine.events.log(.warning, "a handed-over connection's server is not in this configuration; closing it",
                              ["client": connection.peer.text])
            connection.machine = ConnectionStateMachine(acceptedAt: now, expectsProxyHeader: false)
            return perform(connection, connection.machine.closeRequested())
        }
        connection.machine = ConnectionStateMachine(adopted: lease, number: number, timeouts: timeouts, toServer: record.toServer,
                                                    toClient: record.toClient, logsRequest: record.requestUnlogged, now: now)
        if record.rewritesForwardedFor { connection.rewriter = ForwardedForRewriter(clientAddress: record.client.clientText) }
        record.toServer.pending.withUnsafeBytes { connection.toServer.append($0, &pool) }
        record.toClient.pending.withUnsafeBytes { connection.toClient.append($0, &pool) }
        // Whatever the sockets hold is tried at once; EAGAIN clears what is not so.
        connection.client.readable = true
        connection.client.writable = true
        connection.server.readable = true
        connection.server.writable = true
        guard penha_epoll_add(epoll, connection.client.descriptor, Self.interest, connection.token(server: false)) == 0,
              penha_epoll_add(epoll, connection.server.descriptor, Self.interest, connection.token(server: true)) == 0 else {
            localFailure(errno, while: "adopting a handed-over connection")
            return perform(connection, connection.machine.failed())
        }
        pump(connection)
    }
}
