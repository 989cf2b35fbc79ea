import BalancerCore
import CEngine
import EngineCore
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One event loop: its epoll (edge-triggered; each socket added once with all the interest
/// it will ever need, never modified), the shared listener, an eventfd that wakes it for orders from
/// other threads, and its connection slots and buffers. Everything but `inbox` and
/// `isWaitingForPlace` is touched by its own thread only. What each event means for a
/// connection is its `ConnectionStateMachine`'s to say; this makes the system calls the
/// machine's actions name (`perform`).
// Unchecked: other threads reach only `inbox` (a Mutex), `waitingForPlace` (an Atomic) and the
// eventfd; a lock around the rest would be taken per event on the data path.
final class EngineThread: @unchecked Sendable {
    enum Order: Sendable {
        case close(Int)
        case stopAccepting(Countdown)
        case resumeAccepting
        /// Add the byte counts to the state now, and count down `done`.
        case report(Countdown)
        /// Close every connection, leave the loop (the engine then joins the thread).
        case stop
        /// A handover: stop accepting, give the connections that can move to the collector.
        case capture(CaptureCollector)
        /// Accept on this listener again (a handover failed before its connections left).
        case listen(Int32)
        /// Relay these, handed over by another process; count down `done` once they are.
        case adopt([CapturedConnection], Countdown)
    }

    static let listenerToken = UInt64.max
    private static let wakeToken = UInt64.max - 1
    /// Accepts per loop turn, and pump rounds per connection per turn: no one socket starves the rest.
    private static let acceptBurst = 64
    static let pumpRounds = 16
    /// TLS handshake steps per loop turn. A step may sign (an RSA-4096 signature took 3.5 ms
    /// here): 600 ClientHellos at once held a relayed connection's bytes for 2.3 s, and a turn
    /// that long stops the watchdog's pings. The rest wait for later turns.
    private static let handshakeSteps = 16
    static let interest = penha_epoll_in | penha_epoll_out | penha_epoll_rdhup | penha_epoll_et

    let epoll: Int32
    private let wake: Int32
    var listener: Int32
    private let inbox = Mutex<[Order]>([])
    private let waitingForPlace = Atomic<Bool>(false)
    var isWaitingForPlace: Bool { waitingForPlace.load(ordering: .relaxed) }
    /// Loop turns so far, read by the watchdog (`ProgressWatch`): a thread that stops turning is wedged.
    private let turnCount = Atomic<UInt64>(0)
    var turns: UInt64 { turnCount.load(ordering: .relaxed) }
    /// The thread's name, as `top -H` and the watchdog's log line show it.
    let name: String
    /// Not counted (unowned(unsafe), not Optional): the engine holds its threads, and while one
    /// runs its `run` holds the engine, so the engine outlives every use; a counted unowned
    /// reference cost a retain and a release at each use (0.2k instructions per connection).
    unowned(unsafe) let engine: Engine
    /// The running thread, for `join`; set by `start` before any other thread can see it.
    private var handle: pthread_t?

    // Confined to the thread from here on.
    private(set) var slots: [Connection] = []
    private var freeSlots: [Int] = []
    var pool = BufferPool()
    /// Connections whose last pump stopped at `pumpRounds` with work left.
    var again: [Int] = []
    /// What `again` held at the start of this turn (swapped, so neither is reallocated).
    private var pumping: [Int] = []
    var reportsDue: [Int] = []
    private var reporting: [Int] = []
    var listenerReady = false
    var accepting = true
    private var running = true
    private var backOffUntil: UInt64 = 0
    private var nextSweep: UInt64 = 0
    var now: UInt64 = 0
    /// What is left of `handshakeSteps` in this turn.
    var handshakeStepsLeft = 0
    /// Scratch for reads that a transformation (X-Forwarded-For, TLS) processes before the pipe.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: BufferPool.size, alignment: 64)
    var failureLog = LogThrottle()

    init(engine: Engine, listener: Int32, name: String) throws {
        self.engine = engine
        self.listener = listener
        self.name = name
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else {
            // Not fully initialized: deinit does not run, so the scratch space is freed here.
            scratch.deallocate()
            throw IOError(errnoCode: errno, reason: "epoll_create1")
        }
        wake = penha_eventfd()
        // Every stored property is set from here: a throw runs deinit, which closes and frees.
        guard wake >= 0, penha_epoll_add(epoll, wake, penha_epoll_in | penha_epoll_et, Self.wakeToken) == 0 else {
            throw IOError(errnoCode: errno, reason: "eventfd")
        }
        if listener >= 0 {
            // Shared by the threads: a new client wakes one of them, not all.
            let interest = penha_epoll_in | penha_epoll_et | penha_epoll_exclusive
            guard penha_epoll_add(epoll, listener, interest, Self.listenerToken) == 0 else {
                throw IOError(errnoCode: errno, reason: "epoll_ctl")
            }
            listenerReady = true
        }
    }

    /// What init allocated; the connections and the pool's buffers went when the loop ended.
    deinit {
        if wake >= 0 { _ = penha_close(wake) }
        _ = penha_close(epoll)
        scratch.deallocate()
    }

    func start() throws {
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            guard let argument else { return nil }
            let loop = Unmanaged<EngineThread>.fromOpaque(argument).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw IOError(errnoCode: result, reason: "pthread_create")
        }
        handle = thread
    }

    /// Waits for the thread to leave its loop (after `.stop`).
    func join() {
        guard let handle else { return }
        pthread_join(handle, nil)
        self.handle = nil
    }

    /// From any thread.
    func post(_ order: Order) {
        inbox.withLock { $0.append(order) }
        nudge()
    }

    /// From any thread: one loop turn now, even with nothing to do.
    func nudge() {
        var one: UInt64 = 1
        _ = Glibc.write(wake, &one, 8)
    }

    private func run() {
        // The engine lives as long as one of its threads runs.
        let engine = self.engine
        penha_name_thread(name)
        let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: Int(penha_epoll_batch))
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: Int(penha_epoll_batch))
        defer {
            tokens.deallocate()
            events.deallocate()
        }
        while running {
            let count = penha_epoll_wait(epoll, tokens, events, waitMilliseconds())
            now = NIODeadline.now().uptimeNanoseconds
            handshakeStepsLeft = Self.handshakeSteps
            if count < 0 && errno != EINTR, let note = failureLog.admitNote(now: NIODeadline.uptimeNanoseconds(now)) {
                engine.events.log(.warning, "epoll_wait: \(SystemErrorText.describe(errno: errno))\(note)", [:])
            }
            for index in 0..<max(0, Int(count)) { dispatch(tokens[index], events[index]) }
            if listenerReady { acceptClients() }
            if !again.isEmpty {
                swap(&again, &pumping)
                for slot in pumping {
                    slots[slot].isQueued = false
                    pump(slots[slot])
                }
                pumping.removeAll(keepingCapacity: true)
            }
            if now >= nextSweep { sweep() }
            turnCount.wrappingAdd(1, ordering: .relaxed)
        }
        // Stopped: every connection ends as `close N` ends one (its server's count given
        // back), then the buffers and pipes go.
        for connection in slots where !connection.machine.isClosed { perform(connection, connection.machine.closeRequested()) }
        slots.removeAll()
        freeSlots.removeAll()
        pool.releaseAll()
    }

    /// Bounded always: the sweep runs at least every `reportInterval` while connections exist.
    private func waitMilliseconds() -> Int32 {
        if !again.isEmpty || (listenerReady && accepting && backOffUntil <= now && !isWaitingForPlace) { return 0 }
        if backOffUntil > now { return Int32(clamping: (backOffUntil - now) / 1_000_000 + 1) }
        return slots.count > freeSlots.count ? 250 : 1000
    }

    private func dispatch(_ token: UInt64, _ events: UInt32) {
        switch token {
        case Self.wakeToken:
            var value: UInt64 = 0
            _ = Glibc.read(wake, &value, 8)
            for order in inbox.withLock({ orders in defer { orders.removeAll() }; return orders }) { perform(order) }
        case Self.listenerToken:
            listenerReady = true
        default:
            let slot = Int(token >> 1 & 0x7fff_ffff)
            guard slot < slots.count else { return }
            let connection = slots[slot]
            guard connection.generation == UInt32(token >> 32), !connection.machine.isClosed else { return }
            let isServer = token & 1 == 1
            let failed = events & (penha_epoll_err | penha_epoll_hup) != 0
            if isServer {
                if events & (penha_epoll_in | penha_epoll_hup | penha_epoll_err) != 0 { connection.server.readable = true }
                if events & (penha_epoll_out | penha_epoll_hup | penha_epoll_err) != 0 { connection.server.writable = true }
                if events & penha_epoll_rdhup != 0 { connection.server.peerEnded = true }
                if connection.machine.stage == .connecting {
                    serverReady(connection, failed: failed)
                    return
                }
            } else {
                if events & (penha_epoll_in | penha_epoll_hup | penha_epoll_err) != 0 { connection.client.readable = true }
                if events & (penha_epoll_out | penha_epoll_hup | penha_epoll_err) != 0 { connection.client.writable = true }
                if events & penha_epoll_rdhup != 0 { connection.client.peerEnded = true }
            }
            // A reset (or any socket error) ends the connection even when backpressure has
            // stopped reading that side, where no read would report it.
            if events & penha_epoll_err != 0 {
                perform(connection, connection.machine.failed())
                return
            }
            pump(connection)
        }
    }

    private func perform(_ order: Order) {
        switch order {
        case .close(let number):
            // A scan, not a map kept per connection: `close N` is rare, a map costs a hash
            // insert and removal on every connection. Bounded by the slots.
            guard let connection = slots.first(where: { $0.machine.number == number }) else { return }
            perform(connection, connection.machine.closeRequested())
        case .stopAccepting(let done):
            stopAccepting()
            done.countDown()
        case .resumeAccepting:
            if listener >= 0 && accepting { listenerReady = true }
        case .report(let done):
            reportCounters()
            done.countDown()
        case .stop:
            stopAccepting()
            running = false
        case .capture(let collector):
            capture(into: collector)
        case .listen(let descriptor):
            listen(descriptor)
        case .adopt(let connections, let done):
            for connection in connections { adopt(connection) }
            done.countDown()
        }
    }

    func stopAccepting() {
        if listener >= 0 { _ = penha_epoll_remove(epoll, listener) }
        listener = -1
        accepting = false
        listenerReady = false
    }

    // MARK: accepting

    /// accept4 until EAGAIN, the burst bound, `-x`'s limit or a back-off.
    private func acceptClients() {
        guard accepting, listener >= 0, now >= backOffUntil else { return }
        for _ in 0..<Self.acceptBurst {
            guard engine.reservePlace() else {
                // At the limit the listener is just not read: clients wait in the backlog.
                waitingForPlace.store(true, ordering: .relaxed)
                return
            }
            waitingForPlace.store(false, ordering: .relaxed)
            var peer = PeerAddress()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let accepted = SystemCallResult {
                Int(withUnsafeMutablePointer(to: &peer.storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { penha_accept4(listener, $0, &length, Socket.acceptFlags) }
                })
            }
            switch accepted {
            case .done(let descriptor):
                opened(Int32(descriptor), peer)
            case .wouldBlock:
                engine.releasePlace(from: self)
                listenerReady = false
                return
            case .failed(ECONNABORTED), .failed(EPROTO), .failed(EPERM), .failed(EINTR):
                // This client is gone (or refused by a firewall rule); the next may not be.
                engine.releasePlace(from: self)
            case .failed(let code):
                engine.releasePlace(from: self)
                localFailure(code, while: "accepting a client")
                return
            }
        }
    }

    /// A socket call failed for a reason of this host's (`FailureCause.isLocal`): logged at
    /// most once a second with the count since, and on a shortage accepting pauses for
    /// `FailureCause.backOff`, since a client accepted now could only be closed again.
    func localFailure(_ code: Int32, while doing: String) {
        let shortage = FailureCause(errno: code) == .localResources
        if let note = failureLog.admitNote(now: NIODeadline.uptimeNanoseconds(now)) {
            let pause = shortage ? ", not accepting for \(FailureCause.backOff.nanoseconds / 1_000_000) ms" : ""
            engine.events.log(.warning, "local failure \(doing), no server blacklisted\(pause): \(SystemErrorText.describe(errno: code))\(note)", [:])
        }
        if shortage { backOffUntil = now + UInt64(FailureCause.backOff.nanoseconds) }
    }

    private func opened(_ descriptor: Int32, _ peer: PeerAddress) {
        let connection = takeSlot()
        connection.machine = ConnectionStateMachine(acceptedAt: now, expectsProxyHeader: engine.acceptsProxyHeader.load(ordering: .relaxed))
        connection.client.descriptor = descriptor
        connection.client.writable = true
        connection.peer = peer
        connection.clientKey = peer.clientKey
        guard penha_epoll_add(epoll, descriptor, Self.interest, connection.token(server: false)) == 0 else {
            localFailure(errno, while: "accepting a client")
            perform(connection, connection.machine.closeRequested())
            return
        }
        if connection.machine.stage != .awaitingProxyHeader { admit(connection) }
    }

    /// The client as it is (its PROXY protocol header read): its handshake, or its placement.
    func admit(_ connection: Connection) {
        perform(connection, connection.machine.admitted(terminatesTLS: engine.tls != nil, now: now))
    }

    func takeSlot() -> Connection {
        if let slot = freeSlots.popLast() { return slots[slot] }
        let connection = Connection(slot: slots.count)
        slots.append(connection)
        return connection
    }

    // MARK: actions

    /// Makes the system calls (and takes the lock) an action of the connection's machine names.
    func perform(_ connection: Connection, _ action: consuming ConnectionStateMachine.Action) {
        switch consume action {
        case .none:
            return
        case .startHandshake:
            startHandshake(connection)
        case .place:
            place(connection)
        case .connect(let lease):
            connect(connection, lease)
        case .failover(let lease, let error):
            failover(connection, lease, error)
        case .shutdownWrite(let direction):
            _ = shutdown(connection.destination(direction), Int32(SHUT_WR))
        case .close(let close):
            end(connection, close)
        }
    }

    /// Closes both sides and gives the state what the machine says it is owed; `reset`: one
    /// side failed (its peer reset it, or any error), so nobody is left to read what the
    /// other would deliver: that one is reset at once too, not closed with a FIN, which would
    /// make a stream cut off by the reset look complete. The machine returns `.close` once,
    /// so a slot goes into `freeSlots` once and a server's count comes back once.
    private func end(_ connection: Connection, _ close: consuming ConnectionStateMachine.Close) {
        // Handed over: its sockets went to the other process (-1 here), which logs its request.
        let handedOver = close.reason == .handedOver
        Socket.close(connection.client.descriptor, reset: close.reset)
        Socket.close(connection.server.descriptor, reset: close.reset)
        switch close.release {
        case .nothing:
            break
        case .abandonedConnect(let lease):
            // The client left (or this host failed) before the server answered: it keeps its standing.
            engine.shared.withLock { $0.state.connectFailedLocally(lease.target, of: lease.placement) }
        case .finished(let report, let number, let requestUnlogged):
            engine.shared.withLock { runtime in
                if report.toServer > 0 || report.toClient > 0 {
                    runtime.state.relayed(report.placement, target: report.target, toServer: report.toServer, toClient: report.toClient)
                }
                runtime.state.finished(report.placement, connection: number, target: report.target)
            }
            if requestUnlogged && !handedOver {
                engine.events.logConnection(client: connection.clientKey, server: connection.machine.lease?.address,
                                            request: PenLogLine.noRequest)
            }
        }
        logEnd(connection, close.reason)
        connection.clear(&pool)
        freeSlots.append(connection.slot)
        engine.releasePlace(from: self)
        if isWaitingForPlace && accepting && listener >= 0 { listenerReady = true }
    }

    /// The log lines (and the TLS counter) a connection's end makes, by why it ended.
    private func logEnd(_ connection: Connection, _ reason: ConnectionStateMachine.EndReason) {
        switch reason {
        case .proxyHeaderRefused(let why):
            if let note = engine.proxyRefusalLog.withLock({ $0.admitNote(now: NIODeadline.uptimeNanoseconds(now)) }) {
                engine.events.log(.info, "PROXY protocol header refused\(note)", ["client": connection.peer.text, "error": why])
            }
        case .handshakeFailed(let why):
            if let note = engine.tls?.handshakeFailed(now: NIODeadline.uptimeNanoseconds(now)) {
                engine.events.log(.info, "TLS handshake failed\(note)", ["client": connection.peer.text, "error": why])
            }
        case .noServer:
            engine.events.log(.info, "no server available, closing client", ["client": connection.peer.text])
        case .finished, .failed, .closed, .idleTimeout, .drainBound, .setupFailed, .localFailure, .handedOver:
            break
        }
    }

    // MARK: timers

    /// Every `reportInterval`: byte counters into the state (one lock for all), then the
    /// deadlines (the machine's `tick`).
    private func sweep() {
        nextSweep = now + Engine.reportInterval
        reportCounters()
        pool.trim(hasConnections: slots.count > freeSlots.count)
        if isWaitingForPlace && accepting && listener >= 0 { listenerReady = true }
        for connection in slots where !connection.machine.isClosed {
            perform(connection, connection.machine.tick(now: now))
        }
    }

    /// The byte counts read since the last report, into the state under one lock for all.
    private func reportCounters() {
        if !reportsDue.isEmpty {
            swap(&reportsDue, &reporting)
            defer { reporting.removeAll(keepingCapacity: true) }
            engine.shared.withLock { runtime in
                for slot in reporting {
                    guard let report = slots[slot].machine.takeReport() else { continue }
                    runtime.state.relayed(report.placement, target: report.target, toServer: report.toServer, toClient: report.toClient)
                }
            }
        }
    }
}
