import BalancerCore
import CEngine
import NIOCore
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// The engine's socket calls that are more than one line: listening sockets, the options
/// the relay sets, and addresses as accept returns them.
enum Listener {
    struct Bound {
        let descriptor: Int32
        let address: SocketAddress?
    }

    static func inet(_ address: SocketAddress, backlog: Int, freeBind: Bool, noDelay: Bool) throws -> Bound {
        let family = address.protocol == .inet6 ? AF_INET6 : AF_INET
        let descriptor = try Socket.make(family: family)
        do {
            try Socket.set(descriptor, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)")
            if freeBind {
                // A backup listens on the virtual address before it is on the interface, so it
                // serves the moment it becomes master. (IP level: Linux applies it to IPv6 too.)
                try Socket.set(descriptor, Int32(IPPROTO_IP), IP_FREEBIND, 1, "setsockopt(IP_FREEBIND)")
            }
            // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one setsockopt
            // instead of one per connection.
            setNoDelay(descriptor, noDelay)
            try address.withSockAddr { pointer, length in
                guard bind(descriptor, pointer, socklen_t(length)) == 0 else { throw IOError(errnoCode: errno, reason: "bind") }
            }
            guard listen(descriptor, Int32(clamping: backlog)) == 0 else { throw IOError(errnoCode: errno, reason: "listen") }
            return Bound(descriptor: descriptor, address: Socket.localAddress(descriptor))
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// The path is claimed first (`ControlServer.claim`): a stale socket is gone, a live one refused.
    static func unix(_ path: String, backlog: Int) throws -> Bound {
        let address = try SocketAddress(unixDomainSocketPath: path)
        let descriptor = try Socket.make(family: AF_UNIX)
        do {
            try address.withSockAddr { pointer, length in
                guard bind(descriptor, pointer, socklen_t(length)) == 0 else { throw IOError(errnoCode: errno, reason: "bind") }
            }
            guard listen(descriptor, Int32(clamping: backlog)) == 0 else { throw IOError(errnoCode: errno, reason: "listen") }
            return Bound(descriptor: descriptor, address: address)
        } catch {
            close(descriptor)
            throw error
        }
    }

    static func setNoDelay(_ descriptor: Int32, _ enabled: Bool) {
        _ = try? Socket.set(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, enabled ? 1 : 0, "setsockopt(TCP_NODELAY)")
    }
}

enum Socket {
    static let streamFlags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    static let acceptFlags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    /// A non-blocking, close-on-exec stream socket.
    static func make(family: Int32) throws -> Int32 {
        let descriptor = socket(family, streamFlags, 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        return descriptor
    }

    static func set(_ descriptor: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ what: String) throws {
        var value = value
        guard setsockopt(descriptor, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw IOError(errnoCode: errno, reason: what)
        }
    }

    /// Closes with RST instead of FIN (SO_LINGER 0): what a reset on the other side is passed on as.
    static func reset(_ descriptor: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        _ = penha_close(descriptor)
    }

    /// Closes, with RST when `reset`; nothing for -1.
    static func close(_ descriptor: Int32, reset: Bool) {
        guard descriptor >= 0 else { return }
        if reset { Self.reset(descriptor) } else { _ = penha_close(descriptor) }
    }

    /// A pending connect's outcome: 0 or its errno.
    static func pendingError(_ descriptor: Int32) -> Int32 {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &code, &length) == 0 else { return errno }
        return code
    }

    static func localAddress(_ descriptor: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard result == 0 else { return nil }
        return try? SocketAddress(storage)
    }
}

/// A peer's address as accept4 returned it, without a system call more.
struct PeerAddress {
    var storage = sockaddr_storage()

    /// What the client table keys on: the IP address, or `local` for a Unix-socket client.
    var clientKey: ClientKey {
        withUnsafeBytes(of: storage) { raw in
            switch Int32(storage.ss_family) {
            case AF_INET:
                return ClientKey(ipv4: UInt32(bigEndian: raw.load(as: sockaddr_in.self).sin_addr.s_addr))
            case AF_INET6:
                return ClientKey(bytes: Self.bytes(of: raw.load(as: sockaddr_in6.self).sin6_addr)) ?? .local
            default:
                return .local
            }
        }
    }

    /// An IPv6 address's 16 bytes, in network order.
    private static func bytes(of address: in6_addr) -> [UInt8] {
        withUnsafeBytes(of: address) { Array($0) }
    }

    /// `192.0.2.1:80`, `[2001:db8::1]:80` or `local`, as `Endpoint` writes it: for log lines.
    /// Tests hold it to `Endpoint`'s text.
    var text: String { connectionPeer.text }

    /// What `BalancerState.connected` keeps: an IPv4 client as numbers, its text written
    /// only when `connection N` asks (through `SocketAddress`, inet_ntop and `Endpoint` the
    /// text cost 5.5k instructions, a third of a relayed connection: bench/RESULTS.md).
    var connectionPeer: ConnectionPeer {
        guard Int32(storage.ss_family) == AF_INET else {
            guard let address = try? SocketAddress(storage) else { return .text("local") }
            return .text(Endpoint.describe(address))
        }
        let address = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }
        return .ipv4(address: UInt32(bigEndian: address.sin_addr.s_addr), port: UInt16(bigEndian: address.sin_port))
    }
}

extension PeerAddress {
    /// The local end of `descriptor` (getsockname), for a PROXY protocol header.
    static func local(of descriptor: Int32) -> PeerAddress {
        var address = PeerAddress()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        if result != 0 { address.storage.ss_family = sa_family_t(AF_UNSPEC) }
        return address
    }

    /// The address a PROXY protocol header carries for it; nil for a Unix socket.
    var proxyEndpoint: ProxyEndpoint? {
        withUnsafeBytes(of: storage) { raw in
            switch Int32(storage.ss_family) {
            case AF_INET:
                let address = raw.load(as: sockaddr_in.self)
                return ProxyEndpoint(address: IPAddress(ipv4: UInt32(bigEndian: address.sin_addr.s_addr)),
                                     port: UInt16(bigEndian: address.sin_port))
            case AF_INET6:
                let address = raw.load(as: sockaddr_in6.self)
                return IPAddress(bytes: Self.bytes(of: address.sin6_addr))
                    .map { ProxyEndpoint(address: $0, port: UInt16(bigEndian: address.sin6_port)) }
            default:
                return nil
            }
        }
    }

    /// The client a PROXY protocol header names, in place of the upstream balancer's address.
    init(_ endpoint: ProxyEndpoint) {
        if let ipv4 = endpoint.address.ipv4 {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = endpoint.port.bigEndian
            address.sin_addr.s_addr = ipv4.bigEndian
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
        } else {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = endpoint.port.bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: endpoint.address.bytes) }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
        }
    }
}

extension SocketAddress {
    /// An address as accept4 or getsockname fill it in.
    init(_ storage: sockaddr_storage) throws {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            self = SocketAddress(address, host: "")
        case AF_INET6:
            let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            self = SocketAddress(address, host: "")
        default:
            throw IOError(errnoCode: EAFNOSUPPORT, reason: "an address that is not IP")
        }
    }
}
