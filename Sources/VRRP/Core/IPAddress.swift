#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address: penha's one address value, for VRRP's wire and tie-breaks, the
/// client table and the access lists alike. 128 bits in two words, no heap: IPv4 is kept in
/// its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so that a client reaching a dual-stack
/// listener as ::ffff:a.b.c.d is the same client as a.b.c.d, and an IPv4-mapped address
/// given as IPv6 is the IPv4 address.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case v4, v6 }

    /// The first and last 64 bits in network order.
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// `address` in host order (0x7F000001 for 127.0.0.1).
    public init(ipv4 address: UInt32) {
        self.init(high: 0, low: Self.mappedPrefix | UInt64(address))
    }

    private static let mappedPrefix: UInt64 = 0xFFFF_0000_0000

    public var family: Family { high == 0 && low >> 32 == 0xFFFF ? .v4 : .v6 }

    /// The IPv4 address in host order; nil for IPv6.
    public var ipv4: UInt32? { family == .v4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// 4 bytes for IPv4, 16 for IPv6, network byte order: the form on VRRP's wire.
    public var bytes: [UInt8] {
        let all = (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - $0 * 8)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - $0 * 8)) }
        return family == .v4 ? Array(all.suffix(4)) : all
    }

    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4:
            self.init(ipv4: bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            self.init(high: bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) },
                      low: bytes.suffix(8).reduce(0) { $0 << 8 | UInt64($1) })
        default:
            return nil
        }
    }

    /// Parses dotted-quad IPv4 or textual IPv6 (no brackets, no zone).
    public init?(_ text: String) {
        var buffer = [UInt8](repeating: 0, count: 16)
        if text.contains(":") {
            guard inet_pton(AF_INET6, text, &buffer) == 1 else { return nil }
            self.init(bytes: buffer)
        } else {
            guard inet_pton(AF_INET, text, &buffer) == 1 else { return nil }
            self.init(bytes: Array(buffer.prefix(4)))
        }
    }

    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let bytes = self.bytes
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Unsigned comparison in network byte order; IPv4 sorts before IPv6.
    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.family != rhs.family { return lhs.family == .v4 }
        return (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}
