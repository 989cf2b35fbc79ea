import Glibc
import VRRPCore
import TestSupport
import XCTest

/// IPAddress reads and writes addresses in Swift, as glibc's inet_pton and inet_ntop do: the
/// same verdict and the same text for every input tried, glibc being the reference here.
final class IPAddressTextTests: XCTestCase {
    private func glibcBytes(_ text: String) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 16)
        if text.contains(":") {
            return inet_pton(AF_INET6, text, &buffer) == 1 ? buffer : nil
        }
        return inet_pton(AF_INET, text, &buffer) == 1 ? Array(buffer.prefix(4)) : nil
    }

    private func glibcText(_ bytes: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = bytes.withUnsafeBytes { inet_ntop(bytes.count == 4 ? AF_INET : AF_INET6, $0.baseAddress, &text, socklen_t(text.count)) }
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// The same address as glibc reads it (IPv4-mapped IPv6 counts as IPv4, as IPAddress keeps it).
    private func expected(_ text: String) -> IPAddress? {
        glibcBytes(text).flatMap { IPAddress(bytes: $0) }
    }

    func testTheTextsOfTheRFCsAndTheirEdgesReadAsGlibcReadsThem() {
        let texts = ["0.0.0.0", "255.255.255.255", "192.0.2.7", "256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.", "1..2.3", " 1.2.3.4",
                     "::", "::1", "1::", "2001:db8::7", "2001:DB8::A", "::ffff:192.0.2.7", "::192.0.2.7", "1:2:3:4:5:6:7:8",
                     "1:2:3:4:5:6:7::8", "1:2:3:4:5:6:7:8:9", ":1::2", "1:::2", ":::", "1::2::3", "12345::", "::1.2.3", "1.2.3.4::",
                     "1:2:3:4:5:6:1.2.3.4", "1::2:3.4.5.6", "::01.2.3.4", "fe80::1%eth0", "[::1]", "1:2:3:4:5:6:7:8:", "g::1",
                     "", ":", "1:", "::ffff:1.2.3.4:5", "0:0:0:0:0:0:0:0", "::0:0", "1:0:0:2:0:0:0:3", "1:0:0:2::3:4:5"]
        for text in texts {
            XCTAssertEqual(IPAddress(text), expected(text), text.debugDescription)
        }
    }

    func testRandomTextsReadAsGlibcReadsThem() {
        var random = SplitMix64(seed: 7)
        let alphabet = Array("0123456789abcdefABCDEF::::....x ")
        for _ in 0..<50_000 {
            let length = Int.random(in: 0...24, using: &random)
            let text = String((0..<length).map { _ in alphabet.randomElement(using: &random)! })
            XCTAssertEqual(IPAddress(text), expected(text), text.debugDescription)
        }
    }

    func testEveryAddressIsWrittenAsGlibcWritesItAndReadsBack() {
        var random = SplitMix64(seed: 11)
        for round in 0..<50_000 {
            // Mostly zero groups, so that runs of zeros and their ties are common.
            var bytes = (0..<16).map { _ in Int.random(in: 0..<4, using: &random) == 0 ? UInt8.random(in: 0...255, using: &random) : 0 }
            if round % 5 == 0 { bytes = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + bytes.suffix(4) }
            let address = IPAddress(bytes: bytes)!
            XCTAssertEqual(address.description, glibcText(address.bytes), "\(bytes)")
            XCTAssertEqual(IPAddress(address.description), address, address.description)
        }
    }
}
