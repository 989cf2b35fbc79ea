import BalancerCore
import Engine
import Logging
import NIOCore
import NIOPosix
import Synchronization
import VRRP
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// The old process's side of a handover (`penha upgrade`, `penha run --takeover`): asked on
/// the control socket, it connects to the socket the new process listens on, checks that the
/// process there is the one that asked and of penha's own user, sends the listener, stops
/// accepting once the new process accepts, then sends its client table, every connection that
/// can move (plain TCP; TLS ones drain here) and its counters, leaves its BGP routes as they
/// are, hands its VRRP instances over and exits once the new process has adopted them. A failure before the connections leave
/// changes nothing: this process accepts and relays on.
final class HandoverGiver: Sendable {
    /// While connections are still being set up (connecting to their server), captures are
    /// repeated this often for at most `settleBound`, so that they move too.
    static let captureInterval = Duration.milliseconds(10)
    static let settleBound = Duration.seconds(1)

    /// The new process's pid once a handover succeeded; nil before.
    private let successor = Mutex<Int32?>(nil)
    /// `idle`, `running` (one handover at a time) or `closed` (the process stops: none starts).
    private let phase = Atomic<Int>(Phase.idle)

    private enum Phase {
        static let idle = 0, running = 1, closed = 2
    }

    var handedOverTo: Int32? { successor.withLock { $0 } }

    /// No handover starts from now on; one under way is waited for, at most `bound`, so
    /// that the stopping process knows whether its connections and files are another's.
    func shut(waitingAtMost bound: Duration) {
        let deadline = ContinuousClock.now + bound
        while !phase.compareExchange(expected: Phase.idle, desired: Phase.closed, ordering: .acquiringAndReleasing).exchanged,
              phase.load(ordering: .acquiring) != Phase.closed, ContinuousClock.now < deadline {
            usleep(10_000)
        }
    }

    /// Runs a whole handover, blocking (bounded: every wait is, see `HandoverSocket`): call it
    /// off the event loop. `requester`: the control connection's peer.
    func handOver(_ service: BalancerService, engine: Engine?, path: String, requester: (pid: Int32, uid: UInt32)) -> Reply {
        let (started, found) = phase.compareExchange(expected: Phase.idle, desired: Phase.running, ordering: .acquiringAndReleasing)
        guard started else {
            return Reply(errors: [found == Phase.closed ? "handover refused: penha is stopping"
                                                        : "handover refused: another handover is in progress"])
        }
        defer { phase.store(Phase.idle, ordering: .releasing) }
        let logger = service.logger
        do {
            let moved = try give(service, engine: engine, path: path, requester: requester)
            successor.withLock { $0 = requester.pid }
            let text = "handed over to pid \(requester.pid): the listener and \(moved.connections) connections"
                + (moved.staying > 0 ? "; \(moved.staying) connections drain here (TLS, mid-request with -H, or still connecting)" : "")
            logger.notice("\(text)")
            return Reply(lines: [text], exitRequested: true)
        } catch {
            logger.error("handover to pid \(requester.pid) failed, serving on: \(error)")
            return Reply(errors: ["handover failed, the old process serves on: \(error)"])
        }
    }

    private func give(_ service: BalancerService, engine: Engine?, path: String,
                      requester: (pid: Int32, uid: UInt32)) throws -> (connections: Int, staying: Int) {
        let openWindows = service.vrrp.withLock { $0 }?.openSecondChanceWindows ?? []
        if let refusal = HandoverPolicy.refusal(for: service.configuration, draining: service.drainReport() != nil,
                                                openWindows: openWindows, requester: requester.uid, own: geteuid()) {
            throw HandoverFailure(refusal)
        }
        guard let engine, let listener = engine.listenerDescriptor else { throw HandoverFailure("no TCP listener to hand over") }
        let socket = try HandoverSocket.connect(to: path)
        let peer = try socket.peer
        // The socket named in the request must be the requesting process's own.
        guard peer.pid == requester.pid, peer.uid == requester.uid else {
            throw HandoverFailure("\(path) belongs to pid \(peer.pid) (uid \(peer.uid)), not to the process that asked")
        }
        try socket.send(.listener, descriptors: [listener])
        try expect(.accepting, from: socket)
        // From here the new process accepts; whatever fails before the connections leave, this one accepts again.
        var capture = engine.capture()
        do {
            // The client table before the connections, so that they find their clients' entries.
            for clients in service.shared.withLock({ $0.state.handedOverClients }) { try socket.send(.clients(clients)) }
        } catch {
            engine.adopt(capture.connections)
            engine.resumeAccepting()
            throw error
        }
        var sent = 0
        let started = ContinuousClock.now
        while true {
            var unsent = capture.connections[...]
            do {
                try send(&unsent, over: socket)
            } catch {
                // Not sent: this process relays them on, and accepts again.
                engine.adopt(Array(unsent))
                engine.resumeAccepting()
                throw error
            }
            sent += capture.connections.count
            guard capture.settingUp > 0, ContinuousClock.now - started < Self.settleBound else { break }
            usleep(UInt32(Self.captureInterval.components.attoseconds / 1_000_000_000_000))
            capture = engine.capture()
        }
        do {
            // The counters last: the connections' bytes are in them once each has been captured.
            try socket.send(.counters(service.shared.withLock { $0.state.handedOverCounters }))
            if service.shared.withLock({ $0.state.bgpWithdrawnByOperator }) { try socket.send(.bgpWithdrawn) }
            try socket.send(.done)
            try expect(.adopted, from: socket)
        } catch {
            // What was sent is the other process's now (gone with it if it died); new clients come here again.
            engine.resumeAccepting()
            throw error
        }
        engine.closeListener()
        // The new process announces the routes now; this one must not withdraw them as it exits.
        try? service.handOffBGP().wait()
        // Last: the new process relays everything, and goes on where the instances stood. Not
        // sent (the new process gone): it would start them afresh, as after a restart.
        let vrrp = service.handOffVRRP()
        do {
            try socket.send(.vrrp(vrrp))
        } catch {
            service.logger.error("the VRRP instances stopped here but the new process was not told: \(error)")
        }
        return (sent, engine.openConnections)
    }

    /// Sends the connections in batches a frame can carry, closing this process's copies of
    /// each batch once it is sent; what is left in `connections` was not sent.
    private func send(_ connections: inout ArraySlice<CapturedConnection>, over socket: HandoverSocket) throws {
        for batch in HandoverMessage.batches(connections.map(\.record)) {
            let captured = connections.prefix(batch.count)
            try socket.send(.connections(batch), descriptors: captured.flatMap { [$0.client, $0.server] })
            for connection in captured {
                close(connection.client)
                close(connection.server)
            }
            connections = connections.dropFirst(batch.count)
        }
    }

    private func expect(_ wanted: HandoverMessage, from socket: HandoverSocket) throws {
        let (message, descriptors) = try socket.receive()
        for descriptor in descriptors { close(descriptor) }
        if case .refused(let reason) = message { throw HandoverFailure("the new process refused: \(reason)") }
        guard message == wanted else { throw HandoverError.unexpected("\(message.name) where \(wanted.name) was due") }
    }
}

/// A running balancer's part in a handover: as the old process (`handOver`) and as the new
/// one (what it is given).
extension BalancerService {
    /// A new penha process asked for this one's listener and connections (the control
    /// socket's handover request): the whole handover, on a thread of its own, bounded. The
    /// answer says how it went; `exitRequested` once it succeeded.
    func handOver(to path: String, requester: (pid: Int32, uid: UInt32)) -> EventLoopFuture<Reply> {
        let answer = eventLoop.makePromise(of: Reply.self)
        do {
            // A thread of its own, ended with the handover: not the blocking pool, which
            // commands wait for, nor libdispatch, whose workers would take the signals.
            pthread_detach(try startThread { answer.succeed(self.handover.handOver(self, engine: self.tcp, path: path, requester: requester)) })
        } catch {
            answer.succeed(Reply(errors: ["handover refused: \(error)"]))
        }
        return answer.futureResult
    }

    /// Connections the old process handed over (`penha run --takeover`): relayed from now on.
    public func adopt(_ connections: [CapturedConnection]) {
        tcp?.adopt(connections)
    }

    /// The client table entries the old process handed over, merged into this one's.
    public func restore(_ clients: [HandedOverClient]) {
        shared.withLock { $0.state.restore(clients, now: .now()) }
    }

    /// The counters the old process handed over, added to this one's.
    public func add(_ counters: HandedOverCounters) {
        shared.withLock { $0.state.add(counters) }
    }

    /// The operator's `bgp withdraw` on the old process holds here too.
    public func holdBGPWithdrawn() {
        shared.withLock { $0.state.bgpWithdrawnByOperator = true }
    }

    /// The handover is over: the announcer, which has waited for it, steps from now on.
    public func startAnnouncing() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { self.onLoop.value.bgp?.handoverReceived() ?? self.eventLoop.makeSucceededVoidFuture() }
    }

    /// The BGP announcer stopped as it is (nothing when there is none).
    func handOffBGP() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { self.onLoop.value.bgp?.handOff() ?? self.eventLoop.makeSucceededVoidFuture() }
    }

    /// The VRRP instances stopped as they are, for the new process (none when none runs).
    func handOffVRRP() -> [VRRPResumption] {
        vrrp.withLock { $0 }?.handOff() ?? []
    }

    /// The new process's pid once this one handed over to it: it stops without touching
    /// what the new one took (the pid file, the sockets' paths).
    public var handedOverTo: Int32? { handover.handedOverTo }

    /// The process stops: no handover starts, and one under way ends first (at most `bound`,
    /// blocking), so that `handedOverTo` is final: a SIGTERM in the middle of a handover
    /// neither exits under it nor removes what the new process took.
    public func closeHandovers(waitingAtMost bound: Duration) {
        handover.shut(waitingAtMost: bound)
    }
}
