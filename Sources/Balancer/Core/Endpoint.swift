import NIOCore

/// The one way penha writes where a connection comes from or goes to, in logs and answers:
/// `192.0.2.1:80`, `[2001:db8::1]:80` (brackets for IPv6 everywhere), `local` for a Unix socket.
public enum Endpoint {
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
