import VRRPCore
import CVRRPSockets

#if canImport(Glibc)
import Glibc
#endif

/// A network interface as VRRP needs it: its index, link state, hardware address and IP
/// addresses, read from the kernel each time they are asked for (they change under us).
public struct NetworkInterface: Sendable {
    public let name: String
    public let index: Int32

    public init(name: String) throws {
        guard !name.isEmpty, name.utf8.count < Int(IFNAMSIZ) else {
            throw VRRPSystemError("bad interface name '\(name)'")
        }
        let index = if_nametoindex(name)
        guard index != 0 else { throw VRRPSystemError("no interface '\(name)'") }
        self.name = name
        self.index = Int32(index)
    }

    /// Up and with carrier: an instance on an interface that is not goes to Fault.
    public var isUp: Bool {
        guard let flags = try? request(UInt(SIOCGIFFLAGS), { $0.ifr_ifru.ifru_flags }) else { return false }
        let wanted = Int16(IFF_UP) | Int16(IFF_RUNNING)
        return flags & wanted == wanted
    }

    /// The 6-byte Ethernet address, for gratuitous ARP and neighbour advertisements.
    public func hardwareAddress() throws -> [UInt8] {
        try request(UInt(SIOCGIFHWADDR)) { request in
            withUnsafeBytes(of: request.ifr_ifru.ifru_hwaddr.sa_data) { [UInt8]($0[0..<6]) }
        }
    }

    /// The interface's addresses of one family, in the kernel's order.
    public func addresses(_ family: IPAddress.Family) -> [IPAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var result: [IPAddress] = []
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            guard let socketAddress = entry.pointee.ifa_addr, String(cString: entry.pointee.ifa_name) == name,
                  let address = IPAddress(socketAddress: socketAddress), address.family == family else { continue }
            result.append(address)
        }
        return result
    }

    /// The address VRRP speaks from and breaks ties with: the first IPv4 address that is not
    /// a virtual one, or for IPv6 the link-local address (RFC 5798 section 5.1.2.1).
    public func primaryAddress(_ family: IPAddress.Family, excluding virtualAddresses: [IPAddress]) -> IPAddress? {
        addresses(family).first { address in
            !virtualAddresses.contains(address) && (family == .v4 || address.isLinkLocal)
        }
    }

    private func request<Value>(_ code: UInt, _ read: (ifreq) -> Value) throws -> Value {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw VRRPSystemError("socket", errno: errno) }
        defer { close(fd) }
        var request = ifreq()
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { bytes in
            for (offset, byte) in name.utf8.enumerated() { bytes[offset] = byte }
        }
        guard ioctl(fd, code, &request) == 0 else { throw VRRPSystemError("interface \(name)", errno: errno) }
        return read(request)
    }
}

/// A failed system call or a missing system resource, with the reason in words.
public struct VRRPSystemError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    public init(_ what: String, errno code: Int32) {
        self.description = "\(what): \(String(cString: strerror(code)))"
    }
}

extension IPAddress {
    /// Reads an AF_INET or AF_INET6 socket address; nil for any other family.
    init?(socketAddress: UnsafePointer<sockaddr>) {
        switch Int32(socketAddress.pointee.sa_family) {
        case AF_INET:
            let bytes = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
            }
            self.init(bytes: bytes)
        case AF_INET6:
            let bytes = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
            }
            self.init(bytes: bytes)
        default:
            return nil
        }
    }

    /// fe80::/10.
    var isLinkLocal: Bool { family == .v6 && bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 }

    /// Calls `body` with this address as a socket address with `port` (0 for raw sockets)
    /// and, for IPv6, the interface as scope (needed for link-local and multicast).
    func withSocketAddress<Result>(scope: Int32 = 0, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        if family == .v4 {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            // From the words, not `bytes`: this runs for every advert sent.
            address.sin_addr.s_addr = UInt32(truncatingIfNeeded: low).bigEndian
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_scope_id = UInt32(scope)
        withUnsafeMutableBytes(of: &address.sin6_addr) { address in
            address.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
            address.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }
}
