import Foundation
import XCTest
@testable import BalancerCore
import VRRPCore

/// The man page's command language and VRRP sections come from README (deploy/manual.sh
/// --readme-part): every keyword of the command table and every word of `vrrp` is in them.
final class ManualTests: XCTestCase {
    private func manualFromReadme() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = root.appendingPathComponent("deploy/manual.sh")
        process.arguments = ["--readme-part"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return text
    }

    /// The text of a man section (`.Sh TITLE`) up to the next one.
    private func section(_ title: String, of manual: String) throws -> String {
        let start = try XCTUnwrap(manual.range(of: ".Sh \"\(title)\"\n"), "no section \(title)")
        let rest = manual[start.upperBound...]
        return String(rest[..<(rest.range(of: "\n.Sh ")?.lowerBound ?? rest.endIndex)])
    }

    /// The words set in bold (`\fB...\fR`): commands and their arguments.
    private func boldSpans(_ text: String) -> [String] {
        text.components(separatedBy: "\\fB").dropFirst().map { $0.components(separatedBy: "\\fR")[0].replacingOccurrences(of: "\\-", with: "-") }
    }

    func testEveryCommandOfTheTableIsInTheCommandsSection() throws {
        let spans = boldSpans(try section("COMMANDS", of: try manualFromReadme()))
        for keyword in CommandKeyword.table {
            if let usage = keyword.usage {
                XCTAssertTrue(spans.contains(usage), "the man page lacks \(usage)")
            } else {
                XCTAssertTrue(spans.contains(keyword.name), "the man page does not name the refused \(keyword.name)")
            }
        }
    }

    func testEveryWordOfVRRPIsInTheVRRPSection() throws {
        let spans = boldSpans(try section("VRRP", of: try manualFromReadme()))
        let full = try VRRPInstanceConfiguration.parse(("interface eth0 vrid 5 priority 100 vip 192.0.2.1/24 advert 1s version 2 "
            + "preempt on preempt_delay 3 peer 192.0.2.2 auth pw track_servers 1 weight 5 notify /bin/true").split(separator: " ").map(String.init))
        let words = full.words.enumerated().filter { $0.offset.isMultiple(of: 2) }.map(\.element)
        XCTAssertTrue(words.contains("notify") && words.contains("weight"), "\(words)")
        for word in words {
            XCTAssertTrue(spans.contains { $0.split(whereSeparator: { " []|".contains($0) }).contains(Substring(word)) },
                          "the VRRP section lacks \(word)")
        }
    }

    func testTheSystemdSectionSaysHowToReloadAndRestart() throws {
        let systemd = try section("SYSTEMD", of: try manualFromReadme())
        for text in ["penha ctl /run/penha/penha.sock reload", "penha check -F /etc/penha/penha.conf && systemctl restart penha",
                     "LoadCredential=", "log /var/log/penha/penha.log", "penha@NAME.service"] {
            XCTAssertTrue(systemd.contains(text.replacingOccurrences(of: "-", with: "\\-")), "the SYSTEMD section lacks \(text)")
        }
    }
}
