import CNetlinkRoute
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// What the rtnetlink adapters share (`VirtualAddresses`, `KernelRoutes`): a connected
/// libnl-route socket, and an address in libnl's form.
enum NetlinkRoute {
    static func connectedSocket() throws -> OpaquePointer {
        guard let socket = nl_socket_alloc() else { throw VRRPSystemError("netlink: cannot allocate a socket") }
        let result = nl_connect(socket, NETLINK_ROUTE)
        guard result == 0 else {
            nl_socket_free(socket)
            throw VRRPSystemError("netlink: \(errorText(result))")
        }
        return socket
    }

    /// The caller puts it (`nl_addr_put`).
    static func address(_ address: VirtualAddress) throws -> OpaquePointer {
        let built = address.address.bytes.withUnsafeBytes { bytes in
            nl_addr_build(family(address), bytes.baseAddress, bytes.count)
        }
        guard let built else { throw VRRPSystemError("netlink: out of memory") }
        nl_addr_set_prefixlen(built, Int32(address.prefixLength))
        return built
    }

    static func family(_ address: VirtualAddress) -> Int32 { address.address.family == .v4 ? AF_INET : AF_INET6 }

    static func errorText(_ result: Int32) -> String { String(cString: nl_geterror(result)) }
}
