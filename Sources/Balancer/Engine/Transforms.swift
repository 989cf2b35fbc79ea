import BalancerCore
import CEngine
import EngineCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The client side's transformations over the engine's pipes: TLS (OpenSSL on memory BIOs,
/// `TLSConnection`) and `-H` (`ForwardedForRewriter` on the bytes to the server).
extension EngineThread {
    /// The machine's `.startHandshake`: the client's TLS connection in memory.
    func startHandshake(_ connection: Connection) {
        do {
            guard let tls = engine.tls else { throw ConfigurationError("TLS is not configured") }
            connection.tls = try tls.makeConnection()
        } catch {
            engine.events.log(.warning, "cannot set up the client's connection: \(error)", [:])
            perform(connection, connection.machine.setupFailed())
        }
    }

    /// One handshake step: what OpenSSL answered written to the client, the client's next
    /// bytes fed in. Done: the server is chosen and connected to (after the handshake, as
    /// before), and what the client sent with its Finished goes on as early bytes.
    func handshakeStep(_ connection: Connection) -> Bool {
        var moved = false
        switch write(connection, .toClient) {
        case .ended: return true
        case .moved: moved = true
        case .idle: break
        }
        guard connection.client.readable, let tls = connection.tls else { return moved }
        let count: Int
        switch SystemCallResult({ penha_recv(connection.client.descriptor, scratch.baseAddress, scratch.count) }) {
        case .done(let read) where read > 0:
            count = read
        case .wouldBlock:
            connection.client.readable = false
            return true
        case .done, .failed:
            perform(connection, connection.machine.handshakeFailed("the connection closed during the handshake"))
            return true
        }
        if count < scratch.count && !connection.client.peerEnded { connection.client.readable = false }
        tls.receive(UnsafeRawBufferPointer(rebasing: scratch[..<count]))
        handshakeStepsLeft -= 1
        let step = tls.handshake()
        queueCiphertext(connection, tls)
        switch step {
        case .done:
            engine.tls?.handshakeCompleted()
            perform(connection, connection.machine.handshakeCompleted())
            guard !connection.machine.isClosed else { return true }
            let decrypted = decrypt(connection, tls)
            if decrypted > 0 { counted(decrypted, .toServer, connection) }
        case .wantsInput:
            break
        case .closedByPeer:
            perform(connection, connection.machine.handshakeFailed("the connection closed during the handshake"))
        case .failed(let reason):
            // The alert that says why goes out first, if the socket takes it now.
            _ = write(connection, .toClient)
            perform(connection, connection.machine.handshakeFailed(reason))
        }
        return true
    }

    /// The client's bytes when something stands between its socket and `toServer`: the bytes
    /// that went into the pipe (`.moved(0)`: the end of input).
    func readTransformed(_ connection: Connection) -> Transfer {
        let result = SystemCallResult { penha_recv(connection.client.descriptor, scratch.baseAddress, scratch.count) }
        guard case .done(let count) = result, count > 0 else {
            let ended = readEnded(connection, result, &connection.client, .toServer)
            if ended == .moved(0), let rewriter = connection.rewriter {
                // The client has sent its last byte, so a head still incomplete never will be:
                // the server gets it as it is rather than losing it.
                connection.rewriter = nil
                var rewriter = rewriter
                return .moved(forward(connection, rewriter.finish()))
            }
            return ended
        }
        if count < scratch.count && !connection.client.peerEnded { connection.client.readable = false }
        let bytes = UnsafeRawBufferPointer(rebasing: scratch[..<count])
        guard let tls = connection.tls else { return .moved(rewrite(connection, bytes)) }
        tls.receive(bytes)
        let decrypted = decrypt(connection, tls)
        return connection.machine.isClosed ? .blocked : .moved(decrypted)
    }

    /// Plaintext decrypted so far, on into `toServer`; close_notify ends the client's input
    /// (half-close). Bounded: each read consumes buffered input.
    private func decrypt(_ connection: Connection, _ tls: TLSConnection) -> Int {
        var total = 0
        while !connection.machine.isClosed {
            let (count, step) = tls.read(into: scratch)
            if count > 0 {
                total += rewrite(connection, UnsafeRawBufferPointer(rebasing: scratch[..<count]))
                continue
            }
            switch step {
            case .closedByPeer:
                connection.machine.sourceEnded(.toServer, now: now)
            case .failed(let reason):
                engine.events.log(.debug, "TLS failed", ["client": connection.peer.text, "error": reason])
                perform(connection, connection.machine.failed())
                return total
            case .done, .wantsInput:
                break
            }
            break
        }
        // TLS 1.3 sends session tickets and key updates after the handshake.
        if !connection.machine.isClosed { queueCiphertext(connection, tls) }
        return total
    }

    private func rewrite(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        if connection.rewriter != nil {
            var input = ByteBuffer()
            input.writeBytes(bytes)
            // Through the optional in place: a copy of the rewriter would copy its buffers.
            if let output = connection.rewriter?.process(input) { return forward(connection, output) }
        }
        connection.toServer.append(bytes, &pool)
        return bytes.count
    }

    private func forward(_ connection: Connection, _ output: ByteBuffer) -> Int {
        output.withUnsafeReadableBytes { connection.toServer.append($0, &pool) }
        return output.readableBytes
    }

    /// The server's plaintext, encrypted into `toClient`.
    func readForTLS(_ connection: Connection) -> Transfer {
        let result = SystemCallResult { penha_recv(connection.server.descriptor, scratch.baseAddress, scratch.count) }
        guard case .done(let count) = result, count > 0 else { return readEnded(connection, result, &connection.server, .toClient) }
        if count < scratch.count && !connection.server.peerEnded { connection.server.readable = false }
        guard let tls = connection.tls else { return .moved(count) }
        if case .failed(let reason) = tls.write(UnsafeRawBufferPointer(rebasing: scratch[..<count])) {
            engine.events.log(.debug, "TLS failed", ["client": connection.peer.text, "error": reason])
            return .failed
        }
        queueCiphertext(connection, tls)
        return .moved(count)
    }

    private func queueCiphertext(_ connection: Connection, _ tls: TLSConnection) {
        tls.takeCiphertext(into: scratch) { connection.toClient.append($0, &pool) }
    }
}
