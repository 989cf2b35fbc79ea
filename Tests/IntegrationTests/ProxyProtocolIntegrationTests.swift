import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The PROXY protocol against a real peer: nginx's `listen ... proxy_protocol`, which answers
/// with the client address it read from penha's header.
final class ProxyProtocolIntegrationTests: XCTestCase {
    private var nginx: Nginx?

    override func setUpWithError() throws {
        nginx = try Nginx()
    }

    override func tearDown() {
        nginx?.stop()
    }

    /// Both versions tell nginx the client's own address and port.
    func testNginxReadsTheClientsAddressFromEitherVersion() throws {
        let nginx = try XCTUnwrap(nginx)
        let penha = try Penha([], servers: ["127.0.0.1:\(nginx.port)"])
        for version in ["v1", "v2"] {
            XCTAssertEqual(try penha.command("server 0 proxy_protocol \(version)"), [])
            let client = try Client(port: penha.port, source: "127.0.0.3")
            try client.send("GET / HTTP/1.0\r\n\r\n")
            let body = try XCTUnwrap(String(decoding: try client.readToEnd(), as: UTF8.self).components(separatedBy: "\r\n\r\n").last)
            XCTAssertEqual(body, "proxy 127.0.0.3 \(localPort(client.fd)) remote 127.0.0.1\n", version)
        }
        XCTAssertEqual(try penha.command("server 0 proxy_protocol off"), [])
        let plain = try Client(port: penha.port)
        try plain.send("GET / HTTP/1.0\r\n\r\n")
        let answer = String(decoding: (try? plain.readToEnd()) ?? [], as: UTF8.self)
        XCTAssertFalse(answer.contains("proxy "), "without the header nginx does not serve the request: \(answer)")
    }

    /// With `accept_proxy` the address in the client's header is the client: it goes on to
    /// nginx in penha's own header, and `client_acl` judges it.
    func testAnAcceptedHeadersClientIsPassedOnAndJudged() throws {
        let nginx = try XCTUnwrap(nginx)
        let penha = try Penha(["-O", "accept_proxy", "-O", "server 0 proxy_protocol v2"], servers: ["127.0.0.1:\(nginx.port)"])
        let v1 = try Client(port: penha.port)
        try v1.send("PROXY TCP4 203.0.113.7 198.51.100.1 5555 443\r\nGET / HTTP/1.0\r\n\r\n")
        XCTAssertTrue(String(decoding: try v1.readToEnd(), as: UTF8.self).hasSuffix("proxy 203.0.113.7 5555 remote 127.0.0.1\n"))

        // A version 2 header for 2001:db8::7, sent in two pieces.
        let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
        let v6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11)
        let header = signature + [0x21, 0x21, 0x00, 36] + v6 + [7] + v6 + [1] + [0x1F, 0x90, 0x01, 0xBB]
        let v2 = try Client(port: penha.port)
        try v2.send(Array(header.prefix(20)))
        usleep(50_000)
        try v2.send(Array(header.dropFirst(20)) + Array("GET / HTTP/1.0\r\n\r\n".utf8))
        XCTAssertTrue(String(decoding: try v2.readToEnd(), as: UTF8.self).hasSuffix("proxy 2001:db8::7 8080 remote 127.0.0.1\n"))

        XCTAssertEqual(try penha.command("acl 1 deny 203.0.113.7"), [])
        XCTAssertEqual(try penha.command("client_acl 1"), ["1"])
        let refused = try Client(port: penha.port)
        try refused.send("PROXY TCP4 203.0.113.7 198.51.100.1 5555 443\r\nGET / HTTP/1.0\r\n\r\n")
        XCTAssertTrue(endsUnanswered(refused), "client_acl refuses the header's client")
        let status = try penha.command("status")
        XCTAssertTrue(status.contains { $0.hasPrefix("connections ") && $0.hasSuffix(" refused 1") }, "\(status)")
    }

    /// Without a valid header the client is closed before any server hears of it.
    func testAClientWithoutAValidHeaderIsClosed() throws {
        let nginx = try XCTUnwrap(nginx)
        let penha = try Penha(["-O", "accept_proxy"], servers: ["127.0.0.1:\(nginx.port)"])
        for opening in ["GET / HTTP/1.0\r\n\r\n", "PROXY TCP4 203.0.113.7 198.51.100.1 5555\r\n", "PROXY TCP4 203.0.113.7\n"] {
            let client = try Client(port: penha.port)
            try client.send(opening)
            XCTAssertTrue(endsUnanswered(client), opening.debugDescription)
        }
        XCTAssertTrue(waitFor(timeout: 5) { penha.stderr.contains("PROXY protocol header refused") }, penha.stderr)
        XCTAssertEqual(penha.stderr.components(separatedBy: "PROXY protocol header refused").count - 1, 1, "one line a second at most: \(penha.stderr)")
        let status = try penha.command("status")
        XCTAssertTrue(status.contains { $0.hasPrefix("connections 0 total 0 ") }, "no server was connected to: \(status)")
    }

    private func localPort(_ fd: Int32) -> Int {
        freePortOf(fd)
    }

    /// Closed without a byte: with a FIN, or a reset when what the client sent was left unread.
    private func endsUnanswered(_ client: Client) -> Bool {
        do {
            return try client.readToEnd().isEmpty
        } catch {
            return "\(error)".hasSuffix("errno \(ECONNRESET)")
        }
    }
}

/// nginx in the foreground on a loopback port, its files in a directory of its own: every
/// request is answered with the PROXY protocol address and port it read, and the peer's.
final class Nginx {
    let port = freePort()
    private let directory = temporaryPath("nginx")
    private let process = Process()

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") else {
            if ProcessInfo.processInfo.environment["PENHA_REQUIRE_NETNS"] == "1" {
                throw TestFailure("PENHA_REQUIRE_NETNS=1 (CI) but nginx is not installed (.ci/run installs nginx-light)")
            }
            throw XCTSkip("needs nginx (apt-get install nginx-light; CI installs it)")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = """
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(directory)/nginx.pid;
            error_log \(directory)/error.log;
            events { worker_connections 64; }
            http {
                access_log off;
                client_body_temp_path \(directory)/body;
                server {
                    listen 127.0.0.1:\(port) proxy_protocol;
                    location / { return 200 "proxy $proxy_protocol_addr $proxy_protocol_port remote $remote_addr\\n"; }
                }
            }
            """
        try configuration.write(toFile: "\(directory)/nginx.conf", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        process.arguments = ["-p", directory, "-c", "\(directory)/nginx.conf", "-e", "\(directory)/error.log"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let listening = waitFor(timeout: 10) { (try? Client(port: self.port)) != nil }
        guard listening else {
            stop()
            let log = (try? String(contentsOfFile: "\(directory)/error.log", encoding: .utf8)) ?? ""
            throw TestFailure("nginx did not listen on \(port): \(log)")
        }
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }
}
