import NIOCore

/// Where penha listens or is reached (the listen address, the control socket, logd): an IP
/// address with a port, or a Unix socket path. The two parse rules differ (`listenAddress`,
/// `controlAddress`); the value and the way it is written are one. The one way penha writes
/// where a connection comes from or goes to, too: `192.0.2.1:80`, `[2001:db8::1]:80`
/// (brackets for IPv6 everywhere), `local` for a Unix socket.
public enum Endpoint: Equatable, Sendable, CustomStringConvertible {
    case inet(host: String, port: Int)
    case unix(path: String)

    public var port: Int? {
        if case .inet(_, let port) = self { return port }
        return nil
    }

    /// The Unix socket's path; nil for an IP address.
    public var socketPath: String? {
        if case .unix(let path) = self { return path }
        return nil
    }

    /// The same address with the port actually bound, when the system chose it.
    public func withPort(_ bound: Int?) -> Endpoint {
        guard case .inet(let host, _) = self, let bound else { return self }
        return .inet(host: host, port: bound)
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
        case .inet(let host, let port): return Self.describe(host: host, port: port)
        case .unix(let path): return path
        }
    }

    public static func describe(_ address: SocketAddress?) -> String {
        switch address {
        case .v4, .v6: return describe(host: address?.ipAddress ?? "?", port: address?.port ?? 0)
        case .unixDomainSocket: return "local"
        case nil: return "?"
        }
    }

    /// A host as given (a name, an IPv4 or an IPv6 address) with its port.
    public static func describe(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
