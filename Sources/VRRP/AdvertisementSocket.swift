import VRRPCore
import CVRRPSockets

#if canImport(Glibc)
import Glibc
#endif

/// VRRP on the wire: IP protocol 112 on raw sockets, multicast to 224.0.0.18 / ff02::12 on
/// one interface or unicast to peers, TTL / hop limit 255 (RFC 5798 section 5.1.1.3).
/// Two sockets: the sender is bound to the primary address so the source the v3 checksum
/// covers is exactly the one sent; the receiver stays unbound, because a bound raw socket
/// only sees packets addressed to its own address, not the multicast group.
public final class AdvertisementSocket {
    public enum Reception: Sendable {
        case nothingPending
        /// An IPv4 datagram whose IP header does not parse.
        case malformed
        case datagram(Received)
    }

    /// A datagram as received, with what the kernel says about it.
    public struct Received: Sendable {
        public let payload: [UInt8]
        public let source: IPAddress
        public let destination: IPAddress
        public let ttl: Int
    }

    public static let protocolNumber: Int32 = 112
    public static let ipv4Group = IPAddress("224.0.0.18")!
    public static let ipv6Group = IPAddress("ff02::12")!

    public let family: IPAddress.Family
    public let interface: NetworkInterface
    /// Polled by the instance for readability.
    public let receiveDescriptor: Int32
    private let sendDescriptor: Int32

    public init(family: IPAddress.Family, interface: NetworkInterface, source: IPAddress) throws {
        self.family = family
        self.interface = interface
        let domain = family == .v4 ? AF_INET : AF_INET6
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        receiveDescriptor = socket(domain, type, Self.protocolNumber)
        sendDescriptor = socket(domain, type, Self.protocolNumber)
        guard receiveDescriptor >= 0, sendDescriptor >= 0 else {
            let code = errno
            close(receiveDescriptor)
            close(sendDescriptor)
            throw VRRPSystemError("raw socket for VRRP (needs CAP_NET_RAW)", errno: code)
        }
        do {
            try configure(source: source)
        } catch {
            close(receiveDescriptor)
            close(sendDescriptor)
            throw error
        }
    }

    deinit {
        close(receiveDescriptor)
        close(sendDescriptor)
    }

    public var multicastGroup: IPAddress { family == .v4 ? Self.ipv4Group : Self.ipv6Group }

    private func configure(source: IPAddress) throws {
        for fd in [receiveDescriptor, sendDescriptor] {
            try setOption(fd, SOL_SOCKET, SO_BINDTODEVICE, Array(interface.name.utf8) + [0], "bind to \(interface.name)")
        }
        try bindSender(to: source)
        if family == .v4 {
            let IPPROTO_IP = Int32(Glibc.IPPROTO_IP)
            try setOption(sendDescriptor, IPPROTO_IP, IP_TTL, Int32(255), "TTL")
            try setOption(sendDescriptor, IPPROTO_IP, IP_MULTICAST_TTL, Int32(255), "multicast TTL")
            try setOption(sendDescriptor, IPPROTO_IP, IP_MULTICAST_LOOP, Int32(0), "multicast loop")
            var outgoing = ip_mreqn()
            outgoing.imr_ifindex = interface.index
            try setOption(sendDescriptor, IPPROTO_IP, IP_MULTICAST_IF, outgoing, "multicast interface")
            var membership = ip_mreqn()
            membership.imr_ifindex = interface.index
            withUnsafeMutableBytes(of: &membership.imr_multiaddr) { $0.copyBytes(from: Self.ipv4Group.bytes) }
            try setOption(receiveDescriptor, IPPROTO_IP, IP_ADD_MEMBERSHIP, membership, "join 224.0.0.18")
        } else {
            let ipv6 = Int32(IPPROTO_IPV6)
            try setOption(sendDescriptor, ipv6, IPV6_UNICAST_HOPS, Int32(255), "hop limit")
            try setOption(sendDescriptor, ipv6, IPV6_MULTICAST_HOPS, Int32(255), "multicast hop limit")
            try setOption(sendDescriptor, ipv6, IPV6_MULTICAST_LOOP, Int32(0), "multicast loop")
            try setOption(sendDescriptor, ipv6, IPV6_MULTICAST_IF, Int32(interface.index), "multicast interface")
            try setOption(receiveDescriptor, ipv6, IPV6_RECVHOPLIMIT, Int32(1), "receive hop limit")
            try setOption(receiveDescriptor, ipv6, IPV6_RECVPKTINFO, Int32(1), "receive destination")
            var membership = ipv6_mreq()
            membership.ipv6mr_interface = UInt32(interface.index)
            withUnsafeMutableBytes(of: &membership.ipv6mr_multiaddr) { $0.copyBytes(from: Self.ipv6Group.bytes) }
            try setOption(receiveDescriptor, ipv6, IPV6_JOIN_GROUP, membership, "join ff02::12")
        }
    }

    /// An IPv6 link-local address is unusable while duplicate address detection runs (about
    /// a second after the link comes up, as at boot): wait for it, at most 5 seconds.
    private func bindSender(to source: IPAddress) throws {
        for _ in 0..<50 {
            let bound = source.withSocketAddress(scope: interface.index) { bind(sendDescriptor, $0, $1) }
            if bound == 0 { return }
            guard errno == EADDRNOTAVAIL, family == .v6 else { break }
            usleep(100_000)
        }
        throw VRRPSystemError("bind VRRP sender to \(source)", errno: errno)
    }

    public func send(_ message: [UInt8], to destination: IPAddress) throws {
        let sent = message.withUnsafeBytes { bytes in
            destination.withSocketAddress(scope: interface.index) { address, length in
                sendto(sendDescriptor, bytes.baseAddress, bytes.count, 0, address, length)
            }
        }
        guard sent == message.count else { throw VRRPSystemError("send VRRP advertisement to \(destination)", errno: errno) }
    }

    /// The next pending datagram. IPv4 raw sockets deliver the IP header, which carries TTL
    /// and addresses; for IPv6 they come as ancillary data.
    public func receive() -> Reception {
        var buffer = [UInt8](repeating: 0, count: 2048)
        var source = sockaddr_storage()
        var hopLimit: Int32 = -1
        var destination = [UInt8](repeating: 0, count: 16)
        let count = buffer.withUnsafeMutableBytes { bytes in
            cvrrp_receive(receiveDescriptor, bytes.baseAddress, bytes.count, &source, &hopLimit, &destination)
        }
        guard count >= 0 else { return .nothingPending }
        let datagram = buffer[0..<count]
        if family == .v4 {
            guard let (header, payload) = IPv4Header.parse(datagram) else { return .malformed }
            return .datagram(Received(payload: Array(payload), source: header.source,
                                      destination: header.destination, ttl: Int(header.ttl)))
        }
        let sender = withUnsafePointer(to: &source) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { IPAddress(socketAddress: $0) }
        }
        guard let sender, let destination = IPAddress(bytes: destination) else { return .malformed }
        return .datagram(Received(payload: Array(datagram), source: sender, destination: destination, ttl: Int(hopLimit)))
    }
}

/// setsockopt with a value of any plain type, throwing a message that names the option.
func setOption<Value>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Value, _ what: String) throws {
    var value = value
    let result = withUnsafeBytes(of: &value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
    guard result == 0 else { throw VRRPSystemError("socket option \(what)", errno: errno) }
}

func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ bytes: [UInt8], _ what: String) throws {
    let result = bytes.withUnsafeBytes { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
    guard result == 0 else { throw VRRPSystemError("socket option \(what)", errno: errno) }
}
