import CNetlinkRoute
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// Adds and deletes host routes in a routing table of penha's own through rtnetlink
/// (libnl-route-3), as `ip route add PREFIX dev lo table N proto static` and `ip route del`
/// would: the routes the host's BGP daemon imports from that table and announces (`bgp`).
/// Nothing routes with the table; the route is only a record the daemon reads.
public final class KernelRoutes {
    private let socket: OpaquePointer
    /// The loopback's index: the routes need an interface, and lo is in every namespace.
    private let loopback: Int32

    public init() throws {
        let loopback = if_nametoindex("lo")
        guard loopback > 0 else { throw VRRPSystemError("netlink: no loopback interface 'lo'") }
        self.loopback = Int32(loopback)
        socket = try NetlinkRoute.connectedSocket()
    }

    deinit {
        nl_socket_free(socket)
    }

    /// Adding a route that is already there succeeds (it is replaced).
    public func add(_ prefix: VirtualAddress, table: Int) throws {
        try change(prefix, table: table, "add") { rtnl_route_add($0, $1, NLM_F_CREATE | NLM_F_REPLACE) }
    }

    /// Deleting a route that is not there succeeds.
    public func remove(_ prefix: VirtualAddress, table: Int) throws {
        try change(prefix, table: table, "delete") { socket, request in
            let result = rtnl_route_delete(socket, request, 0)
            return result == -NLE_OBJ_NOTFOUND ? 0 : result
        }
    }

    private func change(_ prefix: VirtualAddress, table: Int, _ verb: String,
                        _ operation: (OpaquePointer, OpaquePointer) -> Int32) throws {
        guard let table = UInt32(exactly: table) else { throw VRRPSystemError("netlink: no routing table \(table)") }
        guard let request = rtnl_route_alloc() else { throw VRRPSystemError("netlink: out of memory") }
        defer { rtnl_route_put(request) }
        let destination = try NetlinkRoute.address(prefix)
        defer { nl_addr_put(destination) }
        guard let hop = rtnl_route_nh_alloc() else { throw VRRPSystemError("netlink: out of memory") }
        rtnl_route_nh_set_ifindex(hop, loopback)
        // The route owns the hop from here (rtnl_route_put frees it).
        rtnl_route_add_nexthop(request, hop)
        _ = rtnl_route_set_family(request, UInt8(NetlinkRoute.family(prefix)))
        rtnl_route_set_table(request, table)
        _ = rtnl_route_set_type(request, UInt8(RTN_UNICAST))
        rtnl_route_set_scope(request, UInt8(RT_SCOPE_LINK.rawValue))
        // Not "kernel" nor "bird": routing daemons learn routes of other protocols (BIRD's `learn`).
        rtnl_route_set_protocol(request, UInt8(RTPROT_STATIC))
        guard rtnl_route_set_dst(request, destination) == 0 else { throw VRRPSystemError("netlink: bad prefix \(prefix)") }
        let result = operation(socket, request)
        guard result == 0 else {
            throw VRRPSystemError("netlink: \(verb) route \(prefix) table \(table): \(NetlinkRoute.errorText(result))")
        }
    }
}
