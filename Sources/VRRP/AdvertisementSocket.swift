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
        /// The same as the datagram received before it: a master sends the same advertisement
        /// every interval, so the caller may take it for what it made of that one, without
        /// decoding it again (measured: decoding was most of an idle backup's CPU at 10 ms).
        case repeated
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
    /// Used by one thread only (the instance's): the datagram being received, and the one
    /// before it, each as a key (below) of `keyLength` bytes.
    private var buffer = [UInt8](repeating: 0, count: AdvertisementSocket.bufferSize)
    private var previous = [UInt8](repeating: 0, count: AdvertisementSocket.bufferSize)
    private var previousLength = -1
    /// Room after the datagram for what else the key holds (IPv6 source, destination, hop limit).
    private static let bufferSize = 2048
    private static let largestDatagram = bufferSize - 64
    private static let ipv4HeaderLength = 20

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

    /// Forgets the previous datagram, so that the next one is reported in full even if it is the
    /// same: the caller's rules for it have changed.
    public func forgetPrevious() {
        previousLength = -1
    }

    /// The next pending datagram. IPv4 raw sockets deliver the IP header, which carries TTL
    /// and addresses; for IPv6 they come as ancillary data.
    public func receive() -> Reception {
        var source = sockaddr_storage()
        var hopLimit: Int32 = -1
        var destination: (UInt64, UInt64) = (0, 0)
        let count = buffer.withUnsafeMutableBytes { bytes in
            withUnsafeMutableBytes(of: &destination) { destinationBytes in
                cvrrp_receive(receiveDescriptor, bytes.baseAddress, Self.largestDatagram, &source, &hopLimit,
                              destinationBytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        guard count >= 0 else { return .nothingPending }
        if isRepeat(count: count, source: source, destination: destination, hopLimit: hopLimit) { return .repeated }
        let datagram = buffer[0..<count]
        if family == .v4 {
            guard let (header, payload) = IPv4Header.parse(datagram) else { return .malformed }
            return .datagram(Received(payload: Array(payload), source: header.source,
                                      destination: header.destination, ttl: Int(header.ttl)))
        }
        let sender = withUnsafePointer(to: &source) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { IPAddress(socketAddress: $0) }
        }
        let destinationBytes = withUnsafeBytes(of: destination) { [UInt8]($0) }
        guard let sender, let destination = IPAddress(bytes: destinationBytes) else { return .malformed }
        return .datagram(Received(payload: Array(datagram), source: sender, destination: destination, ttl: Int(hopLimit)))
    }

    /// Whether the datagram in `buffer` is the previous one again; remembers it if not. The key
    /// is the datagram with the IPv4 fields that differ between two sends of one message zeroed
    /// (identification, header checksum; TTL and addresses stay), and for IPv6 what the kernel
    /// said besides: source, destination, hop limit. Raw pointers: this runs for every advert.
    private func isRepeat(count: Int, source: sockaddr_storage, destination: (UInt64, UInt64), hopLimit: Int32) -> Bool {
        var length = count
        buffer.withUnsafeMutableBytes { bytes in
            guard family == .v6 else {
                guard count >= Self.ipv4HeaderLength else { return }
                bytes.storeBytes(of: 0, toByteOffset: 4, as: UInt16.self)   // identification
                bytes.storeBytes(of: 0, toByteOffset: 10, as: UInt16.self)  // header checksum
                return
            }
            func append(_ part: UnsafeRawBufferPointer) {
                (bytes.baseAddress! + length).copyMemory(from: part.baseAddress!, byteCount: part.count)
                length += part.count
            }
            withUnsafeBytes(of: source) { append(UnsafeRawBufferPointer(rebasing: $0[0..<MemoryLayout<sockaddr_in6>.size])) }
            withUnsafeBytes(of: destination) { append($0) }
            withUnsafeBytes(of: hopLimit) { append($0) }
        }
        let keyLength = length
        let same = keyLength == previousLength && buffer.withUnsafeBytes { current in
            previous.withUnsafeBytes { memcmp(current.baseAddress!, $0.baseAddress!, keyLength) == 0 }
        }
        if !same {
            previous.withUnsafeMutableBytes { target in
                buffer.withUnsafeBytes { target.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: keyLength) }
            }
            previousLength = keyLength
        }
        return same
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
