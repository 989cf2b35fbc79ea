import TestSupport
import XCTest

@testable import VRRP
@testable import VRRPCore

final class PacketTests: XCTestCase {
    private let v4Source = IPAddress("192.168.1.1")!
    private let v4Group = IPAddress("224.0.0.18")!  // RFC 5798 section 5.1.1.2
    private let v6Source = IPAddress("fe80::1")!
    private let v6Group = IPAddress("ff02::12")!  // RFC 5798 section 5.1.2.2

    // MARK: Helpers

    private func v3Advert(addresses: [String] = ["192.168.1.100"]) -> VRRPAdvertisement {
        VRRPAdvertisement(
            version: 3, vrid: 51, priority: 100, maxAdvertInterval: 100, addresses: addresses.map { IPAddress($0)! })
    }

    private func v2Advert(authentication: VRRPAuthentication = .none) -> VRRPAdvertisement {
        VRRPAdvertisement(
            version: 2, vrid: 7, priority: 200, maxAdvertInterval: 100,
            addresses: [IPAddress("10.0.0.100")!, IPAddress("10.0.0.101")!], authentication: authentication)
    }

    /// Decodes as an instance configured like `advert` (or with the given overrides) would.
    private func decode(
        _ bytes: [UInt8], like advert: VRRPAdvertisement, source: IPAddress? = nil, destination: IPAddress? = nil,
        ttl: Int = 255, version: UInt8? = nil, vrid: UInt8? = nil, interval: UInt16? = nil,
        authentication: VRRPAuthentication? = nil
    ) -> Result<VRRPAdvertisement, VRRPDropReason> {
        let family = advert.addresses.first?.family ?? .v4
        return VRRPAdvertisement.decode(
            bytes, source: source ?? (family == .v4 ? v4Source : v6Source),
            destination: destination ?? (family == .v4 ? v4Group : v6Group), ttl: ttl,
            expectedVersion: version ?? advert.version, expectedVRID: vrid ?? advert.vrid,
            expectedInterval: interval ?? advert.maxAdvertInterval,
            authentication: authentication ?? advert.authentication)
    }

    private func encode(_ advert: VRRPAdvertisement) throws -> [UInt8] {
        let family = advert.addresses.first?.family ?? .v4
        return try advert.encode(
            source: family == .v4 ? v4Source : v6Source, destination: family == .v4 ? v4Group : v6Group)
    }

    /// Recomputes the checksum after a test edits a field, so that only the edited field is wrong.
    private func rechecksummed(_ bytes: [UInt8], source: IPAddress, destination: IPAddress) -> [UInt8] {
        var bytes = bytes
        bytes[6] = 0
        bytes[7] = 0
        let prefix = VRRPAdvertisement.checksumPrefix(
            version: bytes[0] >> 4, source: source, destination: destination, length: bytes.count)
        let checksum = internetChecksum(prefix + bytes)
        bytes[6] = UInt8(checksum >> 8)
        bytes[7] = UInt8(checksum & 0xFF)
        return bytes
    }

    private func assertDropped(
        _ result: Result<VRRPAdvertisement, VRRPDropReason>, _ reason: VRRPDropReason,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        switch result {
        case .success(let advert): XCTFail("accepted \(advert), expected drop \(reason)", file: file, line: line)
        case .failure(let actual): XCTAssertEqual(actual, reason, file: file, line: line)
        }
    }

    private func assertRoundTrip(
        _ advert: VRRPAdvertisement, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let bytes = try encode(advert)
        XCTAssertEqual(try decode(bytes, like: advert).get(), advert, file: file, line: line)
    }

    // MARK: Checksum

    func testInternetChecksumMatchesRFC1071Example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to 2ddf0, folded ddf2, complemented 220d.
        XCTAssertEqual(internetChecksum([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]), 0x220D)
    }

    func testInternetChecksumPadsOddLengthWithZero() {
        // Words 12ab and cd(00): 12ab + cd00 = dfab; complement 2054. No words: complement of 0.
        XCTAssertEqual(internetChecksum([0x12, 0xAB, 0xCD]), 0x2054)
        XCTAssertEqual(internetChecksum([]), 0xFFFF)
    }

    // MARK: Hand-computed packets

    func testHandComputedV3IPv4AdvertEncodesAndDecodes() throws {
        // Version 3 type 1 = 0x31, VRID 51 = 0x33, priority 100 = 0x64, 1 address,
        // rsvd 0 + interval 100 cs = 0x0064, checksum, 192.168.1.100 = c0 a8 01 64. Length 12 = 0x0c.
        // Pseudo-header 192.168.1.1, 224.0.0.18, 0, 112, 12:
        //   c0a8 + 0101 + e000 + 0012 + 0070 + 000c = 1a237
        // Message with checksum 0: 3133 + 6401 + 0064 + 0000 + c0a8 + 0164 added to that:
        //   1a237 + 3133 = 1d36a, + 6401 = 2376b, + 0064 = 237cf, + c0a8 = 2f877, + 0164 = 2f9db
        // Fold: f9db + 2 = f9dd; one's complement: 0622.
        let expected: [UInt8] = [0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x06, 0x22, 0xC0, 0xA8, 0x01, 0x64]
        let advert = v3Advert()
        XCTAssertEqual(try encode(advert), expected)
        XCTAssertEqual(try decode(expected, like: advert).get(), advert)
    }

    func testHandComputedV3IPv6AdvertEncodesAndDecodes() throws {
        // 0x31, VRID 1, priority 100, 1 address, interval 0x0064, checksum, fe80::100. Length 24 = 0x18.
        // Pseudo-header (RFC 2460 section 8.1) fe80::1, ff02::12, 00000018, 000000, 70:
        //   fe80 + 0001 + ff02 + 0012 + 0000 + 0018 + 0000 + 0070 = 1fe1d
        // Message: 3101 + 6401 + 0064 + 0000 + fe80 + 0100: 1fe1d + 3101 = 22f1e, + 6401 = 2931f,
        //   + 0064 = 29383, + fe80 = 39203, + 0100 = 39303
        // Fold: 9303 + 3 = 9306; one's complement: 6cf9.
        var expected: [UInt8] = [0x31, 0x01, 0x64, 0x01, 0x00, 0x64, 0x6C, 0xF9, 0xFE, 0x80]
        expected += [UInt8](repeating: 0, count: 12) + [0x01, 0x00]
        let advert = VRRPAdvertisement(
            version: 3, vrid: 1, priority: 100, maxAdvertInterval: 100, addresses: [IPAddress("fe80::100")!])
        XCTAssertEqual(try encode(advert), expected)
        XCTAssertEqual(try decode(expected, like: advert).get(), advert)
    }

    func testHandComputedV2AdvertEncodesAndDecodes() throws {
        // Version 2 type 1 = 0x21, VRID 7, priority 200 = 0xc8, 2 addresses, Auth Type 1, Adver Int 1 s,
        // checksum, 10.0.0.100, 10.0.0.101, "secret" zero-padded to 8 bytes. No pseudo-header in version 2:
        //   2107 + c802 = e909, + 0101 = ea0a, + 0000, + 0a00 = f40a, + 0064 = f46e, + 0a00 = fe6e,
        //   + 0065 = fed3, + 7365 ("se") = 17238, + 6372 ("cr") = 1d5aa, + 6574 ("et") = 23b1e, + 0000
        // Fold: 3b1e + 2 = 3b20; one's complement: c4df.
        let expected: [UInt8] = [
            0x21, 0x07, 0xC8, 0x02, 0x01, 0x01, 0xC4, 0xDF,
            0x0A, 0x00, 0x00, 0x64, 0x0A, 0x00, 0x00, 0x65,
            0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x00, 0x00,
        ]
        let advert = v2Advert(authentication: .password("secret"))
        XCTAssertEqual(try encode(advert), expected)
        XCTAssertEqual(try decode(expected, like: advert).get(), advert)
    }

    // MARK: Round trips

    func testRoundTripV3IPv4OneAddress() throws {
        try assertRoundTrip(v3Advert())
    }

    func testRoundTripV3IPv4SeveralAddresses() throws {
        try assertRoundTrip(v3Advert(addresses: ["192.168.1.100", "192.168.1.101", "10.1.2.3"]))
    }

    func testRoundTripV3IPv4MaximumAddressesAndInterval() throws {
        var advert = v3Advert()
        advert.addresses = (0..<255).map { IPAddress(bytes: [10, 0, 1, UInt8($0)])! }
        advert.maxAdvertInterval = 4095
        advert.priority = 255
        let bytes = try encode(advert)
        XCTAssertEqual(bytes.count, 8 + 255 * 4)
        XCTAssertEqual(bytes[4] >> 4, 0, "reserved bits are zero")
        XCTAssertEqual(try decode(bytes, like: advert).get(), advert)
    }

    func testRoundTripV3IPv6() throws {
        var advert = v3Advert()
        advert.addresses = [IPAddress("fe80::100")!, IPAddress("2001:db8::1")!]
        advert.priority = 0
        advert.maxAdvertInterval = 1
        try assertRoundTrip(advert)
    }

    func testRoundTripV2WithoutAuthentication() throws {
        let advert = v2Advert()
        let bytes = try encode(advert)
        XCTAssertEqual(bytes[4], 0, "Auth Type 0")
        XCTAssertEqual(Array(bytes.suffix(8)), [UInt8](repeating: 0, count: 8))
        try assertRoundTrip(advert)
    }

    func testRoundTripV2WithPassword() throws {
        try assertRoundTrip(v2Advert(authentication: .password("p")))
        try assertRoundTrip(v2Advert(authentication: .password("12345678")))
    }

    func testV2IntervalIsCarriedInSeconds() throws {
        var advert = v2Advert()
        advert.maxAdvertInterval = 25500
        let bytes = try encode(advert)
        XCTAssertEqual(bytes[5], 255)
        XCTAssertEqual(try decode(bytes, like: advert).get().maxAdvertInterval, 25500)
    }

    func testV3ReservedBitsAreIgnoredOnReception() throws {
        let advert = v3Advert()
        var bytes = try encode(advert)
        bytes[4] |= 0xF0
        bytes = rechecksummed(bytes, source: v4Source, destination: v4Group)
        XCTAssertEqual(try decode(bytes, like: advert).get(), advert)
    }

    func testV2AuthenticationDataIsIgnoredWithoutAuthentication() throws {
        let advert = v2Advert()
        var bytes = try encode(advert)
        bytes[bytes.count - 1] = 0x55
        bytes = rechecksummed(bytes, source: v4Source, destination: v4Group)
        XCTAssertEqual(try decode(bytes, like: advert).get(), advert)
    }

    func testDecodeAcceptsSlices() throws {
        let advert = v3Advert()
        let framed = [0xEE] + (try encode(advert)) + [0xEE]
        let slice = framed[1..<framed.count - 1]
        XCTAssertEqual(
            try VRRPAdvertisement.decode(
                slice, source: v4Source, destination: v4Group, ttl: 255, expectedVersion: 3, expectedVRID: 51,
                expectedInterval: 100
            ).get(), advert)
    }

    // MARK: Encoding errors

    private func assertEncodingFails(
        _ advert: VRRPAdvertisement, _ error: VRRPEncodingError, source: IPAddress? = nil,
        destination: IPAddress? = nil, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(
            try advert.encode(source: source ?? v4Source, destination: destination ?? v4Group), file: file, line: line
        ) { thrown in
            XCTAssertEqual(thrown as? VRRPEncodingError, error, file: file, line: line)
        }
    }

    func testEncodeRejectsBadVersionAndVRID() {
        var advert = v3Advert()
        advert.version = 4
        assertEncodingFails(advert, .version(4))
        advert.version = 3
        advert.vrid = 0
        assertEncodingFails(advert, .vrid)
    }

    func testEncodeRejectsAddressCountOutOfRange() {
        var advert = v3Advert()
        advert.addresses = []
        assertEncodingFails(advert, .addressCount(0))
        advert.addresses = (0..<256).map { IPAddress(bytes: [10, 0, UInt8($0 / 256), UInt8($0 % 256)])! }
        assertEncodingFails(advert, .addressCount(256))
    }

    func testEncodeRejectsMixedFamilies() {
        assertEncodingFails(v3Advert(addresses: ["192.168.1.100", "fe80::100"]), .mixedAddressFamilies)
        assertEncodingFails(v3Advert(), .mixedAddressFamilies, destination: v6Group)
        assertEncodingFails(v3Advert(), .mixedAddressFamilies, source: v6Source, destination: v6Group)
    }

    func testEncodeRejectsIPv6InVersion2() {
        var advert = v2Advert()
        advert.addresses = [IPAddress("fe80::100")!]
        assertEncodingFails(advert, .ipv6InVersion2, source: v6Source, destination: v6Group)
    }

    func testEncodeRejectsIntervalsOutOfRange() {
        var v3 = v3Advert()
        for bad: UInt16 in [0, 4096, 65535] {
            v3.maxAdvertInterval = bad
            assertEncodingFails(v3, .interval(version: 3, centiseconds: bad))
        }
        var v2 = v2Advert()
        for bad: UInt16 in [0, 50, 150, 25600] {
            v2.maxAdvertInterval = bad
            assertEncodingFails(v2, .interval(version: 2, centiseconds: bad))
        }
    }

    func testEncodeRejectsBadAuthentication() {
        var v3 = v3Advert()
        v3.authentication = .password("secret")
        assertEncodingFails(v3, .authenticationInVersion3)
        assertEncodingFails(v2Advert(authentication: .password("123456789")), .passwordTooLong(bytes: 9))
    }

    func testEncodingErrorsDescribeThemselves() {
        let errors: [VRRPEncodingError] = [
            .version(4), .vrid, .addressCount(0), .mixedAddressFamilies, .ipv6InVersion2,
            .interval(version: 2, centiseconds: 150), .interval(version: 3, centiseconds: 0),
            .authenticationInVersion3, .passwordTooLong(bytes: 9),
        ]
        let descriptions = errors.map(\.description)
        XCTAssertEqual(Set(descriptions).count, errors.count)
        XCTAssertTrue(descriptions.allSatisfy { $0.hasPrefix("VRRP ") })
    }

    // MARK: Drop reasons, one test each, in the order decode checks them

    func testDropReasonLabelsAreDistinct() {
        let labels = VRRPDropReason.allCases.map(\.rawValue)
        XCTAssertEqual(Set(labels).count, labels.count)
        XCTAssertEqual(VRRPDropReason.allCases.filter(\.isSilent), [.vrid])
    }

    func testDropsTTLBelow255() throws {
        let advert = v3Advert()
        let bytes = try encode(advert)
        assertDropped(decode(bytes, like: advert, ttl: 254), .ttl)
        assertDropped(decode(bytes, like: advert, ttl: 1), .ttl)
    }

    func testDropsShorterThanFixedHeader() throws {
        let advert = v3Advert()
        let bytes = try encode(advert)
        assertDropped(decode(Array(bytes.prefix(7)), like: advert), .length)
        assertDropped(decode([], like: advert), .length)
    }

    func testDropsOtherVersion() throws {
        let v2 = v2Advert()
        assertDropped(decode(try encode(v2), like: v2, version: 3), .version)
        let v3 = v3Advert()
        assertDropped(decode(try encode(v3), like: v3, version: 2), .version)
    }

    func testDropsVersionOutsideTwoAndThreeEvenIfExpected() throws {
        let advert = v3Advert()
        var bytes = try encode(advert)
        bytes[0] = 0x41
        assertDropped(decode(rechecksummed(bytes, source: v4Source, destination: v4Group), like: advert, version: 4), .version)
    }

    func testDropsTypeOtherThanAdvertisement() throws {
        let advert = v3Advert()
        var bytes = try encode(advert)
        bytes[0] = 0x32
        assertDropped(decode(rechecksummed(bytes, source: v4Source, destination: v4Group), like: advert), .type)
    }

    func testDropsVersion2FromIPv6() throws {
        // An IPv6 address in a version 2 packet: 8 header + 16 address + 8 auth bytes, from an IPv6 source.
        var bytes: [UInt8] = [0x21, 0x07, 0xC8, 0x01, 0x00, 0x01, 0x00, 0x00]
        bytes += IPAddress("fe80::100")!.bytes + [UInt8](repeating: 0, count: 8)
        bytes = rechecksummed(bytes, source: v6Source, destination: v6Group)
        assertDropped(decode(bytes, like: v2Advert(), source: v6Source, destination: v6Group), .addressFamily)
    }

    func testDropsMixedSourceAndDestinationFamilies() throws {
        let advert = v3Advert()
        assertDropped(decode(try encode(advert), like: advert, destination: v6Group), .addressFamily)
    }

    func testDropsCountOfThreeWithTwoAddresses() throws {
        let advert = v3Advert(addresses: ["192.168.1.100", "192.168.1.101"])
        var bytes = try encode(advert)
        bytes[3] = 3
        assertDropped(decode(rechecksummed(bytes, source: v4Source, destination: v4Group), like: advert), .addressCount)
    }

    func testDropsZeroAddressCount() throws {
        let advert = v3Advert()
        var bytes = Array(try encode(advert).prefix(8))
        bytes[3] = 0
        assertDropped(decode(rechecksummed(bytes, source: v4Source, destination: v4Group), like: advert), .addressCount)
    }

    func testDropsTrailingBytes() throws {
        let advert = v3Advert()
        let bytes = try encode(advert) + [0, 0, 0, 0]
        assertDropped(decode(rechecksummed(bytes, source: v4Source, destination: v4Group), like: advert), .addressCount)
    }

    func testDropsVersion2WithoutAuthenticationData() throws {
        let advert = v2Advert()
        var bytes = Array(try encode(advert).dropLast(8))
        bytes = rechecksummed(bytes, source: v4Source, destination: v4Group)
        assertDropped(decode(bytes, like: advert), .addressCount)
    }

    func testDropsEverySingleFlippedBitOutsideVersionTypeAndCount() throws {
        // The checksum comes before the VRID, authentication and interval checks, so any flipped bit
        // outside the fields checked earlier is caught by it.
        for advert in [v3Advert(), v2Advert(authentication: .password("secret")), v3Advert().withIPv6()] {
            let bytes = try encode(advert)
            for index in 1..<bytes.count where index != 3 {
                for bit in 0..<8 {
                    var flipped = bytes
                    flipped[index] ^= 1 << bit
                    assertDropped(decode(flipped, like: advert), .checksum)
                }
            }
        }
    }

    func testDropsVersion3WhenPseudoHeaderDiffers() throws {
        // The version 3 checksum covers the IP addresses; version 2 does not.
        let v3 = v3Advert()
        assertDropped(decode(try encode(v3), like: v3, source: IPAddress("192.168.1.2")!), .checksum)
        let v2 = v2Advert()
        XCTAssertEqual(try decode(try encode(v2), like: v2, source: IPAddress("192.168.1.2")!).get(), v2)
    }

    func testDropsOtherVRIDSilently() throws {
        let advert = v3Advert()
        assertDropped(decode(try encode(advert), like: advert, vrid: 52), .vrid)
        XCTAssertTrue(VRRPDropReason.vrid.isSilent)
    }

    func testDropsWrongPassword() throws {
        let advert = v2Advert(authentication: .password("secret"))
        assertDropped(decode(try encode(advert), like: advert, authentication: .password("secreT")), .authentication)
        assertDropped(decode(try encode(advert), like: advert, authentication: .password("secret1")), .authentication)
    }

    func testDropsAuthenticationTypeMismatch() throws {
        let withPassword = v2Advert(authentication: .password("secret"))
        assertDropped(decode(try encode(withPassword), like: withPassword, authentication: VRRPAuthentication.none), .authentication)
        let without = v2Advert()
        assertDropped(decode(try encode(without), like: without, authentication: .password("")), .authentication)
    }

    func testDropsIPAuthenticationHeaderType() throws {
        // Auth Type 2 (IP AH, RFC 2338) is not supported: it can never match our configuration.
        let advert = v2Advert()
        var bytes = try encode(advert)
        bytes[4] = 2
        bytes = rechecksummed(bytes, source: v4Source, destination: v4Group)
        assertDropped(decode(bytes, like: advert), .authentication)
        assertDropped(decode(bytes, like: advert, authentication: .password("")), .authentication)
    }

    func testDropsVersion2IntervalMismatch() throws {
        let advert = v2Advert()
        assertDropped(decode(try encode(advert), like: advert, interval: 200), .interval)
    }

    /// One forged advert with interval 0 would make a backup's Master_Down_Interval 0.
    func testDropsZeroInterval() throws {
        let v3 = v3Advert()
        var bytes = try encode(v3)
        bytes[4] = 0xF0  // the reserved bits set: they must not hide the zero
        bytes[5] = 0
        assertDropped(decode(rechecksummed(bytes, source: v4Source, destination: v4Group), like: v3), .zeroInterval)
        let v6 = v3Advert().withIPv6()
        var v6Bytes = try encode(v6)
        v6Bytes[4] = 0
        v6Bytes[5] = 0
        assertDropped(decode(rechecksummed(v6Bytes, source: v6Source, destination: v6Group), like: v6), .zeroInterval)
        let v2 = v2Advert()
        var v2Bytes = try encode(v2)
        v2Bytes[5] = 0
        assertDropped(decode(rechecksummed(v2Bytes, source: v4Source, destination: v4Group), like: v2), .zeroInterval)
    }

    func testVersion3AcceptsOtherIntervals() throws {
        // Version 3 backups adopt the master's interval instead (RFC 5798 section 6.4.2).
        let advert = v3Advert()
        XCTAssertEqual(try decode(try encode(advert), like: advert, interval: 200).get(), advert)
    }

    // MARK: Garbage

    func testTruncatedAdvertsAreDropped() throws {
        for advert in [v3Advert(addresses: ["192.168.1.100", "192.168.1.101"]), v2Advert(), v3Advert().withIPv6()] {
            let bytes = try encode(advert)
            for length in 0..<bytes.count {
                let result = decode(Array(bytes.prefix(length)), like: advert)
                assertDropped(result, length < 8 ? .length : .addressCount)
            }
        }
    }

    func testRandomGarbageOfEveryLengthIsDropped() {
        var generator = SplitMix64(seed: 0x5EED)
        for length in 0...60 {
            for round in 0..<300 {
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                // Give most rounds a plausible first byte and count so deeper checks run too.
                if length >= 4, round % 3 != 0 {
                    let version: UInt8 = round % 3 == 1 ? 3 : 2
                    bytes[0] = version << 4 | 1
                    bytes[3] = UInt8(clamping: max(0, length - 8 - (version == 2 ? 8 : 0)) / 4)
                }
                for family in [IPAddress.Family.v4, .v6] {
                    let source = family == .v4 ? v4Source : v6Source
                    let destination = family == .v4 ? v4Group : v6Group
                    for version: UInt8 in [2, 3] {
                        let result = VRRPAdvertisement.decode(
                            bytes, source: source, destination: destination, ttl: 255, expectedVersion: version,
                            expectedVRID: bytes.count > 1 ? bytes[1] : 1, expectedInterval: 100)
                        if case .success(let advert) = result {
                            XCTFail("garbage \(bytes) accepted as \(advert)")
                        }
                    }
                }
            }
        }
    }

    // MARK: IPv4 header

    /// An IPv4 header with `optionWords` 4-byte option words, then `payload`, then `padding` bytes.
    private func ipv4Packet(optionWords: Int = 0, payload: [UInt8], padding: Int = 0) -> [UInt8] {
        let headerLength = 20 + 4 * optionWords
        let total = headerLength + payload.count
        var bytes: [UInt8] = [0x40 | UInt8(headerLength / 4), 0xC0, UInt8(total >> 8), UInt8(total & 0xFF)]
        bytes += [0x12, 0x34, 0x00, 0x00, 255, 112, 0x00, 0x00]  // id, flags/fragment, TTL, protocol, checksum
        bytes += v4Source.bytes + v4Group.bytes
        bytes += [UInt8](repeating: 0x01, count: 4 * optionWords)  // NOP options
        return bytes + payload + [UInt8](repeating: 0xEE, count: padding)
    }

    func testParsesValidIPv4HeaderAndStripsPadding() {
        let payload: [UInt8] = [1, 2, 3, 4, 5]
        let parsed = IPv4Header.parse(ipv4Packet(payload: payload, padding: 7))
        XCTAssertEqual(
            parsed?.header,
            IPv4Header(
                headerLength: 20, totalLength: 25, ttl: 255, protocolNumber: 112, source: v4Source,
                destination: v4Group))
        XCTAssertEqual(parsed.map { Array($0.payload) }, payload)
    }

    func testParsesIPv4HeaderWithOptions() {
        let parsed = IPv4Header.parse(ipv4Packet(optionWords: 2, payload: [9, 8]))
        XCTAssertEqual(parsed?.header.headerLength, 28)
        XCTAssertEqual(parsed.map { Array($0.payload) }, [9, 8])
    }

    func testRejectsIPv4HeaderLengthBelowFive() {
        var bytes = ipv4Packet(payload: [1, 2, 3, 4])
        bytes[0] = 0x44
        XCTAssertNil(IPv4Header.parse(bytes))
    }

    func testRejectsIPv4HeaderLengthPastBuffer() {
        var bytes = ipv4Packet(payload: [1, 2, 3, 4])
        bytes[0] = 0x4F  // 60 bytes of header in a 24-byte buffer
        XCTAssertNil(IPv4Header.parse(bytes))
    }

    func testRejectsIPv4TotalLengthPastBufferOrInsideHeader() {
        var bytes = ipv4Packet(payload: [1, 2, 3, 4])
        bytes[3] = 25
        XCTAssertNil(IPv4Header.parse(bytes))
        bytes[3] = 19
        XCTAssertNil(IPv4Header.parse(bytes))
        bytes[3] = 20
        XCTAssertEqual(IPv4Header.parse(bytes)?.payload.isEmpty, true)
    }

    func testRejectsOtherIPVersion() {
        var bytes = ipv4Packet(payload: [1, 2, 3, 4])
        bytes[0] = 0x65
        XCTAssertNil(IPv4Header.parse(bytes))
    }

    func testIPv4GarbageOfEveryLengthNeverCrashes() {
        var generator = SplitMix64(seed: 0xBAD)
        let valid = ipv4Packet(payload: [1, 2, 3, 4])
        for length in 0...60 {
            XCTAssertEqual(IPv4Header.parse(valid.prefix(length)) != nil, length >= valid.count)
            for _ in 0..<300 {
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if length > 0 { bytes[0] = 0x40 | bytes[0] & 0x0F }
                if let parsed = IPv4Header.parse(bytes) {
                    XCTAssertEqual(parsed.payload.count, parsed.header.totalLength - parsed.header.headerLength)
                }
            }
        }
    }

    func testDecodesVRRPFromRawIPv4Packet() throws {
        let advert = v3Advert()
        let packet = ipv4Packet(payload: try encode(advert), padding: 6)
        let parsed = try XCTUnwrap(IPv4Header.parse(packet))
        let result = VRRPAdvertisement.decode(
            parsed.payload, source: parsed.header.source, destination: parsed.header.destination,
            ttl: Int(parsed.header.ttl), expectedVersion: 3, expectedVRID: 51, expectedInterval: 100)
        XCTAssertEqual(try result.get(), advert)
    }
}

extension VRRPAdvertisement {
    fileprivate func withIPv6() -> VRRPAdvertisement {
        var copy = self
        copy.addresses = [IPAddress("fe80::100")!]
        return copy
    }
}

extension PacketTests {
    /// Scripts read these names from `status` and `--json`: they stay as they are.
    func testDropReasonsKeepTheirStatusNames() {
        XCTAssertEqual(VRRPDropReason.allCases.map(\.statusName),
                       ["ttl", "length", "version", "type", "addressFamily", "addressCount", "checksum", "vrid",
                        "authentication", "interval", "zeroInterval"])
    }
}
