/// The VRRP advertisement codec: version 3 (RFC 5798 section 5) and version 2 (RFC 3768 section 5).
/// Bytes only: the caller owns the sockets. The kernel builds the IP header on send and strips it on
/// receive, except that IPv4 raw sockets deliver it, which is what `IPv4Header` is for.

/// How a version 2 router authenticates its advertisements. Version 3 has none (RFC 5798 section 9).
public enum VRRPAuthentication: Equatable, Sendable {
    /// Auth Type 0.
    case none
    /// Auth Type 1 of RFC 2338, which RFC 3768 keeps only for compatibility: up to 8 bytes of UTF-8
    /// sent zero-padded in clear, so it catches misconfiguration, not attackers.
    case password(String)

    static let dataLength = 8

    /// Auth Type and Authentication Data as version 2 carries them (RFC 2338 sections 5.3.6 and 5.3.10).
    /// A password longer than 8 bytes yields longer data, which encode rejects and no packet matches.
    var wire: (type: UInt8, data: [UInt8]) {
        switch self {
        case .none:
            return (0, [UInt8](repeating: 0, count: Self.dataLength))
        case .password(let text):
            let bytes = Array(text.utf8)
            return (1, bytes + [UInt8](repeating: 0, count: max(0, Self.dataLength - bytes.count)))
        }
    }
}

/// One VRRP ADVERTISEMENT, the only message type VRRP has.
public struct VRRPAdvertisement: Equatable, Sendable {
    /// 2 or 3.
    public var version: UInt8
    /// 1...255.
    public var vrid: UInt8
    /// 0 means the master is resigning; 255 means the sender owns the addresses.
    public var priority: UInt8
    /// Centiseconds for both versions, so the state machine sees one unit. Version 3 carries
    /// 1...4095 on the wire; version 2 carries whole seconds 1...255, here 100...25500 in steps of 100.
    public var maxAdvertInterval: UInt16
    /// 1...255 addresses, all of the IP packet's family; version 2 is IPv4 only.
    public var addresses: [IPAddress]
    /// Version 2 only; version 3 must use `.none`.
    public var authentication: VRRPAuthentication

    public init(
        version: UInt8, vrid: UInt8, priority: UInt8, maxAdvertInterval: UInt16, addresses: [IPAddress],
        authentication: VRRPAuthentication = .none
    ) {
        self.version = version
        self.vrid = vrid
        self.priority = priority
        self.maxAdvertInterval = maxAdvertInterval
        self.addresses = addresses
        self.authentication = authentication
    }
}

/// Why `VRRPAdvertisement.encode` refused to build a message.
public enum VRRPEncodingError: Error, Equatable, CustomStringConvertible {
    case version(UInt8)
    case vrid
    case addressCount(Int)
    case mixedAddressFamilies
    case ipv6InVersion2
    case interval(version: UInt8, centiseconds: UInt16)
    case authenticationInVersion3
    case passwordTooLong(bytes: Int)

    public var description: String {
        switch self {
        case .version(let version): return "VRRP version \(version) is not 2 or 3"
        case .vrid: return "VRRP virtual router id must be 1...255"
        case .addressCount(let count): return "VRRP advertisement carries 1...255 addresses, not \(count)"
        case .mixedAddressFamilies: return "VRRP addresses, source and destination must be all IPv4 or all IPv6"
        case .ipv6InVersion2: return "VRRP version 2 carries IPv4 only"
        case .interval(let version, let centiseconds):
            return version == 2
                ? "VRRP version 2 interval \(centiseconds) cs is not a whole number of seconds 1...255"
                : "VRRP version 3 interval \(centiseconds) cs is not 1...4095"
        case .authenticationInVersion3: return "VRRP version 3 has no authentication"
        case .passwordTooLong(let bytes): return "VRRP password is \(bytes) bytes; at most 8 fit"
        }
    }
}

/// Why a received packet was discarded. The raw value labels the counter in `penha status`.
public enum VRRPDropReason: String, Error, CaseIterable, Sendable {
    case ttl = "bad TTL"
    case length = "truncated"
    case version = "wrong version"
    case type = "unknown type"
    case addressFamily = "wrong address family"
    case addressCount = "length/address count mismatch"
    case checksum = "bad checksum"
    case vrid = "other VRID"
    case authentication = "authentication mismatch"
    case interval = "interval mismatch"
    /// An interval of 0 would make the backup's Master_Down_Interval 0: one such advert,
    /// forged or broken, would put the addresses on two nodes at once.
    case zeroInterval = "zero interval"

    /// Adverts of other virtual routers on the same link are normal traffic: count them, don't log them.
    public var isSilent: Bool { self == .vrid }

    /// The counter's name in `status` (`drop_NAME`) and `--json` (`dropped.NAME`): spelled
    /// out, so that renaming a case cannot change what scripts read.
    public var statusName: String {
        switch self {
        case .ttl: return "ttl"
        case .length: return "length"
        case .version: return "version"
        case .type: return "type"
        case .addressFamily: return "addressFamily"
        case .addressCount: return "addressCount"
        case .checksum: return "checksum"
        case .vrid: return "vrid"
        case .authentication: return "authentication"
        case .interval: return "interval"
        case .zeroInterval: return "zeroInterval"
        }
    }
}

/// `--json` keys the drop counters by `statusName`, as `status` does.
extension VRRPDropReason: Codable, CodingKeyRepresentable {
    private struct Key: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public var codingKey: any CodingKey { Key(stringValue: statusName) }

    public init?<T: CodingKey>(codingKey: T) {
        guard let reason = Self.allCases.first(where: { $0.statusName == codingKey.stringValue }) else { return nil }
        self = reason
    }
}

extension VRRPAdvertisement {
    static let headerLength = 8
    static let advertisementType: UInt8 = 1  // RFC 5798 section 5.2.2
    static let protocolNumber: UInt8 = 112  // RFC 5798 section 5.1.1.3

    /// The VRRP message, checksum filled, for an IP packet from `source` to `destination`
    /// (the addresses enter the version 3 checksum). Throws `VRRPEncodingError`.
    public func encode(source: IPAddress, destination: IPAddress) throws -> [UInt8] {
        try validate(source: source, destination: destination)
        var message: [UInt8] = [version << 4 | Self.advertisementType, vrid, priority, UInt8(addresses.count)]
        if version == 3 {
            // RFC 5798 sections 5.2.6-5.2.7: 4 reserved zero bits, then the 12-bit interval.
            message += [UInt8(maxAdvertInterval >> 8), UInt8(maxAdvertInterval & 0xFF)]
        } else {
            // RFC 3768 sections 5.3.6-5.3.7: Auth Type, then Adver Int in seconds.
            message += [authentication.wire.type, UInt8(maxAdvertInterval / 100)]
        }
        message += [0, 0]  // the checksum is computed with its own field zero
        for address in addresses {
            message += address.bytes
        }
        if version == 2 {
            message += authentication.wire.data  // RFC 3768 section 5.3.10
        }
        let checksum = internetChecksum(
            Self.checksumPrefix(version: version, source: source, destination: destination, length: message.count)
                + message)
        message[6] = UInt8(checksum >> 8)
        message[7] = UInt8(checksum & 0xFF)
        return message
    }

    private func validate(source: IPAddress, destination: IPAddress) throws {
        guard version == 2 || version == 3 else { throw VRRPEncodingError.version(version) }
        guard vrid != 0 else { throw VRRPEncodingError.vrid }
        guard (1...255).contains(addresses.count) else { throw VRRPEncodingError.addressCount(addresses.count) }
        let family = source.family
        guard destination.family == family, addresses.allSatisfy({ $0.family == family }) else {
            throw VRRPEncodingError.mixedAddressFamilies
        }
        if version == 3 {
            guard (1...4095).contains(maxAdvertInterval) else {
                throw VRRPEncodingError.interval(version: version, centiseconds: maxAdvertInterval)
            }
            guard authentication == .none else { throw VRRPEncodingError.authenticationInVersion3 }
        } else {
            guard family == .v4 else { throw VRRPEncodingError.ipv6InVersion2 }
            guard maxAdvertInterval % 100 == 0, (100...25500).contains(maxAdvertInterval) else {
                throw VRRPEncodingError.interval(version: version, centiseconds: maxAdvertInterval)
            }
            let data = authentication.wire.data
            guard data.count == VRRPAuthentication.dataLength else {
                throw VRRPEncodingError.passwordTooLong(bytes: data.count)
            }
        }
    }

    /// Checks `packet` (the VRRP message, no IP header) as a router of `expectedVersion` (2 or 3)
    /// and `expectedVRID` would, in the order of RFC 5798 section 7.1 / RFC 3768 section 7.1.
    /// `ttl` is the IPv4 TTL or IPv6 hop limit. `expectedInterval` (centiseconds) and
    /// `authentication` matter for version 2 only, which requires both to match ours.
    public static func decode(
        _ packet: some Collection<UInt8>, source: IPAddress, destination: IPAddress, ttl: Int,
        expectedVersion: UInt8, expectedVRID: UInt8, expectedInterval: UInt16,
        authentication: VRRPAuthentication = .none
    ) -> Result<VRRPAdvertisement, VRRPDropReason> {
        let bytes = Array(packet)
        // A TTL below 255 means the advert crossed a router: VRRP is link-local.
        guard ttl == 255 else { return .failure(.ttl) }
        // The fixed header must be there before any of its fields can be read.
        guard bytes.count >= headerLength else { return .failure(.length) }
        let version = bytes[0] >> 4
        guard version == expectedVersion, version == 2 || version == 3 else { return .failure(.version) }
        guard bytes[0] & 0x0F == advertisementType else { return .failure(.type) }
        // RFC 3768 section 5.3.5: version 2 carries IPv4 only; either version carries one family.
        guard source.family == destination.family, version == 3 || source.family == .v4 else {
            return .failure(.addressFamily)
        }
        let count = Int(bytes[3])
        let trailerLength = version == 2 ? VRRPAuthentication.dataLength : 0
        // RFC 5798 section 5.2.5: at least one address, and the message must be exactly that long.
        guard count >= 1, bytes.count == headerLength + count * source.bytes.count + trailerLength else {
            return .failure(.addressCount)
        }
        let prefix = checksumPrefix(version: version, source: source, destination: destination, length: bytes.count)
        guard internetChecksum(prefix + bytes) == 0 else { return .failure(.checksum) }
        guard bytes[1] == expectedVRID else { return .failure(.vrid) }
        let interval: UInt16
        if version == 2 {
            // RFC 3768 section 7.1: Auth Type must match ours; Type 0 data is ignored on reception.
            let ours = authentication.wire
            guard bytes[4] == ours.type, authentication == .none || Array(bytes.suffix(trailerLength)) == ours.data
            else { return .failure(.authentication) }
            interval = UInt16(bytes[5]) * 100
            // RFC 3768 section 5.3.7: Adver Int counts whole seconds; 0 seconds is no interval.
            guard interval != 0 else { return .failure(.zeroInterval) }
            // RFC 3768 section 7.1: version 2 routers must agree on the interval.
            guard interval == expectedInterval else { return .failure(.interval) }
        } else {
            interval = UInt16(bytes[4] & 0x0F) << 8 | UInt16(bytes[5])  // the reserved bits are ignored
            // RFC 5798 section 5.2.7: Max Adver Int counts centiseconds; 0 is no interval.
            guard interval != 0 else { return .failure(.zeroInterval) }
        }
        let size = source.bytes.count
        let addresses = (0..<count).compactMap { index in
            IPAddress(bytes: Array(bytes[headerLength + index * size..<headerLength + (index + 1) * size]))
        }
        return .success(
            VRRPAdvertisement(
                version: version, vrid: bytes[1], priority: bytes[2], maxAdvertInterval: interval,
                addresses: addresses, authentication: version == 2 ? authentication : .none))
    }

    /// What the checksum covers ahead of the message: version 2 nothing (RFC 3768 section 5.3.8),
    /// version 3 the IP pseudo-header (RFC 5798 section 5.2.8).
    static func checksumPrefix(version: UInt8, source: IPAddress, destination: IPAddress, length: Int) -> [UInt8] {
        guard version == 3 else { return [] }
        switch source.family {
        case .v4:
            // Source, destination, zero, protocol, VRRP length.
            return source.bytes + destination.bytes + [0, protocolNumber]
                + withUnsafeBytes(of: UInt16(length).bigEndian, Array.init)
        case .v6:
            // RFC 2460 section 8.1: source, destination, 32-bit length, 3 zero bytes, next header.
            return source.bytes + destination.bytes + withUnsafeBytes(of: UInt32(length).bigEndian, Array.init)
                + [0, 0, 0, protocolNumber]
        }
    }
}

/// RFC 1071: the one's complement of the one's complement sum of the big-endian 16-bit words,
/// an odd last byte padded with zero. Summing a message that includes a correct checksum gives 0.
func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt64 = 0  // cannot overflow before 2^48 words
    for index in stride(from: 0, to: bytes.count, by: 2) {
        let low = index + 1 < bytes.count ? bytes[index + 1] : 0
        sum += UInt64(bytes[index]) << 8 | UInt64(low)
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16)
    }
    return ~UInt16(sum)
}

/// The IPv4 header an IPv4 raw socket delivers ahead of the payload (RFC 791 section 3.1):
/// VRRP needs its TTL and addresses. The kernel has verified its checksum and reassembled fragments.
public struct IPv4Header: Equatable, Sendable {
    /// Bytes, options included.
    public var headerLength: Int
    /// Bytes, header included.
    public var totalLength: Int
    public var ttl: UInt8
    public var protocolNumber: UInt8
    public var source: IPAddress
    public var destination: IPAddress

    static let minimumLength = 20

    /// The header and the payload between the options and the total length (which drops any
    /// link-layer padding); nil unless `packet` starts with an IPv4 header whose options and
    /// total length fit in it.
    public static func parse(_ packet: some Collection<UInt8>) -> (header: IPv4Header, payload: ArraySlice<UInt8>)? {
        let bytes = Array(packet)
        guard bytes.count >= minimumLength, bytes[0] >> 4 == 4 else { return nil }
        let headerLength = Int(bytes[0] & 0x0F) * 4
        let totalLength = Int(bytes[2]) << 8 | Int(bytes[3])
        guard headerLength >= minimumLength, headerLength <= totalLength, totalLength <= bytes.count,
            let source = IPAddress(bytes: Array(bytes[12..<16])),
            let destination = IPAddress(bytes: Array(bytes[16..<20]))
        else { return nil }
        let header = IPv4Header(
            headerLength: headerLength, totalLength: totalLength, ttl: bytes[8], protocolNumber: bytes[9],
            source: source, destination: destination)
        return (header, bytes[headerLength..<totalLength])
    }
}
