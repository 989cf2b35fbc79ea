import BalancerCore
import COpenSSL

/// One server-side TLS connection in memory: ciphertext goes in with `receive`, comes out with
/// `takeCiphertext`; OpenSSL never touches a socket, so it never blocks. The engine moves
/// the bytes between this and the client's socket and pipes (`EngineThread`'s TLS steps).
/// An OpenSSL server context (SSL_CTX) made from the TLS settings, loaded by the control plane.
public protocol TLSServerContext: AnyObject, Sendable {
    var context: OpaquePointer { get }
}

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
    private let owner: any TLSServerContext
    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer

    init(context: any TLSServerContext) throws {
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
    func receive(_ bytes: UnsafeRawBufferPointer) {
        // A memory BIO grows as needed, so it takes everything.
        _ = BIO_write(input, bytes.baseAddress, Int32(bytes.count))
    }

    func handshake() -> Step {
        ERR_clear_error()
        return step(SSL_do_handshake(ssl))
    }

    /// Decrypts what has arrived into `into`: the bytes decrypted (`.done`), or why none.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> (Int, Step) {
        ERR_clear_error()
        let result = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        return result > 0 ? (Int(result), .done) : (0, step(result))
    }

    /// Encrypts all of `bytes` (memory BIOs never make OpenSSL wait).
    func write(_ bytes: UnsafeRawBufferPointer) -> Step {
        ERR_clear_error()
        let result = SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        return result > 0 ? .done : step(result)
    }

    /// close_notify is queued: the client's FIN may follow it.
    private(set) var isShutDown = false

    /// Queues close_notify (RFC 8446 section 6.1).
    func shutdown() {
        isShutDown = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// What OpenSSL has to send (handshake messages, alerts, records), in chunks of `scratch`'s size.
    func takeCiphertext(into scratch: UnsafeMutableRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        while BIO_ctrl_pending(output) > 0 {
            let count = BIO_read(output, scratch.baseAddress, Int32(clamping: scratch.count))
            guard count > 0 else { return }
            body(UnsafeRawBufferPointer(rebasing: scratch[..<Int(count)]))
        }
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

/// OpenSSL's queued errors as one line (and the queue emptied).
public func openSSLErrors() -> String {
    var messages: [String] = []
    // Bounded: each call removes one error from the queue.
    while case let code = ERR_get_error(), code != 0 {
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        messages.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return messages.isEmpty ? "unknown OpenSSL error" : messages.joined(separator: "; ")
}
