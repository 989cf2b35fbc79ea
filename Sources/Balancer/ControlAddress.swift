import NIOCore

/// Where the control socket listens (`-C`): pen's `port`, `host:port` or a Unix socket path.
/// TCP is unauthenticated, so until `control_acl` exists (the ACL issue) it is only allowed
/// on loopback, and a bare port means 127.0.0.1.
public enum ControlAddress: Equatable, Sendable, CustomStringConvertible {
    case inet(host: String, port: Int)
    case unix(path: String)

    /// Where `penha status` and `penha ctl` look when not told.
    public static let defaultPath = "/run/penha/penha.sock"

    public static func parse(_ text: String) throws -> ControlAddress {
        if text.contains("/") { return .unix(path: text) }
        if let port = Int(text) { return .inet(host: "127.0.0.1", port: try validPort(port, in: text)) }
        let (host, port) = try parseHostPort(text, what: "control address")
        let address = host == "localhost" ? "127.0.0.1" : host
        guard let ip = try? SocketAddress(ipAddress: address, port: port), Self.isLoopback(ip) else {
            throw ConfigurationError("control address '\(text)' is not loopback: a TCP control port is "
                                     + "unauthenticated and needs control_acl, which is not implemented yet")
        }
        return .inet(host: address, port: port)
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let v4): return UInt32(bigEndian: v4.address.sin_addr.s_addr) >> 24 == 127
        case .v6: return address.ipAddress == "::1"
        case .unixDomainSocket: return false
        }
    }

    public var socketAddress: SocketAddress {
        get throws {
            switch self {
            case .inet(let host, let port): return try SocketAddress(ipAddress: host, port: port)
            case .unix(let path): return try SocketAddress(unixDomainSocketPath: path)
            }
        }
    }

    public var description: String {
        switch self {
        case .inet(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return path
        }
    }
}
