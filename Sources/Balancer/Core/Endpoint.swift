import NIOCore

/// The one way penha writes where a connection comes from or goes to, in logs and answers:
/// `192.0.2.1:80`, `[2001:db8::1]:80` (brackets for IPv6 everywhere), `local` for a Unix socket.
public enum Endpoint {
    public static func describe(_ address: SocketAddress?) -> String {
        switch address {
        case .v4: return "\(address?.ipAddress ?? "?"):\(address?.port ?? 0)"
        case .v6: return "[\(address?.ipAddress ?? "?")]:\(address?.port ?? 0)"
        case .unixDomainSocket: return "local"
        case nil: return "?"
        }
    }
}
