import COpenSSL
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// TLS termination through the real binary, with certificates made by the openssl CLI and
/// clients that are curl, openssl and raw sockets.
final class TLSIntegrationTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        for tool in ["openssl", "curl"] where findTool(tool) == nil {
            throw XCTSkip("needs the \(tool) binary (CI installs it)")
        }
        directory = temporaryPath("tls")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testCurlGetsTheBackendsAnswerOverTLS() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let penha = try Penha(["-E", server.certificate, "-K", server.key], servers: ["127.0.0.1:\(backend.port)"])
        let answer = try curl(penha, path: "/hello")
        XCTAssertEqual(answer.status, 0, answer.stderr)
        XCTAssertTrue(answer.stdout.hasPrefix("GET /hello HTTP/1.1\r\n"), answer.stdout)
        XCTAssertTrue(answer.stderr.contains("TLSv1.3"), "TLS 1.3 is on: \(answer.stderr)")
        XCTAssertEqual(try curl(penha, path: "/", options: ["--tls-max", "1.2"]).status, 0, "TLS 1.2 is accepted")
        XCTAssertNotEqual(try curl(penha, path: "/", options: ["--tls-max", "1.1"]).status, 0, "TLS 1.1 is not")
        XCTAssertEqual(try tlsStatus(penha), "tls handshakes 2 failed 1")
        let summary = try runPenha(["status", "-C", penha.control])
        XCTAssertTrue(summary.stdout.contains("tls handshakes: 2 completed, 1 failed"), summary.stdout)
        let json = try runPenha(["status", "-C", penha.control, "--json"])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["tlsHandshakes"] as? [String: Int], ["completed": 2, "failed": 1], json.stdout)

        // The key may follow the certificate in the -E file; -L tls1.3 refuses TLS 1.2.
        let both = "\(directory)/both.pem"
        try (String(contentsOfFile: server.certificate, encoding: .utf8) + String(contentsOfFile: server.key, encoding: .utf8)).write(toFile: both, atomically: true, encoding: .utf8)
        let combined = try Penha(["-E", both, "-L", "tls1.3"], servers: ["127.0.0.1:\(backend.port)"])
        XCTAssertEqual(try curl(combined, path: "/").status, 0)
        XCTAssertNotEqual(try curl(combined, path: "/", options: ["--tls-max", "1.2"]).status, 0)
    }

    func testHalfCloseAndTenMebibytesBothWaysOverTLS() throws {
        let a = try Backend("A")
        let server = try selfSigned("server.test")
        let penha = try Penha(["-E", server.certificate, "-K", server.key], servers: ["127.0.0.1:\(a.port)"])
        let client = try TLSClient(port: penha.port)
        XCTAssertEqual(try client.readLine(), "A")
        var generator = SystemRandomNumberGenerator()
        let block = (0..<65536).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var sent = Checksum(), received = Checksum()
        var count = 0
        // Lockstep: the echo of each block is read before the next is sent (the client blocks).
        for index in 0..<160 {
            let chunk = Array(block[(index % 251)...] + block[..<(index % 251)])
            sent.add(chunk)
            try client.send(chunk)
            var echoed = 0
            while echoed < chunk.count {
                let part = try client.receive(upTo: chunk.count - echoed)
                guard !part.isEmpty else { throw TestFailure("EOF after \(count) bytes") }
                received.add(part)
                echoed += part.count
            }
            count += echoed
        }
        XCTAssertEqual(count, 160 * 65536)
        XCTAssertEqual(received.value, sent.value)
        // close_notify ends the client's input; the backend answers only once it sees the FIN.
        client.closeNotify()
        XCTAssertEqual(try client.readLine(), "EOF A")
        XCTAssertEqual(try client.receive(upTo: 1), [], "then penha closes")
    }

    func testAClientCertificateIsRequiredWithR() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let ca = try selfSigned("Test CA")
        let client = try signed("client", by: ca)
        let stranger = try signed("stranger", by: try selfSigned("Other CA"))
        let penha = try Penha(["-E", server.certificate, "-K", server.key, "-G", ca.certificate, "-R"],
                              servers: ["127.0.0.1:\(backend.port)"])
        let accepted = try curl(penha, path: "/in", options: ["--cert", client.certificate, "--key", client.key])
        XCTAssertEqual(accepted.status, 0, accepted.stderr)
        XCTAssertTrue(accepted.stdout.hasPrefix("GET /in "), accepted.stdout)
        let without = try curl(penha, path: "/out")
        XCTAssertNotEqual(without.status, 0, "no client certificate: \(without.stdout)")
        XCTAssertFalse(without.stdout.contains("GET /out"))
        let foreign = try curl(penha, path: "/out", options: ["--cert", stranger.certificate, "--key", stranger.key])
        XCTAssertNotEqual(foreign.status, 0, "a certificate from another CA: \(foreign.stdout)")
        XCTAssertEqual(backend.requests, 1, "refused clients never reach the server")
        XCTAssertEqual(try tlsStatus(penha), "tls handshakes 1 failed 2")
        XCTAssertTrue(penha.stderr.contains("TLS handshake failed"), penha.stderr)
    }

    func testSNIChoosesTheCertificateByName() throws {
        let backend = try EchoHTTPBackend()
        let fallback = try selfSigned("default.test")
        let names = "\(directory)/sni"
        try FileManager.default.createDirectory(atPath: names, withIntermediateDirectories: true)
        for name in ["alpha.test", "beta.test"] {
            _ = try selfSigned(name, certificate: "\(names)/\(name).crt", key: "\(names)/\(name).key")
        }
        let penha = try Penha(["-E", fallback.certificate, "-K", fallback.key, "-O", "ssl_sni_path \(names)"],
                              servers: ["127.0.0.1:\(backend.port)"])
        XCTAssertEqual(try servedSubject(penha, name: "alpha.test"), "CN = alpha.test")
        XCTAssertEqual(try servedSubject(penha, name: "beta.test"), "CN = beta.test")
        XCTAssertEqual(try servedSubject(penha, name: "gamma.test"), "CN = default.test", "an unknown name")
        XCTAssertEqual(try servedSubject(penha, name: nil), "CN = default.test", "no name")
        let viaName = try curl(penha, path: "/sni", host: "beta.test")
        XCTAssertEqual(viaName.status, 0, viaName.stderr)
        XCTAssertTrue(viaName.stderr.contains("subject: CN=beta.test"), viaName.stderr)
        XCTAssertEqual(try servedSubject(penha, name: "ALPHA.test"), "CN = alpha.test", "names match without case")

        _ = try selfSigned("Alpha.test", certificate: "\(names)/Alpha.test.crt", key: "\(names)/Alpha.test.key")
        try penha.signal(SIGHUP, thenLogs: "two certificates for the name alpha.test (file names differ only in case)")
        XCTAssertEqual(try servedSubject(penha, name: "alpha.test"), "CN = alpha.test", "the running names stay")
    }

    func testSSLCommandsOnTheControlSocketApplyToNewConnectionsOrAreUndone() throws {
        let backend = try EchoHTTPBackend()
        let fallback = try selfSigned("default.test")
        let names = "\(directory)/sni"
        try FileManager.default.createDirectory(atPath: names, withIntermediateDirectories: true)
        _ = try selfSigned("alpha.test", certificate: "\(names)/alpha.test.crt", key: "\(names)/alpha.test.key")
        let penha = try Penha(["-E", fallback.certificate, "-K", fallback.key], servers: ["127.0.0.1:\(backend.port)"])
        XCTAssertEqual(try servedSubject(penha, name: "alpha.test"), "CN = default.test")
        XCTAssertEqual(try penha.command("ssl_sni_path \(names)"), [])
        XCTAssertEqual(try servedSubject(penha, name: "alpha.test"), "CN = alpha.test")
        XCTAssertEqual(try penha.command("ssl_option no_tlsv1.2"), [])
        XCTAssertNotEqual(try curl(penha, path: "/", options: ["--tls-max", "1.2"]).status, 0, "TLS 1.3 only now")
        let refused = try penha.command("ssl_ciphers NO-SUCH-CIPHER")
        XCTAssertEqual(refused.count, 1)
        XCTAssertTrue(refused.first?.hasPrefix("error: TLS not reloaded, keeping the previous certificates: ssl_ciphers NO-SUCH-CIPHER") == true,
                      "\(refused)")
        let saved = "\(directory)/saved.conf"
        XCTAssertEqual(try penha.command("write \(saved)"), ["wrote \(saved)"])
        let lines = try String(contentsOfFile: saved, encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("ssl_") }
        XCTAssertEqual(lines, ["ssl_option no_tlsv1.2", "ssl_sni_path \(names)"], "the refused cipher list is not kept")
    }

    /// A batch is all or nothing, TLS included: the lines before a cipher list that does not
    /// load do not apply either.
    func testABatchWhoseLastLineDoesNotLoadChangesNothing() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let penha = try Penha(["-E", server.certificate, "-K", server.key], servers: ["127.0.0.1:\(backend.port)"])
        let batch = "\(directory)/batch.conf"
        try "blacklist 9\nssl_option no_tlsv1.2\nssl_ciphers NO-SUCH-CIPHER\n".write(toFile: batch, atomically: true, encoding: .utf8)
        let refused = try penha.command("include \(batch)")
        XCTAssertTrue(refused.first?.hasPrefix("error: TLS not reloaded, keeping the previous certificates: ") == true, "\(refused)")
        XCTAssertEqual(try penha.command("blacklist"), ["30"], "the line before it did not apply")
        XCTAssertEqual(try curl(penha, path: "/", options: ["--tls-max", "1.2"]).status, 0, "TLS 1.2 still served")
    }

    func testXForwardedForArrivesBehindTLS() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let penha = try Penha(["-H", "-E", server.certificate, "-K", server.key], servers: ["127.0.0.1:\(backend.port)"])
        let answer = try curl(penha, path: "/xff", options: ["--interface", "127.0.0.2"])
        XCTAssertEqual(answer.status, 0, answer.stderr)
        XCTAssertTrue(answer.stdout.contains("\r\nX-Forwarded-For: 127.0.0.2\r\n"), answer.stdout)
    }

    func testAGarbageHandshakeIsCountedAndPenhaKeepsServing() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let penha = try Penha(["-E", server.certificate, "-K", server.key], servers: ["127.0.0.1:\(backend.port)"])
        let hostile = try Client(port: penha.port)
        try hostile.send("GET / HTTP/1.1\r\nHost: plain-text-is-not-tls\r\n\r\n" + String(repeating: "\u{1}", count: 5000))
        _ = try? hostile.readToEnd()  // an alert at most, then the close (a reset: it was not all read)
        // A handshake record whose ClientHello is nonsense.
        let malformed = try Client(port: penha.port)
        try malformed.send([0x16, 0x03, 0x01, 0x00, 0x40] + [UInt8](repeating: 0xFF, count: 0x40))
        _ = try malformed.readToEnd()
        XCTAssertEqual(try curl(penha, path: "/after").status, 0)
        XCTAssertEqual(try tlsStatus(penha), "tls handshakes 1 failed 2")
        XCTAssertEqual(backend.requests, 1)
        // A client can fail handshakes at will: the log takes at most one a second, and the
        // next line says how many were held back.
        XCTAssertEqual(penha.stderr.components(separatedBy: "TLS handshake failed").count - 1, 1, penha.stderr)
        usleep(1_100_000)
        let third = try Client(port: penha.port)
        try third.send([0x16, 0x03, 0x01, 0x00, 0x40] + [UInt8](repeating: 0xFF, count: 0x40))
        _ = try third.readToEnd()
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("TLS handshake failed (and 1 more since the last one logged)") },
                      penha.stderr)
        XCTAssertEqual(try tlsStatus(penha), "tls handshakes 1 failed 3")
    }

    func testClientsThatNeverFinishTheirHandshakeStallNoOne() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let penha = try Penha(["-E", server.certificate, "-K", server.key], servers: ["127.0.0.1:\(backend.port)"])
        // Each sends the first bytes of a ClientHello record and then nothing.
        let slow = try (0..<20).map { _ in try Client(port: penha.port) }
        for client in slow { try client.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]) }
        let started = Date()
        let answer = try curl(penha, path: "/meanwhile", options: ["--max-time", "5"])
        XCTAssertEqual(answer.status, 0, answer.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        XCTAssertEqual(try tlsStatus(penha), "tls handshakes 1 failed 0", "the slow ones are still waiting")
        XCTAssertEqual(backend.connections, 1, "a client is connected to a server only after its handshake")
    }

    /// A burst of handshakes does not hold up the relayed connections of the thread: a loop
    /// turn takes a bounded number of handshake steps, each of which may sign (milliseconds
    /// with an RSA-4096 key). Every ClientHello of a burst was handled in the turn its event
    /// came in, so a relayed client's bytes behind 600 of them waited until all were done
    /// (2.3 s here), and a turn that long stops the watchdog's pings.
    func testAHandshakeBurstDoesNotHoldUpRelayedConnections() throws {
        let backend = try Backend("A")
        let server = try TestCertificate.selfSigned("rsa.test", in: directory, rsaBits: 4096)
        let penha = try Penha(["-x", "2000", "-O", "threads 1", "-E", server.certificate, "-K", server.key],
                              servers: ["127.0.0.1:\(backend.port)"])
        let relayed = try TLSClient(port: penha.port)
        XCTAssertEqual(try relayed.readLine(), "A")
        let hello = try clientHello()
        let burst = try (0..<600).map { _ in try Client(port: penha.port, timeout: 60) }
        XCTAssertTrue(waitFor(timeout: 10) { penha.openFileDescriptors > burst.count }, "penha accepted the burst")
        for client in burst { try client.send(hello) }
        let sent = Date()
        try relayed.send(Array("ping\n".utf8))
        XCTAssertEqual(try relayed.readLine(), "ping")
        let echoed = Date().timeIntervalSince(sent)
        // The burst's handshakes are done when its last client has the server's answer.
        var waiting = burst.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        while !waiting.isEmpty && Date().timeIntervalSince(sent) < 60 {
            _ = poll(&waiting, nfds_t(waiting.count), 100)
            waiting.removeAll { $0.revents != 0 }
        }
        let handshakes = Date().timeIntervalSince(sent)
        XCTAssertTrue(waiting.isEmpty, "every client of the burst was answered")
        XCTAssertLessThan(echoed, handshakes / 3, "the relayed echo took \(echoed) s, the burst's handshakes \(handshakes) s")
        print("relayed echo \(Int(echoed * 1000)) ms during a burst of 600 RSA-4096 handshakes that took \(Int(handshakes * 1000)) ms")
    }

    /// A client that starts a handshake and never finishes it holds its connection 30 s, no
    /// longer: then it is closed and counted as a failed handshake.
    func testAHandshakeNotFinishedIn30SecondsIsClosedAndCounted() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let penha = try Penha(["-E", server.certificate, "-K", server.key], servers: ["127.0.0.1:\(backend.port)"])
        let slow = try Client(port: penha.port, timeout: 40)
        try slow.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        let started = Date()
        XCTAssertEqual(try slow.readToEnd(), [], "closed without an answer")
        let held = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(held, 28, "held for the handshake timeout")
        XCTAssertLessThan(held, 35, "closed once the handshake timeout passed")
        XCTAssertEqual(try tlsStatus(penha), "tls handshakes 0 failed 1")
        XCTAssertTrue(penha.stderr.contains("no handshake within 30 seconds"), penha.stderr)
        XCTAssertEqual(backend.connections, 0)
    }

    func testSIGHUPReloadsTheCertificateAndKeepsTheOldOneWhenTheNewIsBroken() throws {
        let backend = try EchoHTTPBackend()
        let certificate = "\(directory)/server.crt", key = "\(directory)/server.key"
        _ = try selfSigned("first.test", certificate: certificate, key: key)
        let penha = try Penha(["-E", certificate, "-K", key], servers: ["127.0.0.1:\(backend.port)"])
        XCTAssertEqual(try servedSubject(penha, name: nil), "CN = first.test")

        _ = try selfSigned("second.test", certificate: certificate, key: key)
        try penha.signal(SIGHUP, thenLogs: "reloaded")
        XCTAssertEqual(try servedSubject(penha, name: nil), "CN = second.test")

        try "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n".write(toFile: certificate, atomically: true, encoding: .utf8)
        try penha.signal(SIGHUP, thenLogs: "keeping the previous certificates")
        XCTAssertTrue(penha.stderr.contains(certificate), "the log names the file: \(penha.stderr)")
        XCTAssertEqual(try servedSubject(penha, name: nil), "CN = second.test")
        XCTAssertEqual(try curl(penha, path: "/still").status, 0)

        // An encrypted key is refused at once, not asked a passphrase for (that would hang the reload).
        let encrypted = "\(directory)/encrypted.key"
        _ = try selfSigned("third.test", certificate: certificate, key: key)
        try TestCertificate.openssl(["pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", encrypted])
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: encrypted, toPath: key)
        try penha.signal(SIGHUP, thenLogs: "is encrypted: penha needs it without a passphrase")
        XCTAssertEqual(try penha.command("servers").count, 1, "the control socket still answers")
        XCTAssertEqual(try servedSubject(penha, name: nil), "CN = second.test")
        let refused = try runPenha(["-f", "-E", certificate, "-K", encrypted, "127.0.0.1:\(freePort())", "127.0.0.1:\(backend.port)"])
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.contains("the private key \(encrypted) is encrypted"), refused.stderr)
    }

    func testSIGHUPWithAnUnusableSSLCommandInTheFileKeepsTheRunningSettings() throws {
        let backend = try EchoHTTPBackend()
        let server = try selfSigned("server.test")
        let config = "\(directory)/penha.conf"
        try "ssl_option no_tlsv1.2\n".write(toFile: config, atomically: true, encoding: .utf8)
        let penha = try Penha(["-E", server.certificate, "-K", server.key, "-F", config], servers: ["127.0.0.1:\(backend.port)"])
        XCTAssertNotEqual(try curl(penha, path: "/", options: ["--tls-max", "1.2"]).status, 0, "TLS 1.3 only")
        try "ssl_option no_tlsv1.2\nblacklist 9\nssl_ciphers NO-SUCH-CIPHER\n".write(toFile: config, atomically: true, encoding: .utf8)
        try penha.signal(SIGHUP, thenLogs: "keeping the previous certificates")
        XCTAssertTrue(penha.stderr.contains("reload failed, configuration unchanged") && penha.stderr.contains("NO-SUCH-CIPHER"), penha.stderr)
        XCTAssertEqual(try penha.command("blacklist"), ["30"], "nothing of the refused file applied")
        XCTAssertEqual(try curl(penha, path: "/still").status, 0)
        XCTAssertNotEqual(try curl(penha, path: "/", options: ["--tls-max", "1.2"]).status, 0, "still TLS 1.3 only")
        let saved = "\(directory)/saved.conf"
        XCTAssertEqual(try penha.command("write \(saved)"), ["wrote \(saved)"])
        XCTAssertFalse(try String(contentsOfFile: saved, encoding: .utf8).contains("NO-SUCH-CIPHER"))
    }

    func testObsoleteOrIncompleteTLSOptionsAreRefusedByName() throws {
        let server = try selfSigned("server.test")
        let cases: [([String], String)] = [
            (["-E", server.certificate, "-Z"], "-Z"),
            (["-U", "-E", server.certificate, "-K", server.key], "-U and -E cannot be combined"),
            (["-E", server.certificate, "-L", "ssl3"], "obsolete"),
            (["-E", server.certificate, "-L", "tls1.1"], "obsolete"),
            (["-E", server.certificate, "-R"], "-R needs -G or -A"),
            (["-K", server.key], "-K needs -E"),
            (["-E", "\(directory)/missing.pem"], "\(directory)/missing.pem"),
            (["-E", server.certificate], server.certificate),  // the key is in neither file
            (["-E", server.certificate, "-K", server.key, "-O", "ssl_option no_sslv9"], "no_sslv9"),
            (["-E", server.certificate, "-K", server.key, "-O", "ssl_ocsp_response x"], "OCSP"),
        ]
        for (arguments, named) in cases {
            let (status, stderr, _) = try runPenha(["-f", "-C", "\(directory)/control.sock"] + arguments + ["127.0.0.1:1", "127.0.0.1:2"])
            XCTAssertEqual(status, 2, "\(arguments): \(stderr)")
            XCTAssertEqual(stderr.split(separator: "\n").count, 1, "\(arguments) printed: \(stderr)")
            XCTAssertTrue(stderr.contains(named), "\(arguments): '\(stderr)' does not name '\(named)'")
        }
    }

    // MARK: - Tools

    private func selfSigned(_ name: String, certificate: String? = nil, key: String? = nil) throws -> TestCertificate {
        try TestCertificate.selfSigned(name, in: directory, certificate: certificate, key: key)
    }

    private func signed(_ name: String, by ca: TestCertificate) throws -> TestCertificate {
        try TestCertificate.signed(name, by: ca, in: directory)
    }

    /// `curl -k` to penha, optionally by host name (sent as SNI, resolved to loopback).
    private func curl(_ penha: Penha, path: String, host: String? = nil, options: [String] = [])
        throws -> (status: Int32, stdout: String, stderr: String) {
        let name = host ?? "127.0.0.1"
        let resolve = host.map { ["--resolve", "\($0):\(penha.port):127.0.0.1"] } ?? []
        return try runTool("curl", ["-skv", "--max-time", "10"] + resolve + options + ["https://\(name):\(penha.port)\(path)"])
    }

    /// The subject of the certificate penha serves for `name` (SNI), as `openssl s_client` prints it.
    private func servedSubject(_ penha: Penha, name: String?) throws -> String? {
        let sni = name.map { ["-servername", $0] } ?? ["-noservername"]
        let result = try runTool("openssl", ["s_client", "-connect", "127.0.0.1:\(penha.port)"] + sni, input: "")
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("subject=") }
        return line.map { String($0.dropFirst("subject=".count)) }
    }

    /// The `status` line about TLS.
    private func tlsStatus(_ penha: Penha) throws -> String? {
        try penha.command("status").first { $0.hasPrefix("tls ") }
    }
}

/// An HTTP server on loopback whose answer's body is the request head it received, so a
/// client sees what reached the server (X-Forwarded-For included).
private final class EchoHTTPBackend {
    let port: Int
    private let channel: Channel
    private let counters = Counters()

    final class Counters: Sendable {
        private let counts = Mutex((connections: 0, requests: 0))
        var connections: Int { counts.withLock { $0.connections } }
        var requests: Int { counts.withLock { $0.requests } }
        func connected() { counts.withLock { $0.connections += 1 } }
        func requested() { counts.withLock { $0.requests += 1 } }
    }

    init() throws {
        let counters = self.counters
        channel = try ServerBootstrap(group: Backend.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                counters.connected()
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTPEchoHandler(counters: counters))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress!.port!
    }

    var connections: Int { counters.connections }
    var requests: Int { counters.requests }

    deinit { try? channel.close().wait() }
}

private final class HTTPEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var head = ""
    private let counters: EchoHTTPBackend.Counters

    init(counters: EchoHTTPBackend.Counters) { self.counters = counters }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        head += buffer.readString(length: buffer.readableBytes) ?? ""
        guard let end = head.range(of: "\r\n\r\n") else { return }
        counters.requested()
        let body = String(head[..<end.upperBound])
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
