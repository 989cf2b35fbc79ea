import BalancerCore
import NIOCore

/// Host names looked up: blocking, so done at start and on reconfiguration off the event
/// loop, never per connection, and never in the pure core.
extension ServerSpec {
    /// Resolves the host (a blocking lookup: done at start and on reconfiguration, never per connection).
    public func resolve() throws -> Server {
        server(at: try Self.resolve(host: host, port: port))
    }

    /// A blocking lookup of a server's host.
    public static func resolve(host: String, port: Int) throws -> SocketAddress {
        do {
            return try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            throw ConfigurationError("cannot resolve server host '\(host)'")
        }
    }
}

extension Configuration {
    /// The pure balancer state this configuration starts with (host names resolved).
    public func makeState() throws -> BalancerState {
        let table = ServerTable(servers: try servers.map { try $0.resolve() },
                                emergency: try emergency?.resolve(), abuse: try abuse?.resolve())
        return BalancerState(configuration: self, servers: table, clients: ClientTable(capacity: clientsMax))
    }
}
