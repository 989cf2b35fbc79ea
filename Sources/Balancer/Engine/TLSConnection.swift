import BalancerCore
import COpenSSL
import NIOCore

/// One server-side TLS connection in memory: ciphertext goes in with `receive`, comes out with
/// `takeCiphertext`; OpenSSL never touches a socket, so it never blocks. `TLSHandler` moves
/// the bytes between this and the channel.
final class TLSConnection {
    enum Step: Equatable {
        case done
        /// Needs more ciphertext from the peer.
        case wantsInput
        /// The peer sent close_notify: it will send nothing more.
        case closedByPeer
        case failed(String)
    }

    /// Keeps the context (and its SNI callback's argument) alive as long as this connection.
    private let owner: TLSContext
    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer
    private static let readChunk = 16 * 1024

    init(context: TLSContext) throws {
        guard let ssl = SSL_new(context.context) else { throw ConfigurationError("cannot make a TLS connection: \(openSSLErrors())") }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw ConfigurationError("cannot make TLS buffers: \(openSSLErrors())")
        }
        SSL_set_bio(ssl, input, output)  // the SSL owns both from here
        SSL_set_accept_state(ssl)
        self.owner = context
        self.ssl = ssl
        self.input = input
        self.output = output
    }

    deinit { SSL_free(ssl) }

    /// Ciphertext from the peer, kept until `handshake` or `read` consumes it.
    func receive(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            // A memory BIO grows as needed, so it takes everything.
            _ = BIO_write(input, bytes.baseAddress, Int32(bytes.count))
        }
    }

    /// Ciphertext received and not yet decrypted, or plaintext decrypted and not yet read.
    var hasBufferedInput: Bool { BIO_ctrl_pending(input) > 0 || SSL_has_pending(ssl) == 1 }

    func handshake() -> Step {
        ERR_clear_error()
        return step(SSL_do_handshake(ssl))
    }

    /// Decrypts what has arrived, at most `readChunk` bytes per record read; `.done` with data.
    func read(allocator: ByteBufferAllocator) -> (ByteBuffer?, Step) {
        ERR_clear_error()
        var buffer = allocator.buffer(capacity: Self.readChunk)
        var result: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readChunk) { bytes in
            result = SSL_read(ssl, bytes.baseAddress, Int32(Self.readChunk))
            return max(Int(result), 0)
        }
        return result > 0 ? (buffer, .done) : (nil, step(result))
    }

    /// Encrypts all of `buffer` (memory BIOs never make OpenSSL wait).
    func write(_ buffer: ByteBuffer) -> Step {
        ERR_clear_error()
        let result = buffer.withUnsafeReadableBytes { bytes in SSL_write(ssl, bytes.baseAddress, Int32(bytes.count)) }
        return result > 0 ? .done : step(result)
    }

    /// Queues close_notify (RFC 8446 section 6.1).
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// What OpenSSL has to send: handshake messages, alerts, records.
    func takeCiphertext(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = BIO_ctrl_pending(output)
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            max(Int(BIO_read(output, bytes.baseAddress, Int32(pending))), 0)
        }
        return buffer
    }

    private func step(_ result: Int32) -> Step {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_NONE: return .done
        case SSL_ERROR_WANT_READ: return .wantsInput
        case SSL_ERROR_ZERO_RETURN: return .closedByPeer
        default: return .failed(openSSLErrors())
        }
    }
}
