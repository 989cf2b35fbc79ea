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

func makeServers(_ count: Int, configure: (Int, inout Server) -> Void = { _, _ in }) -> ServerTable {
    let servers = (0..<count).map { index -> Server in
        var server = Server(host: "127.0.0.1", port: 9000 + index,
                            address: try! SocketAddress(ipAddress: "127.0.0.1", port: 9000 + index))
        configure(index, &server)
        return server
    }
    let emergency = Server(host: "127.0.0.1", port: 9999, address: try! SocketAddress(ipAddress: "127.0.0.1", port: 9999))
    return ServerTable(servers: servers, emergency: emergency)
}
