import BalancerCore
import NIOCore

/// Host names looked up: blocking, so done at start and on reconfiguration off the event
/// loop, never per connection, and never in the pure core.
extension ServerSpec {
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
        try BalancerState(configuration: self, clients: ClientTable(capacity: clientsMax)) {
            try ServerSpec.resolve(host: $0.host, port: $0.port)
        }
    }
}
