import NIOCore

/// Where the control socket listens (`-C`): pen's `port`, `host:port` or a Unix socket path.
/// TCP is unauthenticated, so a bare port means 127.0.0.1, and an address off loopback is
/// only taken with a `control_acl` list that restricts it (`checkProtected`), at start and
/// after every change.
extension Endpoint {
    /// Where `penha status` and `penha ctl` look when not told.
    public static let defaultControlPath = "/run/penha/penha.sock"

    /// The rule for `-C` and `penha ctl`: all digits is a port (on 127.0.0.1), text with a
    /// ':' and no '/' is host:port, anything else is a Unix socket path, a relative one from
    /// the working directory. A bare IPv4 address is refused, as a host:port missing its port.
    public static func controlAddress(_ text: String) throws -> Endpoint {
        guard !text.isEmpty else { throw ConfigurationError("the control address is empty") }
        if text.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let port = Int(text) else { throw ConfigurationError("bad port '\(text)': not within 1-65535") }
            return .inet(host: "127.0.0.1", port: try validPort(port, in: text))
        }
        if text.contains("/") || !text.contains(":") {
            if (try? SocketAddress(ipAddress: text, port: 0)) != nil {
                throw ConfigurationError("bad control address '\(text)': expected host:port")
            }
            return .unix(path: text)
        }
        let (host, port) = try parseHostPort(text, what: "control address")
        let address = host == "localhost" ? "127.0.0.1" : host
        guard (try? SocketAddress(ipAddress: address, port: port)) != nil else {
            throw ConfigurationError("control address '\(text)' needs an IP address, not a host name")
        }
        return .inet(host: address, port: port)
    }

    /// Refuses a TCP control port off loopback unless `control_acl` names a list with entries:
    /// anyone who reaches the port could otherwise reconfigure the balancer.
    public func checkProtected(by configuration: Configuration) throws {
        guard case .inet(let host, let port) = self, let address = try? SocketAddress(ipAddress: host, port: port),
              !Self.isLoopback(address), configuration.accessLists.lists[configuration.controlACL].isEmpty else {
            return
        }
        throw ConfigurationError("the control port \(self) is off loopback and unauthenticated: it needs control_acl "
                                 + "naming a list with entries (acl 1 permit ADDRESS, control_acl 1)")
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let v4): return UInt32(bigEndian: v4.address.sin_addr.s_addr) >> 24 == 127
        case .v6: return address.ipAddress == "::1"
        case .unixDomainSocket: return false
        }
    }
}
