import XCTest
@testable import VRRP
@testable import VRRPCore

final class AnnouncementTests: XCTestCase {
    let mac: [UInt8] = [0x02, 0x00, 0x5E, 0x00, 0x01, 0x07]

    func testGratuitousARPFrameByteForByte() {
        let frame = GratuitousARP.frame(for: IPAddress("192.0.2.10")!, from: mac)
        let expected: [UInt8] = [
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,   // to everyone on the link
            0x02, 0x00, 0x5E, 0x00, 0x01, 0x07,   // from us
            0x08, 0x06,                           // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4,         // Ethernet, IPv4, lengths
            0x00, 0x01,                           // request
            0x02, 0x00, 0x5E, 0x00, 0x01, 0x07, 192, 0, 2, 10,   // sender: our MAC has the VIP
            0, 0, 0, 0, 0, 0, 192, 0, 2, 10,                     // target: the VIP itself
        ]
        XCTAssertEqual(frame, expected)
    }

    func testUnsolicitedNeighborAdvertisementByteForByte() {
        let message = NeighborAdvertisement.message(for: IPAddress("2001:db8::10")!, from: mac)
        XCTAssertEqual(message.count, 32)
        XCTAssertEqual(Array(message[0..<8]), [136, 0, 0, 0, 0x20, 0, 0, 0], "type 136, Override set, Solicited clear")
        XCTAssertEqual(Array(message[8..<24]), IPAddress("2001:db8::10")!.bytes)
        XCTAssertEqual(Array(message[24..<32]), [2, 1] + mac, "target link-layer address option")
    }

    func testVirtualAddressParsing() {
        XCTAssertEqual(VirtualAddress("192.0.2.1/24")?.prefixLength, 24)
        XCTAssertEqual(VirtualAddress("192.0.2.1")?.prefixLength, 32)
        XCTAssertEqual(VirtualAddress("2001:db8::1")?.prefixLength, 128)
        XCTAssertEqual(VirtualAddress("2001:db8::1/64")?.description, "2001:db8::1/64")
        for bad in ["", "/24", "192.0.2.1/", "192.0.2.1/0", "192.0.2.1/24/1", "2001:db8::1/129", "x/8"] {
            XCTAssertNil(VirtualAddress(bad), bad)
        }
    }
}
