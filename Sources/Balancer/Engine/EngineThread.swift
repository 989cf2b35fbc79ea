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
    }

    private static let listenerToken = UInt64.max
    private static let wakeToken = UInt64.max - 1
    /// Accepts per loop turn, and pump rounds per connection per turn: no one socket starves the rest.
    private static let acceptBurst = 64
    private static let pumpRounds = 16
    /// TLS handshake steps per loop turn. A step may sign (an RSA-4096 signature took 3.5 ms
    /// here): 600 ClientHellos at once held a relayed connection's bytes for 2.3 s, and a turn
    /// that long stops the watchdog's pings. The rest wait for later turns.
    private static let handshakeSteps = 16
    static let interest = penha_epoll_in | penha_epoll_out | penha_epoll_rdhup | penha_epoll_et

    let epoll: Int32
    private let wake: Int32
    private(set) var listener: Int32
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
    private var slots: [Connection] = []
    private var freeSlots: [Int] = []
    var pool = BufferPool()
    /// Connections whose last pump stopped at `pumpRounds` with work left.
    private var again: [Int] = []
    /// What `again` held at the start of this turn (swapped, so neither is reallocated).
    private var pumping: [Int] = []
    private var reportsDue: [Int] = []
    private var reporting: [Int] = []
    private var listenerReady = false
    private var accepting = true
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
        }
    }

    private func stopAccepting() {
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

    private func takeSlot() -> Connection {
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

    // MARK: relaying

    /// Moves bytes both ways until neither direction can go on (the readiness flags say so
    /// exactly, so no round is spent finding out). Bounded by `pumpRounds`; a busy
    /// connection is queued for the next turn.
    func pump(_ connection: Connection) {
        for _ in 0..<Self.pumpRounds {
            switch connection.machine.stage {
            case .closed, .placing:
                return
            case .awaitingProxyHeader:
                guard proxyHeaderStep(connection) else { return }
            case .handshaking:
                guard handshakeStepsLeft > 0 else { return pumpNextTurn(connection) }
                guard handshakeStep(connection) else { return }
            case .connecting, .relaying:
                let relaying = connection.machine.stage == .relaying
                let toServerMoves = canMove(connection, .toServer, relaying), toClientMoves = relaying && canMove(connection, .toClient, true)
                guard toServerMoves || toClientMoves else { return }
                if toServerMoves { move(connection, .toServer, relaying) }
                if toClientMoves && connection.machine.stage == .relaying { move(connection, .toClient, true) }
            }
        }
        pumpNextTurn(connection)
    }

    /// Queues the connection to be pumped again next turn (once however often it is asked).
    private func pumpNextTurn(_ connection: Connection) {
        if !connection.isQueued {
            connection.isQueued = true
            again.append(connection.slot)
        }
    }

    /// Whether a read from the direction's source or a write (or the FIN) to its destination
    /// can happen now. Until the server is connected only the client is read (its early bytes
    /// wait in `toServer`).
    private func canMove(_ connection: Connection, _ direction: Connection.Direction, _ relaying: Bool) -> Bool {
        if connection.canRead(direction) { return true }
        return relaying && connection.canWrite(direction)
    }

    /// One direction: what is queued written, the source's next bytes (from the client
    /// decrypted and rewritten) read and written on at once, once connected.
    private func move(_ connection: Connection, _ direction: Connection.Direction, _ relaying: Bool) {
        if relaying && connection.hasOutput(direction) {
            guard write(connection, direction) != .ended else { return }
        }
        guard connection.canRead(direction) else { return }
        switch read(connection, direction) {
        case .failed:
            return perform(connection, connection.machine.failed())
        case .blocked:
            return
        case .moved(let count):
            counted(count, direction, connection)
        }
        if relaying { _ = write(connection, direction) }
    }

    /// Bytes read: the connection is active, and listed for the next report once it has any.
    func counted(_ count: Int, _ direction: Connection.Direction, _ connection: Connection) {
        if connection.machine.read(count, direction, now: now) { reportsDue.append(connection.slot) }
    }

    /// What one read or write did.
    enum Transfer: Equatable {
        /// Bytes moved (0 for a read: the source's end).
        case moved(Int)
        /// Nothing now: no bytes, no room, or the socket would block.
        case blocked
        /// A reset or any other error: both sides are to be reset.
        case failed
    }

    enum Written: Equatable {
        case moved, idle
        /// The connection closed (a failure, or both directions done).
        case ended
    }

    /// Writes what the direction's pipe holds; once it is empty after its source ended, the
    /// end is passed on (TLS: close_notify first, RFC 8446 section 6.1).
    func write(_ connection: Connection, _ direction: Connection.Direction) -> Written {
        let sent = direction == .toServer
            ? send(connection, &connection.toServer, to: &connection.server, logsRequest: true)
            : send(connection, &connection.toClient, to: &connection.client, logsRequest: false)
        var written = Written.idle
        switch sent {
        case .failed:
            perform(connection, connection.machine.failed())
            return .ended
        case .moved:
            connection.machine.wrote(now: now)
            written = .moved
        case .blocked:
            break
        }
        guard connection.machine.flow(direction).isEndPending, connection.pending(direction) == 0 else { return written }
        if direction == .toClient, let tls = connection.tls, !tls.isShutDown {
            tls.shutdown()
            tls.takeCiphertext(into: scratch) { connection.toClient.append($0, &pool) }
            // Once more, now with it queued (`isShutDown` ends this at one more call).
            return write(connection, direction)
        }
        perform(connection, connection.machine.outputFlushed(direction))
        return connection.machine.isClosed ? .ended : .moved
    }

    /// Sends what `pipe` holds to `side`, spliced from the kernel pipe or from the buffer.
    @inline(__always)
    private func send(_ connection: Connection, _ pipe: inout RelayBuffer, to side: inout Connection.Side,
                      logsRequest: Bool) -> Transfer {
        guard pipe.pending > 0 && side.writable else { return .blocked }
        let descriptor = side.descriptor
        let result: SystemCallResult, offered: Int, spliced: Bool
        if pipe.inKernelPipe > 0, let kernelPipe = pipe.kernelPipe {
            (offered, spliced) = (pipe.inKernelPipe, true)
            result = SystemCallResult { penha_splice(kernelPipe.read, descriptor, offered) }
        } else {
            (result, offered) = pipe.withPending { bytes in (SystemCallResult { penha_send(descriptor, bytes.baseAddress, bytes.count) }, bytes.count) }
            spliced = false
        }
        switch result {
        case .done(let count) where count > 0:
            if logsRequest && connection.machine.logsRequest {
                connection.machine.requestLogged()
                let request = pipe.withPending { PenLogLine.requestStart($0.prefix(PenLogLine.requestLimit)) }
                engine.events.logConnection(client: connection.clientKey, server: connection.machine.lease?.address, request: request)
            }
            if spliced { pipe.didSpliceOut(count, &pool) } else { pipe.didWrite(count, &pool) }
            if count < offered { side.writable = false }
            return .moved(count)
        case .done:
            return .blocked
        case .wouldBlock:
            side.writable = false
            return .blocked
        case .failed:
            return .failed
        }
    }

    private func read(_ connection: Connection, _ direction: Connection.Direction) -> Transfer {
        switch direction {
        case .toServer:
            if connection.tls != nil || connection.rewriter != nil { return readTransformed(connection) }
            return readDirect(connection, &connection.toServer, from: &connection.client, .toServer)
        case .toClient:
            if connection.tls != nil { return readForTLS(connection) }
            return readDirect(connection, &connection.toClient, from: &connection.server, .toClient)
        }
    }

    /// Reads into `pipe` from `side` directly (no transformation).
    func readDirect(_ connection: Connection, _ pipe: inout RelayBuffer, from side: inout Connection.Side,
                    _ direction: Connection.Direction) -> Transfer {
        if pipe.splices, let kernelPipe = pipe.pipeForSplice(&pool) {
            return splice(connection, &pipe, kernelPipe, from: &side, direction)
        }
        guard let space = pipe.readableSpace(&pool) else { return .blocked }
        let result = SystemCallResult { penha_recv(side.descriptor, space.baseAddress, space.count) }
        if case .done(let count) = result, count > 0 {
            pipe.didRead(count)
            // A read that fills a whole buffer is a bulk transfer: the next ones splice.
            pipe.isBulk = count == BufferPool.size
            if count < space.count {
                // Drained. After EPOLLRDHUP that means the FIN is next: taken as read, which
                // saves the recv that would return 0.
                side.readable = false
                if side.peerEnded { connection.machine.sourceEnded(direction, now: now) }
            }
            return .moved(count)
        }
        if case .wouldBlock = result { pipe.release(&pool) }
        return readEnded(connection, result, &side, direction)
    }

    /// Bulk: socket to kernel pipe, the bytes never copied through user space (HAProxy's
    /// splice; it pays only above a few KB a read, hence only after a read filled a buffer).
    private func splice(_ connection: Connection, _ pipe: inout RelayBuffer, _ kernelPipe: KernelPipe,
                        from side: inout Connection.Side, _ direction: Connection.Direction) -> Transfer {
        let room = BufferPool.size - pipe.inKernelPipe
        guard room > 0 else { return .blocked }
        let result = SystemCallResult { penha_splice(side.descriptor, kernelPipe.write, room) }
        switch result {
        case .done(let count) where count > 0:
            // A short splice does not mean the socket is drained (the pipe's slots are pages
            // and may fill first), so only EAGAIN ends the reading here.
            pipe.didSpliceIn(count)
            if count < room { pipe.isBulk = false }
            return .moved(count)
        case .wouldBlock where pipe.inKernelPipe > 0:
            // The socket is drained or the pipe is full: either way a write to drain the pipe comes first.
            pipe.kernelPipeIsFull()
            return .blocked
        default:
            pipe.didSpliceOut(0, &pool)  // an empty pipe goes back to the pool
            if case .wouldBlock = result { pipe.release(&pool) }
            return readEnded(connection, result, &side, direction)
        }
    }

    /// A read that returned no bytes: the source's end, nothing for now, or a failure.
    func readEnded(_ connection: Connection, _ result: SystemCallResult, _ side: inout Connection.Side,
                   _ direction: Connection.Direction) -> Transfer {
        switch result {
        case .done:
            connection.machine.sourceEnded(direction, now: now)
            side.readable = false
            return .moved(0)
        case .wouldBlock:
            side.readable = false
            return .blocked
        case .failed:
            return .failed
        }
    }

    /// Closes both sides and gives the state what the machine says it is owed; `reset`: one
    /// side failed (its peer reset it, or any error), so nobody is left to read what the
    /// other would deliver: that one is reset at once too, not closed with a FIN, which would
    /// make a stream cut off by the reset look complete. The machine returns `.close` once,
    /// so a slot goes into `freeSlots` once and a server's count comes back once.
    private func end(_ connection: Connection, _ close: consuming ConnectionStateMachine.Close) {
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
            if requestUnlogged {
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
        case .finished, .failed, .closed, .idleTimeout, .drainBound, .setupFailed, .localFailure:
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
