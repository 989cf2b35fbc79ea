import Foundation
import XCTest
@testable import BalancerCore
import VRRPCore

/// Hostile review of `status` and `status json`: free text and odd strings, as written.
final class StatusReportReviewTests: XCTestCase {
    private func report(listen: String, text: String) -> StatusReport {
        let instance = StatusReport.VRRPInstance(
            vrid: 7, state: .master, interface: "eth0", version: 3, priority: 150, effectivePriority: 150,
            advertMilliseconds: 100, master: "192.0.2.1", lastChange: 1, lastChangeSecondsAgo: 2, lastChangeReason: text,
            sent: 1, received: 2, malformed: 0,
            dropped: Dictionary(uniqueKeysWithValues: VRRPDropReason.allCases.map { ($0, 0) }), virtualAddresses: [])
        return StatusReport(
            role: "MASTER", listen: listen, uptimeSeconds: 1, connections: 0, totalConnections: UInt64.max, refusedClients: 0,
            tlsHandshakes: nil,
            servers: [.init(index: 0, address: "192.0.2.10", port: 80, state: .up, blacklistSecondsLeft: 0, connections: 0,
                            totalConnections: 0, maxConnections: 0, sent: UInt64.max, received: 0, check: .down,
                            checkResult: text, checkSuccesses: 0, checkFailures: 1, checkChangedSecondsAgo: nil)],
            vrrp: [instance], sync: nil, draining: nil,
            bgp: .init(table: 100, announced: false, reason: .serversDown, availableServers: 0, minimumServers: 1,
                       routes: ["192.0.2.100/32 table 100"], error: text))
    }

    /// A Unix socket path with a space is the listen address whole (`penha status` said
    /// "listening on /run/my"), and free text keeps its spaces.
    func testTheLinesReadBackAListenPathWithASpaceAndFreeTextAsWritten() throws {
        let original = report(listen: "/run/penha/my balancer.sock", text: "  two  spaces,\ta tab ")
        let read = try StatusReport(lines: original.lines)
        XCTAssertEqual(read.listen, original.listen)
        XCTAssertEqual(read.servers.first?.checkResult, original.servers.first?.checkResult)
        XCTAssertEqual(read.vrrp.first?.lastChangeReason, original.vrrp.first?.lastChangeReason)
        XCTAssertEqual(read.bgp?.error, original.bgp?.error)
        XCTAssertEqual(read, original)
    }

    /// `status json` reads back through JSONDecoder and python3's json (strict: a raw control
    /// character is refused) with every string as it was, the largest counters exact.
    func testJSONCarriesEveryCharacterAndTheLargestCounters() throws {
        let text = "q\"b\\s/ \u{0}\u{1}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f}\u{7f} \u{2028}\u{2029}\u{85} é🇵🇹 e\u{301}"
        let original = report(listen: "/run/\(text)", text: text)
        let json = try JSONText.encode(original)
        XCTAssertFalse(json.unicodeScalars.contains { $0.value < 0x20 }, "no raw control character")
        XCTAssertEqual(try JSONDecoder().decode(StatusReport.self, from: Data(json.utf8)), original)
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        python.arguments = ["-c", "import json, sys; r = json.loads(sys.stdin.read()); "
                                  + "print(json.dumps([r['listen'], r['servers'][0]['checkResult'], r['totalConnections']]))"]
        let input = Pipe(), output = Pipe()
        python.standardInput = input
        python.standardOutput = output
        try python.run()
        input.fileHandleForWriting.write(Data(json.utf8))
        try input.fileHandleForWriting.close()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        python.waitUntilExit()
        XCTAssertEqual(python.terminationStatus, 0)
        let decoded = try XCTUnwrap(JSONSerialization.jsonObject(with: printed) as? [Any])
        XCTAssertEqual(decoded.first as? String, "/run/\(text)")
        XCTAssertEqual(decoded.dropFirst().first as? String, text)
        XCTAssertEqual((decoded.last as? NSNumber)?.uint64Value, UInt64.max)
    }
}
