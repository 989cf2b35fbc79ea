import NIOCore
@testable import Balancer
@testable import BalancerCore

/// Virtual time for the pure core: seconds from an arbitrary origin.
func at(_ seconds: Double) -> NIODeadline {
    .uptimeNanoseconds(UInt64(1_000_000_000 + seconds * 1_000_000_000))
}

func client(_ last: UInt8) -> ClientKey {
    ClientKey(ipv4: 0x7F00_0000 | UInt32(last))
}

/// A state with `count` servers on 127.0.0.1, ports 9000 on, and the emergency server on
/// port 9999; `configure` sets each server's configuration.
func makeState(_ count: Int, selection: Selection = Selection(), clients: Int = 16,
               configure: (Int, inout ServerSpec) -> Void = { _, _ in }) -> BalancerState {
    let specs = (0..<count).map { index -> ServerSpec in
        var spec = ServerSpec(host: "127.0.0.1", port: 9000 + index)
        configure(index, &spec)
        return spec
    }
    var configuration = Configuration(listen: .inet(host: "127.0.0.1", port: 0), servers: specs)
    configuration.emergency = ServerSpec(host: "127.0.0.1", port: 9999)
    configuration.selection = selection
    return makeState(configuration, clients: clients)
}

/// The state `configuration` starts with, its hosts taken as IP addresses.
func makeState(_ configuration: Configuration, clients: Int = 16) -> BalancerState {
    BalancerState(configuration: configuration, clients: ClientTable(capacity: clients)) {
        try! SocketAddress(ipAddress: $0.host, port: $0.port)
    }
}

extension Selector {
    /// The first server for a client among the state's servers.
    mutating func initialServer(by selection: Selection, for client: ClientKey, tracked: Int?, in state: BalancerState,
                                now: NIODeadline) -> Int? {
        initialServer(by: selection, for: client, tracked: tracked, configured: state.configuration.servers,
                      servers: state.servers.servers, now: now)
    }
}
