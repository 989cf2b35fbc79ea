import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `metrics ADDRESS:PORT`: a scrape of the real binary, parsed by Prometheus' own Python
/// parser (prometheus_client), so the format is judged by a consumer, not by us.
final class MetricsIntegrationTests: XCTestCase {
    func testAScrapeParsesAndCountsWhatPenhaDid() throws {
        let a = try Backend("A")
        let b = try Backend("B")
        defer { a.stop(); b.stop() }
        let metricsPort = freePort()
        let penha = try Penha(["-r", "-O", "metrics 127.0.0.1:\(metricsPort)"],
                              servers: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"])
        defer { penha.stop() }
        XCTAssertEqual(try penha.command("server 1 blacklist 60"), [])
        for _ in 0..<3 { XCTAssertEqual(try whoAnswers(penha), "A") }
        let open = try Client(port: penha.port)
        XCTAssertEqual(try open.readLine(), "A")

        let (status, body) = try httpGet(port: metricsPort, path: "/metrics")
        XCTAssertTrue(status.hasPrefix("HTTP/1.1 200"), status)
        let samples = try PrometheusParser.parse(body)
        let server0 = ["server": "0", "address": "127.0.0.1:\(a.port)"]
        let server1 = ["server": "1", "address": "127.0.0.1:\(b.port)"]
        XCTAssertEqual(samples.value("penha_connections_total"), 4)
        XCTAssertEqual(samples.value("penha_connections_active"), 1)
        XCTAssertEqual(samples.value("penha_clients_refused_total"), 0)
        XCTAssertEqual(samples.value("penha_server_connections_total", server0), 4)
        XCTAssertEqual(samples.value("penha_server_connections_active", server0), 1)
        XCTAssertEqual(samples.value("penha_server_up", server0), 1)
        XCTAssertEqual(samples.value("penha_server_up", server1), 0, "blacklisted")
        // whoAnswers reads the greeting "A\n" and the echo's end: bytes from the server.
        XCTAssertGreaterThan(samples.value("penha_server_received_bytes_total", server0) ?? 0, 0)
        XCTAssertEqual(samples.value("penha_server_sent_bytes_total", server1), 0)
        XCTAssertEqual(samples.types["penha_connections"], "counter")
        XCTAssertEqual(samples.types["penha_connections_active"], "gauge")
        XCTAssertEqual(samples.types["penha_server_sent_bytes"], "counter")
        XCTAssertNil(samples.types["penha_vrrp_master"], "no vrrp configured")
    }

    func testOtherPathsAre404AndTheMetricsLineRoundTripsThroughWrite() throws {
        let a = try Backend("A")
        defer { a.stop() }
        let metricsPort = freePort()
        let penha = try Penha(["-O", "metrics \(metricsPort)"], servers: ["127.0.0.1:\(a.port)"])
        defer { penha.stop() }
        XCTAssertTrue(try httpGet(port: metricsPort, path: "/").status.hasPrefix("HTTP/1.1 404"))
        let written = temporaryPath("metrics.conf")
        defer { unlink(written) }
        XCTAssertEqual(try penha.command("write \(written)"), ["wrote \(written)"])
        let text = try String(contentsOfFile: written, encoding: .utf8)
        XCTAssertTrue(text.split(separator: "\n").contains("metrics 127.0.0.1:\(metricsPort)"), text)
        XCTAssertEqual(try penha.command("metrics 127.0.0.1:1"), ["error: the metrics address is set at start; restart penha to change it"])
    }

    func testOffLoopbackNeedsAnAccessList() throws {
        let refused = try runPenha(["check", "-C", temporaryPath("m.sock"), "-O", "metrics 0.0.0.0:9100", "127.0.0.1:1", "127.0.0.1:9"])
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.contains("the metrics port 0.0.0.0:9100 is off loopback"), refused.stderr)
        let allowed = try runPenha(["check", "-C", temporaryPath("m.sock"), "-O", "acl 2 permit 192.0.2.7",
                                    "-O", "metrics 0.0.0.0:9100 acl 2", "127.0.0.1:1", "127.0.0.1:9"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
    }

    func testAScraperTheListRefusesGets403() throws {
        let a = try Backend("A")
        defer { a.stop() }
        let metricsPort = freePort()
        let penha = try Penha(["-O", "acl 3 deny 127.0.0.1", "-O", "metrics 127.0.0.1:\(metricsPort) acl 3"],
                              servers: ["127.0.0.1:\(a.port)"])
        defer { penha.stop() }
        XCTAssertTrue(try httpGet(port: metricsPort, path: "/metrics").status.hasPrefix("HTTP/1.1 403"))
    }

    /// HEAD announces the length without the body, other methods get 405, what is not HTTP 400.
    func testHeadOtherMethodsAndWhatIsNotHTTP() throws {
        let a = try Backend("A")
        defer { a.stop() }
        let metricsPort = freePort()
        let penha = try Penha(["-O", "metrics 127.0.0.1:\(metricsPort)"], servers: ["127.0.0.1:\(a.port)"])
        defer { penha.stop() }
        let head = try httpRequest(port: metricsPort, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(head.status.hasPrefix("HTTP/1.1 200"), head.status)
        XCTAssertEqual(head.body, "")
        let length = try XCTUnwrap(head.head.split(separator: "\r\n").first { $0.hasPrefix("Content-Length: ") })
        XCTAssertGreaterThan(Int(length.dropFirst("Content-Length: ".count)) ?? 0, 100, head.head)
        XCTAssertTrue(try httpRequest(port: metricsPort, "DELETE /metrics HTTP/1.1\r\n\r\n").status.hasPrefix("HTTP/1.1 405"))
        XCTAssertTrue(try httpRequest(port: metricsPort, "hello\r\n\r\n").status.hasPrefix("HTTP/1.1 400"))
    }

    /// One HTTP/1.1 request; the status line and the body.
    private func httpGet(port: Int, path: String) throws -> (status: String, body: String) {
        let response = try httpRequest(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return (response.status, response.body)
    }

    /// `request` sent as it is; the response's status line, head and body.
    private func httpRequest(port: Int, _ request: String) throws -> (status: String, head: String, body: String) {
        let client = try Client(port: port)
        try client.send(request)
        let response = String(decoding: try client.readToEnd(), as: UTF8.self)
        guard let split = response.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP response: \(response)") }
        let head = String(response[..<split.lowerBound])
        return (String(head.prefix { $0 != "\r" }), head, String(response[split.upperBound...]))
    }
}

/// Samples as prometheus_client's text parser reads them.
struct PrometheusParser {
    /// Family name -> type, as the parser names them (a counter's without `_total`).
    var types: [String: String] = [:]
    var samples: [(name: String, labels: [String: String], value: Double)] = []

    static let script = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = {"types": {}, "samples": []}
        for family in text_string_to_metric_families(sys.stdin.read()):
            out["types"][family.name] = family.type
            for s in family.samples:
                out["samples"].append({"name": s.name, "labels": s.labels, "value": s.value})
        print(json.dumps(out))
        """

    static func parse(_ text: String) throws -> PrometheusParser {
        let process = Process()
        // Debian's python3, the one python3-prometheus-client installs for.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        let complaint = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestFailure("prometheus_client did not parse the scrape (apt-get install python3-prometheus-client): \(complaint)\n\(text)")
        }
        struct Output: Decodable {
            struct Sample: Decodable { let name: String; let labels: [String: String]; let value: Double }
            let types: [String: String]
            let samples: [Sample]
        }
        let decoded = try JSONDecoder().decode(Output.self, from: printed)
        return PrometheusParser(types: decoded.types, samples: decoded.samples.map { ($0.name, $0.labels, $0.value) })
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}
