import COpenSSL
import NIOCore
import NIOEmbedded
import XCTest
@testable import Balancer
@testable import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

/// `TLSHandler` on an `EmbeddedChannel`, talking to an OpenSSL client in memory: no socket,
/// deterministic time.
final class TLSHandlerTests: XCTestCase {
    private var channel: EmbeddedChannel!
    private var client: MemoryTLSClient!
    private var outcomes: [Result<Void, TLSHandler.Failure>] = []
    private var recorder: EventRecorder!
    private var certificateFile = ""

    override func setUpWithError() throws {
        certificateFile = NSTemporaryDirectory() + "penha-unit-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).pem"
        try Self.certificateAndKey.write(toFile: certificateFile, atomically: true, encoding: .utf8)
        var settings = TLSSettings()
        settings.certificateFile = certificateFile
        let context = try TLSContext(settings: settings)
        channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        recorder = EventRecorder()
        // Added to a channel already active: the handshake starts right away.
        try channel.pipeline.syncOperations.addHandler(TLSHandler(connection: try context.makeConnection()) { [unowned self] in
            self.outcomes.append($0)
        })
        try channel.pipeline.syncOperations.addHandler(recorder)
        client = try MemoryTLSClient()
    }

    override func tearDown() {
        _ = try? channel.finish()
        unlink(certificateFile)
    }

    func testTheHandshakeCompletesAndPlaintextWaitsUntilAReadIsAskedFor() throws {
        try pump()
        XCTAssertEqual(outcomes.count, 1)
        XCTAssertNoThrow(try outcomes.first?.get())
        client.write("hello")
        try pump()
        XCTAssertEqual(recorder.received, "", "nothing goes on before the handlers behind ask to read")
        channel.read()
        XCTAssertEqual(recorder.received, "hello")
        try channel.writeAndFlush(ByteBuffer(string: "world")).wait()
        try pump()
        XCTAssertEqual(client.readAll(), "world")
    }

    func testCloseNotifyEndsTheInputAndClosingTheOutputSendsOne() throws {
        try pump()
        channel.read()
        client.shutdown()
        try pump()
        XCTAssertTrue(recorder.inputClosed, "close_notify is the client's half-close")
        XCTAssertTrue(channel.isActive)
        channel.close(mode: .output, promise: nil)
        try pump()
        XCTAssertTrue(client.receivedCloseNotify)
    }

    func testAGarbageHandshakeIsReportedAndClosesTheChannel() throws {
        try channel.writeInbound(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x08] + [UInt8](repeating: 0xFF, count: 8)))
        XCTAssertEqual(outcomes.count, 1)
        XCTAssertThrowsError(try outcomes.first?.get())
        XCTAssertFalse(channel.isActive)
    }

    func testAHandshakeNotDoneInTimeIsReportedAndClosed() throws {
        try channel.writeInbound(ByteBuffer(bytes: [0x16, 0x03, 0x01]))
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        XCTAssertTrue(outcomes.isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        XCTAssertEqual(outcomes.count, 1)
        XCTAssertThrowsError(try outcomes.first?.get()) { error in
            XCTAssertTrue("\(error)".contains("no handshake within 30 seconds"), "\(error)")
        }
        XCTAssertFalse(channel.isActive)
    }

    /// Moves bytes both ways until neither side has any to send (bounded).
    private func pump() throws {
        for _ in 0..<20 {
            client.advance()
            var moved = false
            if let bytes = client.takeOutput() {
                try channel.writeInbound(bytes)
                moved = true
            }
            while let bytes = try channel.readOutbound(as: ByteBuffer.self) {
                client.receive(bytes)
                moved = true
            }
            if !moved { return }
        }
        XCTFail("the handshake did not settle")
    }

    /// Self-signed, CN=unit.test, valid until 2126.
    static let certificateAndKey = """
        -----BEGIN CERTIFICATE-----
        MIIBfjCCASWgAwIBAgIUVzKXwyDi++hQSP0iilEOMtju9gUwCgYIKoZIzj0EAwIw
        FDESMBAGA1UEAwwJdW5pdC50ZXN0MCAXDTI2MTEyMjAxNTkxM1oYDzIxMjYxMDI5
        MDE1OTEzWjAUMRIwEAYDVQQDDAl1bml0LnRlc3QwWTATBgcqhkjOPQIBBggqhkjO
        PQMBBwNCAASZpJauRdGNcothwHkLiKaD5Hz4mZTw056KikXi3j0gf+OsnBYoHEh5
        CbAW157+kcS6nElitrpvmMKPszpIE2Kfo1MwUTAdBgNVHQ4EFgQUzhUaR2OVKYHn
        w8VeYHpu6/bp/6owHwYDVR0jBBgwFoAUzhUaR2OVKYHnw8VeYHpu6/bp/6owDwYD
        VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiApxyHK/NmRYR+jgm6E9sxw
        1S46OmSV8VgvwcTR4QIZegIgNxhXJBkq2ZyObv+6b2NG3v9E/5tpJmp0xWxAdNeq
        R4Y=
        -----END CERTIFICATE-----
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3TDHy1tpS6h29uwF
        s+h93Bf4IHdXc7XpCXIYWn7CArGhRANCAASZpJauRdGNcothwHkLiKaD5Hz4mZTw
        056KikXi3j0gf+OsnBYoHEh5CbAW157+kcS6nElitrpvmMKPszpIE2Kf
        -----END PRIVATE KEY-----

        """
}

/// What reaches the handlers behind TLS: the plaintext and the end of input.
private final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received = ""
    var inputClosed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received += buffer.readString(length: buffer.readableBytes) ?? ""
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { inputClosed = true }
    }
}

/// An OpenSSL client on memory BIOs that does not check the server's certificate.
private final class MemoryTLSClient {
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer

    init() throws {
        guard let context = SSL_CTX_new(TLS_client_method()), let ssl = SSL_new(context),
              let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            throw ConfigurationError("cannot make an OpenSSL client")
        }
        SSL_set_bio(ssl, input, output)
        SSL_set_connect_state(ssl)
        (self.context, self.ssl, self.input, self.output) = (context, ssl, input, output)
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    /// Moves the handshake on, or reads what arrived after it (session tickets).
    func advance() {
        if SSL_is_init_finished(ssl) == 1 {
            var byte: UInt8 = 0
            _ = SSL_peek(ssl, &byte, 1)
        } else {
            _ = SSL_do_handshake(ssl)
        }
    }

    func receive(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { _ = BIO_write(input, $0.baseAddress, Int32($0.count)) }
    }

    func takeOutput() -> ByteBuffer? {
        var bytes = [UInt8](repeating: 0, count: 65536)
        let count = bytes.withUnsafeMutableBytes { BIO_read(output, $0.baseAddress, Int32($0.count)) }
        return count > 0 ? ByteBuffer(bytes: bytes.prefix(Int(count))) : nil
    }

    func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
    }

    func readAll() -> String {
        var text = ""
        var chunk = [UInt8](repeating: 0, count: 4096)
        while case let count = chunk.withUnsafeMutableBytes({ SSL_read(ssl, $0.baseAddress, Int32($0.count)) }), count > 0 {
            text += String(decoding: chunk.prefix(Int(count)), as: UTF8.self)
        }
        return text
    }

    func shutdown() { _ = SSL_shutdown(ssl) }

    var receivedCloseNotify: Bool {
        _ = readAll()
        return SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN != 0
    }
}
