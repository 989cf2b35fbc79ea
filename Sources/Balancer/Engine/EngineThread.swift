import BalancerCore
import CEngine
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One event loop: its epoll (edge-triggered; each socket added once with all the interest
/// it will ever need, never modified), the shared listener, an eventfd that wakes it for orders from
/// other threads, and its connection slots and buffers. Everything but `inbox` and
/// `isWaitingForPlace` is touched by its own thread only.
// Unchecked: other threads reach only `inbox` (a Mutex), `waitingForPlace` (an Atomic) and the
// eventfd; a lock around the rest would be taken per event on the data path.
final class EngineThread: @unchecked Sendable {
    enum Order: Sendable {
        case close(Int)
        case stopAccepting(Countdown)
        case resumeAccepting
        /// Add the byte counts to the state now, and count down `done`.
        case report(Countdown)
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
    var listener: Int32 = -1
    private let inbox = Mutex<[Order]>([])
    private let waitingForPlace = Atomic<Bool>(false)
    var isWaitingForPlace: Bool { waitingForPlace.load(ordering: .relaxed) }
    /// Loop turns so far, read by the watchdog (`ProgressWatch`): a thread that stops turning is wedged.
    private let turnCount = Atomic<UInt64>(0)
    var turns: UInt64 { turnCount.load(ordering: .relaxed) }

    /// Set before the thread starts, read-only after.
    private(set) var name = ""

    // Confined to the thread from here on.
    private(set) unowned(unsafe) var engine: Engine!
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
    private var backOffUntil: UInt64 = 0
    private var nextSweep: UInt64 = 0
    var now: UInt64 = 0
    /// What is left of `handshakeSteps` in this turn.
    var handshakeStepsLeft = 0
    /// Scratch for reads that a transformation (X-Forwarded-For, TLS) processes before the pipe.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: BufferPool.size, alignment: 64)
    var failureLog = LogThrottle()

    init() throws {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw IOError(errnoCode: errno, reason: "epoll_create1") }
        wake = penha_eventfd()
        guard wake >= 0, penha_epoll_add(epoll, wake, penha_epoll_in | penha_epoll_et, Self.wakeToken) == 0 else {
            throw IOError(errnoCode: errno, reason: "eventfd")
        }
    }

    /// `name`: the thread's, as `top -H` and the watchdog's log line show it.
    func start(engine: Engine, name: String) throws {
        self.engine = engine
        if listener >= 0 {
            // Shared by the threads: a new client wakes one of them, not all.
            let interest = penha_epoll_in | penha_epoll_et | penha_epoll_exclusive
            guard penha_epoll_add(epoll, listener, interest, Self.listenerToken) == 0 else {
                throw IOError(errnoCode: errno, reason: "epoll_ctl")
            }
            listenerReady = true
        }
        self.name = name
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let loop = Unmanaged<EngineThread>.fromOpaque(argument!).takeRetainedValue()
            loop.run(name: loop.name)
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw IOError(errnoCode: result, reason: "pthread_create")
        }
        pthread_detach(thread)
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

    private func run(name: String) {
        penha_name_thread(name)
        let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: Int(penha_epoll_batch))
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: Int(penha_epoll_batch))
        while true {
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
            guard connection.phase != .free, connection.generation == UInt32(token >> 32) else { return }
            let isServer = token & 1 == 1
            let failed = events & (penha_epoll_err | penha_epoll_hup) != 0
            if isServer {
                if events & (penha_epoll_in | penha_epoll_hup | penha_epoll_err) != 0 { connection.server.readable = true }
                if events & (penha_epoll_out | penha_epoll_hup | penha_epoll_err) != 0 { connection.server.writable = true }
                if events & penha_epoll_rdhup != 0 { connection.server.peerEnded = true }
                if connection.phase == .connecting {
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
                end(connection, reset: true)
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
            guard let connection = slots.first(where: { $0.phase == .relaying && $0.number == number }) else { return }
            end(connection, reset: false)
        case .stopAccepting(let done):
            if listener >= 0 { _ = penha_epoll_remove(epoll, listener) }
            listener = -1
            accepting = false
            listenerReady = false
            done.countDown()
        case .resumeAccepting:
            if listener >= 0 && accepting { listenerReady = true }
        case .report(let done):
            reportCounters()
            done.countDown()
        }
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
            let descriptor = withUnsafeMutablePointer(to: &peer.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { penha_accept4(listener, $0, &length, Socket.acceptFlags) }
            }
            guard descriptor >= 0 else {
                let code = errno
                engine.releasePlace(from: self)
                switch code {
                case EAGAIN, EWOULDBLOCK:
                    listenerReady = false
                    return
                case EINTR, ECONNABORTED, EPROTO, EPERM:
                    continue
                default:
                    localFailure(code, while: "accepting a client")
                    return
                }
            }
            opened(descriptor, peer)
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
        connection.phase = .accepted
        connection.client.descriptor = descriptor
        connection.client.writable = true
        connection.peer = peer
        connection.clientKey = peer.clientKey
        connection.lastActive = now
        guard penha_epoll_add(epoll, descriptor, Self.interest, connection.token(server: false)) == 0 else {
            localFailure(errno, while: "accepting a client")
            end(connection, reset: false)
            return
        }
        if engine.acceptsProxyHeader.load(ordering: .relaxed) {
            connection.phase = .awaitingProxyHeader
            connection.deadline = now + Engine.proxyHeaderTimeout
        } else {
            admit(connection)
        }
    }

    /// The client as it is (its PROXY protocol header read): its handshake, or its placement.
    func admit(_ connection: Connection) {
        if let tls = engine.tls {
            startHandshake(connection, tls)
        } else {
            place(connection)
        }
    }

    private func takeSlot() -> Connection {
        if let slot = freeSlots.popLast() { return slots[slot] }
        let connection = Connection(slot: slots.count)
        slots.append(connection)
        return connection
    }

    // MARK: relaying

    /// Moves bytes both ways until neither direction can go on (the readiness flags say so
    /// exactly, so no round is spent finding out), then ends the connection if both are done.
    /// Bounded by `pumpRounds`; a busy connection is queued for the next turn.
    func pump(_ connection: Connection) {
        for _ in 0..<Self.pumpRounds {
            switch connection.phase {
            case .free, .accepted:
                return
            case .awaitingProxyHeader:
                guard proxyHeaderStep(connection) else { return }
            case .handshaking:
                guard handshakeStepsLeft > 0 else { return pumpNextTurn(connection) }
                guard handshakeStep(connection) else { return }
            case .connecting, .relaying:
                let toServerMoves = canMove(connection, .toServer), toClientMoves = canMove(connection, .toClient)
                guard toServerMoves || toClientMoves else {
                    finishIfDone(connection)
                    return
                }
                if toServerMoves { move(connection, .toServer) }
                if toClientMoves && connection.phase == .relaying { move(connection, .toClient) }
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
    private func canMove(_ connection: Connection, _ direction: Connection.Direction) -> Bool {
        let relaying = connection.phase == .relaying
        if (relaying || direction == .toServer) && connection.canRead(direction) { return true }
        guard relaying else { return false }
        return connection.canWrite(direction)
    }

    /// One direction: what is queued written, the source's next bytes (from the client
    /// decrypted and rewritten) read and written on at once, once connected.
    private func move(_ connection: Connection, _ direction: Connection.Direction) {
        let relaying = connection.phase == .relaying
        if relaying && connection.hasOutput(direction) {
            _ = write(connection, direction)
            guard !failed(connection) else { return }
        }
        guard connection.canRead(direction), let count = read(connection, direction) else { return }
        guard !failed(connection) else { return }
        if count > 0 {
            connection.addUnreported(count, direction)
            noteProgress(connection)
        }
        if relaying {
            _ = write(connection, direction)
            _ = failed(connection)
        }
    }

    private func write(_ connection: Connection, _ direction: Connection.Direction) -> Bool {
        switch direction {
        case .toServer: return write(connection, &connection.toServer, to: &connection.server, isServer: true)
        case .toClient: return write(connection, &connection.toClient, to: &connection.client, isServer: false)
        }
    }

    private func read(_ connection: Connection, _ direction: Connection.Direction) -> Int? {
        switch direction {
        case .toServer:
            if connection.tls != nil || connection.rewriter != nil { return readTransformed(connection) }
            return readDirect(connection, &connection.toServer, from: &connection.client)
        case .toClient:
            if connection.tls != nil { return readForTLS(connection) }
            return readDirect(connection, &connection.toClient, from: &connection.server)
        }
    }

    /// Ends a connection a read or write marked failed; true if it has ended (either way).
    private func failed(_ connection: Connection) -> Bool {
        if connection.failed { end(connection, reset: true) }
        return connection.phase == .free
    }

    private func noteProgress(_ connection: Connection) {
        connection.lastActive = now
        if !connection.isReportPending && connection.phase == .relaying {
            connection.isReportPending = true
            reportsDue.append(connection.slot)
        }
    }

    /// Writes what `pipe` holds to `side`; passes the FIN on once it is empty and its source ended.
    /// True if anything happened. A write error marks the connection failed (the caller resets it:
    /// not here, while the pipe and side are borrowed).
    func write(_ connection: Connection, _ pipe: inout RelayBuffer, to side: inout Connection.Side, isServer: Bool) -> Bool {
        var moved = false
        if pipe.pending > 0 && side.writable {
            let descriptor = side.descriptor
            let spliced = pipe.inKernelPipe > 0
            let (count, wanted) = spliced
                ? (penha_splice(pipe.kernelPipe!.read, descriptor, pipe.inKernelPipe), pipe.inKernelPipe)
                : pipe.withPending { bytes in (penha_send(descriptor, bytes.baseAddress, bytes.count), bytes.count) }
            if count > 0 {
                if isServer && connection.logsRequest {
                    connection.logsRequest = false
                    let request = pipe.withPending { PenLogLine.requestStart($0.prefix(PenLogLine.requestLimit)) }
                    engine.events.logConnection(client: connection.clientKey, server: connection.serverAddress, request: request)
                }
                if spliced { pipe.didSpliceOut(count, &pool) } else { pipe.didWrite(count, &pool) }
                if count < wanted { side.writable = false }
                connection.lastActive = now
                moved = true
            } else if count < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK: side.writable = false
                case EINTR: break
                default:
                    connection.failed = true
                    return true
                }
            }
        }
        if !isServer, pipe.pending == 0, pipe.sourceEnded, let tls = connection.tls, !connection.closeNotifyQueued {
            // TLS: close_notify (RFC 8446 section 6.1) goes before the client's FIN.
            connection.closeNotifyQueued = true
            tls.shutdown()
            tls.takeCiphertext(into: scratch) { pipe.append($0, &pool) }
            // Once more, now with it queued (the flag above ends this at one more call).
            _ = write(connection, &pipe, to: &side, isServer: false)
            return true
        }
        if pipe.pending == 0 && pipe.sourceEnded && !pipe.shutDown {
            pipe.shutDown = true
            // When the other direction is done too, the close that follows sends the FIN (this
            // side's input has ended, so nothing unread turns it into a reset): no shutdown call.
            let otherDone = isServer ? connection.toClient.isDone : connection.toServer.isDone
            if !otherDone { _ = shutdown(side.descriptor, Int32(SHUT_WR)) }
            moved = true
        }
        return moved
    }

    /// Reads into `pipe` from `side` directly (no transformation): the bytes read (0 at the FIN),
    /// nil when nothing came.
    func readDirect(_ connection: Connection, _ pipe: inout RelayBuffer, from side: inout Connection.Side) -> Int? {
        if pipe.splices, let kernelPipe = pipe.pipeForSplice(&pool) {
            return splice(connection, &pipe, kernelPipe, from: &side)
        }
        guard let space = pipe.readableSpace(&pool) else { return nil }
        let count = penha_recv(side.descriptor, space.baseAddress, space.count)
        if count > 0 {
            pipe.didRead(count)
            // A read that fills a whole buffer is a bulk transfer: the next ones splice.
            pipe.isBulk = count == BufferPool.size
            if count < space.count {
                // Drained. After EPOLLRDHUP that means the FIN is next: taken as read, which
                // saves the recv that would return 0.
                side.readable = false
                if side.peerEnded { pipe.sourceEnded = true }
            }
            return count
        }
        return readEnded(connection, count, &pipe, &side)
    }

    /// Bulk: socket to kernel pipe, the bytes never copied through user space (HAProxy's
    /// splice; it pays only above a few KB a read, hence only after a read filled a buffer).
    private func splice(_ connection: Connection, _ pipe: inout RelayBuffer, _ kernelPipe: KernelPipe,
                        from side: inout Connection.Side) -> Int? {
        let room = BufferPool.size - pipe.inKernelPipe
        guard room > 0 else { return nil }
        let count = penha_splice(side.descriptor, kernelPipe.write, room)
        if count > 0 {
            // A short splice does not mean the socket is drained (the pipe's slots are pages
            // and may fill first), so only EAGAIN ends the reading here.
            pipe.didSpliceIn(count)
            if count < room { pipe.isBulk = false }
            return count
        }
        let code = errno
        if count < 0 && (code == EAGAIN || code == EWOULDBLOCK) && pipe.inKernelPipe > 0 {
            // The socket is drained or the pipe is full: either way a write to drain the pipe comes first.
            pipe.kernelPipeIsFull()
            return nil
        }
        pipe.didSpliceOut(0, &pool)  // an empty pipe goes back to the pool
        errno = code
        return readEnded(connection, count, &pipe, &side)
    }

    /// A read that returned no bytes: the FIN (0), EAGAIN (nil), or an error (a reset), which
    /// marks the connection failed: the caller resets both sides (0).
    func readEnded(_ connection: Connection, _ count: Int, _ pipe: inout RelayBuffer, _ side: inout Connection.Side) -> Int? {
        if count == 0 {
            pipe.sourceEnded = true
            side.readable = false
            return 0
        }
        switch errno {
        case EAGAIN, EWOULDBLOCK:
            side.readable = false
            pipe.release(&pool)
            return nil
        case EINTR:
            return nil
        default:
            connection.failed = true
            return 0
        }
    }

    /// Both directions done: closed normally. Both inputs ended but bytes still queued: the drain bound starts.
    private func finishIfDone(_ connection: Connection) {
        guard connection.phase == .relaying else { return }
        if connection.toServer.isDone && connection.toClient.isDone {
            end(connection, reset: false)
        } else if connection.toServer.sourceEnded && connection.toClient.sourceEnded && connection.drainDeadline == 0 {
            connection.drainDeadline = now + Engine.drainBound
        }
    }

    /// Closes both sides; `reset`: one side failed (its peer reset it, or any error), so
    /// nobody is left to read what the other would deliver: that one is reset at once too,
    /// not closed with a FIN, which would make a stream cut off by the reset look complete.
    func end(_ connection: Connection, reset: Bool) {
        let phase = connection.phase
        // Once only: the slot is free from here on, so nothing below (or after) can end it again
        // and put it twice in `freeSlots`, which would give two later clients the same slot.
        guard phase != .free else {
            assertionFailure("the connection in slot \(connection.slot) was ended twice")
            return
        }
        connection.phase = .free
        Socket.close(connection.client.descriptor, reset: reset)
        Socket.close(connection.server.descriptor, reset: reset)
        let placement = connection.placement
        let target = connection.target
        switch phase {
        case .relaying:
            let (toServer, toClient, number) = (connection.unreportedToServer, connection.unreportedToClient, connection.number)
            engine.shared.withLock { runtime in
                if toServer > 0 || toClient > 0 { runtime.state.relayed(placement!, target: target, toServer: toServer, toClient: toClient) }
                runtime.state.finished(placement!, connection: number, target: target)
            }
            if connection.logsRequest {
                engine.events.logConnection(client: connection.clientKey, server: connection.serverAddress, request: PenLogLine.noRequest)
            }
        case .connecting:
            // The client left before the server answered: the target keeps its standing.
            engine.shared.withLock { $0.state.connectFailedLocally(target, of: placement) }
        case .handshaking:
            if connection.tls != nil { countHandshakeFailure(connection, "the connection closed during the handshake") }
        case .awaitingProxyHeader, .accepted, .free:
            break
        }
        connection.clear(&pool)
        freeSlots.append(connection.slot)
        engine.releasePlace(from: self)
        if isWaitingForPlace && accepting && listener >= 0 { listenerReady = true }
    }

    // MARK: timers

    /// Every `reportInterval`: byte counters into the state (one lock for all), then the
    /// deadlines (connect timeout, idle timeout, drain bound, TLS handshake).
    private func sweep() {
        nextSweep = now + Engine.reportInterval
        reportCounters()
        pool.trim(hasConnections: slots.count > freeSlots.count)
        if isWaitingForPlace && accepting && listener >= 0 { listenerReady = true }
        for connection in slots where connection.phase != .free {
            switch connection.phase {
            case .connecting where now >= connection.deadline:
                connectFailed(connection, ETIMEDOUT)
            case .handshaking where now >= connection.deadline:
                tlsTimedOut(connection)
            case .awaitingProxyHeader where now >= connection.deadline:
                proxyHeaderRefused(connection, "no PROXY protocol header within \(Engine.proxyHeaderTimeout / 1_000_000_000) seconds")
            case .relaying:
                if connection.idleTimeout > 0 && now >= connection.lastActive + connection.idleTimeout {
                    end(connection, reset: false)
                } else if connection.drainDeadline > 0 && now >= connection.drainDeadline {
                    end(connection, reset: false)
                }
            default:
                break
            }
        }
    }

    /// The byte counts read since the last report, into the state under one lock for all.
    private func reportCounters() {
        if !reportsDue.isEmpty {
            swap(&reportsDue, &reporting)
            defer { reporting.removeAll(keepingCapacity: true) }
            engine.shared.withLock { runtime in
                for slot in reporting {
                    let connection = slots[slot]
                    guard connection.isReportPending, let placement = connection.placement else { continue }
                    connection.isReportPending = false
                    runtime.state.relayed(placement, target: connection.target, toServer: connection.unreportedToServer,
                                          toClient: connection.unreportedToClient)
                    connection.unreportedToServer = 0
                    connection.unreportedToClient = 0
                }
            }
        }
    }
}

