import VRRPCore
import CVRRPSockets

#if canImport(Glibc)
import Glibc
#endif

/// Unsolicited Neighbor Advertisement for an IPv6 virtual address (RFC 5798 section
/// 6.4.2; RFC 4861 section 7.2.6): sent to all nodes with the Override flag, so
/// neighbours replace their cached link-layer address for it with ours.
public enum NeighborAdvertisement {
    static let allNodes = IPAddress("ff02::1")!

    /// The ICMPv6 message; the kernel fills in the checksum for ICMPv6 raw sockets.
    public static func message(for address: IPAddress, from hardwareAddress: [UInt8]) -> [UInt8] {
        precondition(address.family == .v6 && hardwareAddress.count == 6)
        var message: [UInt8] = [136, 0, 0, 0]   // type Neighbor Advertisement, code 0, checksum
        message += [0x20, 0, 0, 0]              // flags: Override; not Router, not Solicited
        message += address.bytes                // target address
        message += [2, 1] + hardwareAddress     // option: target link-layer address, 8 bytes
        return message
    }

    /// Sends one advertisement to all nodes on `interface`, with hop limit 255 as RFC 4861 requires.
    public static func send(for address: IPAddress, on interface: NetworkInterface) throws {
        let message = message(for: address, from: try interface.hardwareAddress())
        let fd = socket(AF_INET6, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMPV6))
        guard fd >= 0 else { throw VRRPSystemError("ICMPv6 socket for neighbour advertisement (needs CAP_NET_RAW)", errno: errno) }
        defer { close(fd) }
        let ipv6 = Int32(IPPROTO_IPV6)
        try setOption(fd, ipv6, IPV6_MULTICAST_HOPS, Int32(255), "hop limit")
        try setOption(fd, ipv6, IPV6_MULTICAST_IF, Int32(interface.index), "multicast interface")
        let sent = message.withUnsafeBytes { bytes in
            allNodes.withSocketAddress(scope: interface.index) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, $1) }
        }
        guard sent == message.count else { throw VRRPSystemError("neighbour advertisement for \(address)", errno: errno) }
    }
}
