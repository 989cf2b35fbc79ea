import COpenSSL
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Certificates made by the openssl CLI, in a test's directory.
struct TestCertificate {
    let certificate: String
    let key: String

    /// A self-signed certificate (also good as a CA) with subject CN=`name`; an EC P-256 key,
    /// or RSA with `rsaBits`.
    static func selfSigned(_ name: String, in directory: String, certificate: String? = nil, key: String? = nil,
                           rsaBits: Int? = nil) throws -> Self {
        let file = name.replacingOccurrences(of: " ", with: "-")
        let made = Self(certificate: certificate ?? "\(directory)/\(file).crt", key: key ?? "\(directory)/\(file).key")
        let newKey = rsaBits.map { ["-newkey", "rsa:\($0)"] } ?? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        try openssl(["req", "-x509"] + newKey + ["-nodes", "-keyout", made.key, "-out", made.certificate, "-days", "2", "-subj", "/CN=\(name)"])
        return made
    }

    /// A certificate with subject CN=`name` signed by `ca`.
    static func signed(_ name: String, by ca: Self, in directory: String) throws -> Self {
        let made = Self(certificate: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
        let request = "\(directory)/\(name).csr"
        try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", made.key, "-out", request, "-subj", "/CN=\(name)"])
        try openssl(["x509", "-req", "-in", request, "-CA", ca.certificate, "-CAkey", ca.key, "-set_serial", "7",
                     "-out", made.certificate, "-days", "2"])
        return made
    }

    static func openssl(_ arguments: [String]) throws {
        let result = try runTool("openssl", arguments)
        guard result.status == 0 else { throw TestFailure("openssl \(arguments) failed: \(result.stderr)") }
    }
}

/// A tool on PATH, nil when it is not installed.
func findTool(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// A tool on PATH run to completion (bounded).
func runTool(_ name: String, _ arguments: [String], input: String = "", timeout: Double = 20)
    throws -> (status: Int32, stdout: String, stderr: String) {
    guard let tool = findTool(name) else { throw TestFailure("no \(name)") }
    return try runProgram(tool, arguments, input: input, timeout: timeout)
}

/// A blocking TLS client (OpenSSL on a socket with timeouts), to speak to penha byte by byte.
final class TLSClient {
    private let socket: Client
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    private var buffered = ReceiveBuffer()

    init(port: Int, source: String? = nil) throws {
        socket = try Client(port: port, source: source, timeout: 10)
        guard let context = SSL_CTX_new(TLS_client_method()), let ssl = SSL_new(context) else {
            throw TestFailure("cannot make an OpenSSL client")
        }
        self.context = context
        self.ssl = ssl
        SSL_set_fd(ssl, socket.fd)
        guard SSL_connect(ssl) == 1 else { throw TestFailure("TLS handshake failed: \(SSL_get_error(ssl, -1))") }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    func send(_ bytes: [UInt8]) throws {
        guard bytes.withUnsafeBytes({ SSL_write(ssl, $0.baseAddress, Int32($0.count)) }) == Int32(bytes.count) else {
            throw TestFailure("SSL_write failed")
        }
    }

    /// Up to `limit` bytes; empty at close_notify or EOF; throws on timeout or error.
    func receive(upTo limit: Int) throws -> [UInt8] {
        if !buffered.isEmpty { return buffered.take(upTo: limit) }
        return try read(upTo: limit)
    }

    func readLine() throws -> String? {
        try buffered.readLine { try read(upTo: 4096) }
    }

    private func read(upTo limit: Int) throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: limit)
        let count = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
        if count > 0 { return Array(chunk.prefix(Int(count))) }
        let error = SSL_get_error(ssl, count)
        guard error == SSL_ERROR_ZERO_RETURN || error == SSL_ERROR_SYSCALL else { throw TestFailure("SSL_read: \(error)") }
        return []
    }

    /// The server closed without sending a byte (with or without close_notify, which OpenSSL 3
    /// reports as an error).
    func isClosedWithoutData() throws -> Bool {
        var byte: UInt8 = 0
        let count = SSL_read(ssl, &byte, 1)
        guard count <= 0 else { return false }
        let error = SSL_get_error(ssl, count)
        if error == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK) { throw TestFailure("timed out waiting for the close") }
        return true
    }

    /// Sends close_notify: the end of this side's input for penha (RFC 8446 section 6.1).
    func closeNotify() {
        _ = SSL_shutdown(ssl)
    }
}

/// The ClientHello OpenSSL's client sends first. Sent again on other connections, each costs
/// the server a whole handshake's work, its signature included.
func clientHello() throws -> [UInt8] {
    guard let context = SSL_CTX_new(TLS_client_method()), let ssl = SSL_new(context) else { throw TestFailure("cannot make an OpenSSL client") }
    defer {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }
    guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else { throw TestFailure("cannot make memory BIOs") }
    SSL_set_bio(ssl, input, output)  // the SSL owns both from here
    SSL_set_connect_state(ssl)
    _ = SSL_do_handshake(ssl)  // wants the server's answer; the hello is written
    var hello = [UInt8](repeating: 0, count: 16384)
    let count = BIO_read(output, &hello, Int32(hello.count))
    guard count > 0 else { throw TestFailure("no ClientHello") }
    return Array(hello.prefix(Int(count)))
}
