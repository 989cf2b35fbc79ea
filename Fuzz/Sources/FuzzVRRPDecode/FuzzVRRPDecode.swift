// The VRRP receive path: an IPv4 datagram as a raw socket delivers it (`IPv4Header.parse`),
// or a bare message with its addresses as IPv6 ancillary data gives them, into
// `VRRPAdvertisement.decode`. A decoded advert must encode back to itself.
@testable import VRRPCore  // internetChecksum and checksumPrefix, to let inputs past the checksum

/// The first input byte: how to read the rest.
struct Options: OptionSet {
    let rawValue: UInt8
    static let version3 = Options(rawValue: 1 << 0)
    static let ipv6 = Options(rawValue: 1 << 1)
    /// The rest is a whole IPv4 datagram, header first.
    static let ipv4Datagram = Options(rawValue: 1 << 2)
    /// Overwrite the checksum field with the right sum, so that the checks after it are reached.
    static let fixChecksum = Options(rawValue: 1 << 3)
    static let password = Options(rawValue: 1 << 4)
    /// Destination of the other family than the source.
    static let mixedFamilies = Options(rawValue: 1 << 5)
    /// A TTL other than 255.
    static let routed = Options(rawValue: 1 << 6)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVRRPDecode(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = Array(UnsafeBufferPointer(start: data, count: size))[...]
    guard input.count >= 3 else { return 0 }
    let options = Options(rawValue: input.removeFirst())
    let version: UInt8 = options.contains(.version3) ? 3 : 2
    // What a `vrrp` command can configure: VRID 1...255, a version 2 interval of 1...255 s.
    let vrid = max(1, input.removeFirst())
    let interval = UInt16(max(1, input.removeFirst())) * 100
    let authentication: VRRPAuthentication = options.contains(.password) ? .password("secret") : .none

    var packet: [UInt8]
    let source: IPAddress
    let destination: IPAddress
    var ttl = options.contains(.routed) ? 64 : 255
    if options.contains(.ipv4Datagram) {
        guard let (header, payload) = IPv4Header.parse(input) else { return 0 }
        precondition(header.headerLength <= header.totalLength && header.totalLength <= input.count)
        precondition(payload.count == header.totalLength - header.headerLength)
        (packet, source, destination, ttl) = (Array(payload), header.source, header.destination, Int(header.ttl))
    } else {
        let length = options.contains(.ipv6) ? 16 : 4
        let otherLength = options.contains(.mixedFamilies) ? 20 - length : length
        guard input.count >= length + otherLength,
            let from = IPAddress(bytes: Array(input.prefix(length))),
            let to = IPAddress(bytes: Array(input.dropFirst(length).prefix(otherLength)))
        else { return 0 }
        (packet, source, destination) = (Array(input.dropFirst(length + otherLength)), from, to)
    }
    if options.contains(.fixChecksum), packet.count >= VRRPAdvertisement.headerLength {
        packet[6] = 0
        packet[7] = 0
        let prefix = VRRPAdvertisement.checksumPrefix(
            version: packet[0] >> 4, source: source, destination: destination, length: packet.count)
        let checksum = internetChecksum(prefix + packet)
        packet[6] = UInt8(checksum >> 8)
        packet[7] = UInt8(checksum & 0xFF)
    }

    let decode = { (bytes: [UInt8]) in
        VRRPAdvertisement.decode(
            bytes, source: source, destination: destination, ttl: ttl, expectedVersion: version,
            expectedVRID: vrid, expectedInterval: interval, authentication: authentication)
    }
    guard case .success(let advert) = decode(packet) else { return 0 }
    precondition(advert.version == version && advert.vrid == vrid && ttl == 255)
    precondition(advert.addresses.count == Int(packet[3]) && advert.addresses.allSatisfy { $0.family == source.family })
    // Version 3 carries intervals the encoder refuses (0); every other advert goes back out.
    guard let encoded = try? advert.encode(source: source, destination: destination) else {
        precondition(version == 3 && advert.maxAdvertInterval == 0, "\(advert) decodes but does not encode")
        return 0
    }
    guard case .success(let again) = decode(encoded), again == advert else {
        preconditionFailure("\(advert) encodes to \(encoded), which decodes to \(decode(encoded))")
    }
    return 0
}
