import Foundation
import XCTest
@testable import Balancer
@testable import BalancerCore

/// The sync key: HMAC-SHA-256 through libcrypto, and the key file's bounds.
final class ClientSyncKeyTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = makeTemporaryDirectory("sync-key")
    }

    override func tearDown() {
        removeTemporaryDirectory(directory)
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    func testTheMACIsHMACSHA256() {
        // RFC 4231 section 4.2, test case 1.
        let key = ClientSyncKey(bytes: [UInt8](repeating: 0x0b, count: 20))
        XCTAssertEqual(hex(key.mac(Array("Hi There".utf8))), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    func testTheKeyFileIsBoundedAndItsNewlineIsNotPartOfTheKey() throws {
        let path = directory + "/key"
        try "0123456789abcdef\n".write(toFile: path, atomically: true, encoding: .utf8)
        let key = try ClientSyncKey.read(path)
        XCTAssertEqual(key.mac([1]), ClientSyncKey(bytes: Array("0123456789abcdef".utf8)).mac([1]))
        for (contents, reason) in [("", "has 0 bytes"), ("short\n", "has 5 bytes"),
                                   (String(repeating: "k", count: ClientSyncKey.maxBytes + 1), "larger than 4096 bytes")] {
            try contents.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try ClientSyncKey.read(path)) { XCTAssertTrue("\($0)".contains(reason), "\($0)") }
        }
        XCTAssertEqual(mkfifo(directory + "/fifo", 0o600), 0)
        XCTAssertThrowsError(try ClientSyncKey.read(directory + "/fifo"), "a FIFO is refused, never waited on")
        XCTAssertThrowsError(try ClientSyncKey.read(directory + "/missing"))
    }
}
