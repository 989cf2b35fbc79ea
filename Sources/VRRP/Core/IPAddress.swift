#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address as its network-order bytes: the form VRRP puts on the wire
/// and compares when breaking priority ties (RFC 5798 section 6.4.3: the higher primary address wins).
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case v4, v6 }

    /// 4 bytes for IPv4, 16 for IPv6, network byte order.
    public let bytes: [UInt8]

    public var family: Family { bytes.count == 4 ? .v4 : .v6 }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses dotted-quad IPv4 or textual IPv6 (no brackets, no zone).
    public init?(_ text: String) {
        var buffer = [UInt8](repeating: 0, count: 16)
        if text.contains(":") {
            guard inet_pton(AF_INET6, text, &buffer) == 1 else { return nil }
            self.bytes = buffer
        } else {
            guard inet_pton(AF_INET, text, &buffer) == 1 else { return nil }
            self.bytes = Array(buffer.prefix(4))
        }
    }

    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return String(cString: text)
    }

    /// Unsigned comparison in network byte order; IPv4 sorts before IPv6.
    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.bytes.count != rhs.bytes.count { return lhs.bytes.count < rhs.bytes.count }
        return lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
