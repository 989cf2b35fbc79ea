import BalancerCore
import CEngine
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The client side's transformations over the engine's pipes: TLS (OpenSSL on memory BIOs,
/// `TLSConnection`) and `-H` (`ForwardedForRewriter` on the bytes to the server).
extension EngineThread {
    func startHandshake(_ connection: Connection, _ tls: TLSTermination) {
        do {
            connection.tls = try tls.makeConnection()
        } catch {
            engine.events.log(.warning, "cannot set up the client's connection: \(error)", [:])
            end(connection, reset: false)
            return
        }
        connection.phase = .handshaking
        connection.deadline = now + TLSTermination.handshakeTimeout
    }

    /// One handshake step: what OpenSSL answered written to the client, the client's next
    /// bytes fed in. Done: the server is chosen and connected to (after the handshake, as
    /// before), and what the client sent with its Finished goes on as early bytes.
    func handshakeStep(_ connection: Connection) -> Bool {
        var moved = writeToClient(connection)
        guard !connection.failed else {
            handshakeFailed(connection, "the connection failed during the handshake")
            return true
        }
        guard connection.client.readable, let tls = connection.tls else { return moved }
        let count = penha_recv(connection.client.descriptor, scratch.baseAddress, scratch.count)
        guard count > 0 else {
            if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                handshakeFailed(connection, "the connection closed during the handshake")
            } else {
                connection.client.readable = false
            }
            return true
        }
        if count < scratch.count && !connection.client.peerEnded { connection.client.readable = false }
        tls.receive(UnsafeRawBufferPointer(rebasing: scratch[..<count]))
        handshakeStepsLeft -= 1
        let step = tls.handshake()
        queueCiphertext(connection, tls)
        moved = true
        switch step {
        case .done:
            engine.tls?.handshakeCompleted()
            connection.phase = .accepted
            place(connection)
            guard connection.phase != .free else { return true }
            let decrypted = decrypt(connection, tls)
            if decrypted > 0 { connection.unreportedToServer &+= UInt64(decrypted) }
        case .wantsInput:
            break
        case .closedByPeer:
            handshakeFailed(connection, "the connection closed during the handshake")
        case .failed(let reason):
            // The alert that says why goes out first, if the socket takes it now.
            _ = writeToClient(connection)
            handshakeFailed(connection, reason)
        }
        return moved
    }

    private func writeToClient(_ connection: Connection) -> Bool {
        write(connection, &connection.toClient, to: &connection.client, isServer: false)
    }

    /// Counts and logs a failed handshake, then closes the client.
    func handshakeFailed(_ connection: Connection, _ reason: String) {
        countHandshakeFailure(connection, reason)
        connection.tls = nil  // counted: end() does not count it again
        end(connection, reset: false)
    }

    /// Counts and logs (throttled) a failed handshake; ends nothing (`end` calls it).
    func countHandshakeFailure(_ connection: Connection, _ reason: String) {
        if let note = engine.tls?.handshakeFailed(now: NIODeadline.uptimeNanoseconds(now)) {
            engine.events.log(.info, "TLS handshake failed\(note)", ["client": connection.peer.text, "error": reason])
        }
    }

    func tlsTimedOut(_ connection: Connection) {
        handshakeFailed(connection, "no handshake within \(TLSTermination.handshakeTimeout / 1_000_000_000) seconds")
    }

    /// The client's bytes when something stands between its socket and `toServer`: the bytes
    /// that went into the pipe (0 at the end of input), nil when nothing came.
    func readTransformed(_ connection: Connection) -> Int? {
        let count = penha_recv(connection.client.descriptor, scratch.baseAddress, scratch.count)
        guard count > 0 else {
            let result = readEnded(connection, count, &connection.toServer, &connection.client)
            if result == 0, !connection.failed, let rewriter = connection.rewriter {
                // The client has sent its last byte, so a head still incomplete never will be:
                // the server gets it as it is rather than losing it.
                connection.rewriter = nil
                var rewriter = rewriter
                return forward(connection, rewriter.finish())
            }
            return result
        }
        if count < scratch.count && !connection.client.peerEnded { connection.client.readable = false }
        let bytes = UnsafeRawBufferPointer(rebasing: scratch[..<count])
        guard let tls = connection.tls else { return rewrite(connection, bytes) }
        tls.receive(bytes)
        return decrypt(connection, tls)
    }

    /// Plaintext decrypted so far, on into `toServer`; close_notify ends the client's input
    /// (half-close). Bounded: each read consumes buffered input.
    private func decrypt(_ connection: Connection, _ tls: TLSConnection) -> Int {
        var total = 0
        while connection.phase != .free {
            let (count, step) = tls.read(into: scratch)
            if count > 0 {
                total += rewrite(connection, UnsafeRawBufferPointer(rebasing: scratch[..<count]))
                continue
            }
            switch step {
            case .closedByPeer:
                connection.toServer.sourceEnded = true
            case .failed(let reason):
                engine.events.log(.debug, "TLS failed", ["client": connection.peer.text, "error": reason])
                end(connection, reset: true)
                return total
            case .done, .wantsInput:
                break
            }
            break
        }
        // TLS 1.3 sends session tickets and key updates after the handshake.
        if connection.phase != .free { queueCiphertext(connection, tls) }
        return total
    }

    private func rewrite(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard connection.rewriter != nil else {
            connection.toServer.append(bytes, &pool)
            return bytes.count
        }
        var input = ByteBuffer()
        input.writeBytes(bytes)
        return forward(connection, connection.rewriter!.process(input))
    }

    private func forward(_ connection: Connection, _ output: ByteBuffer) -> Int {
        output.withUnsafeReadableBytes { connection.toServer.append($0, &pool) }
        return output.readableBytes
    }

    /// The server's plaintext, encrypted into `toClient`.
    func readForTLS(_ connection: Connection) -> Int? {
        let count = penha_recv(connection.server.descriptor, scratch.baseAddress, scratch.count)
        guard count > 0 else { return readEnded(connection, count, &connection.toClient, &connection.server) }
        if count < scratch.count && !connection.server.peerEnded { connection.server.readable = false }
        guard let tls = connection.tls else { return count }
        if case .failed(let reason) = tls.write(UnsafeRawBufferPointer(rebasing: scratch[..<count])) {
            engine.events.log(.debug, "TLS failed", ["client": connection.peer.text, "error": reason])
            end(connection, reset: true)
            return 0
        }
        queueCiphertext(connection, tls)
        return count
    }

    private func queueCiphertext(_ connection: Connection, _ tls: TLSConnection) {
        tls.takeCiphertext(into: scratch) { connection.toClient.append($0, &pool) }
    }
}
