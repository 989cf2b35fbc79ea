import BalancerCore
import CEngine
import EngineCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Relaying: bytes both ways between a connection's sockets and pipes, as edge-triggered
/// readiness allows, with splice for bulk; the ends and the counters go to the connection's
/// machine, which says when to pass an end on and when the connection is done.
extension EngineThread {
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
    fileprivate func pumpNextTurn(_ connection: Connection) {
        if !connection.isQueued {
            connection.isQueued = true
            again.append(connection.slot)
        }
    }

    /// Whether a read from the direction's source or a write (or the FIN) to its destination
    /// can happen now. Until the server is connected only the client is read (its early bytes
    /// wait in `toServer`).
    fileprivate func canMove(_ connection: Connection, _ direction: Connection.Direction, _ relaying: Bool) -> Bool {
        if connection.canRead(direction) { return true }
        return relaying && connection.canWrite(direction)
    }

    /// One direction: what is queued written, the source's next bytes (from the client
    /// decrypted and rewritten) read and written on at once, once connected.
    fileprivate func move(_ connection: Connection, _ direction: Connection.Direction, _ relaying: Bool) {
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
    fileprivate func send(_ connection: Connection, _ pipe: inout RelayBuffer, to side: inout Connection.Side,
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

    fileprivate func read(_ connection: Connection, _ direction: Connection.Direction) -> Transfer {
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
    fileprivate func splice(_ connection: Connection, _ pipe: inout RelayBuffer, _ kernelPipe: KernelPipe,
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
}
