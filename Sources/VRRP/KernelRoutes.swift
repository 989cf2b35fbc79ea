import CNetlinkRoute
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// Adds and deletes host routes in a routing table of penha's own through rtnetlink
/// (libnl-route-3), as `ip route add PREFIX dev lo table N proto 200` and `ip route del`
/// would: the routes the host's BGP daemon imports from that table and announces (`bgp`).
/// Nothing routes with the table; the route is only a record the daemon reads. penha's routes
/// carry a protocol of their own, so it never replaces nor deletes a route it did not add.
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

    /// The routes' protocol (`proto 200` in `ip route`): no routing daemon's, so BIRD's `learn`
    /// and FRR's import take them, and a delete by it touches no one else's route.
    public static let protocolNumber: UInt8 = 200

    /// Adding a route penha has there already (this process, the one it took over from with
    /// `penha upgrade`, or one that died) keeps it as it is: never a moment without it. A
    /// route of someone else's for the same prefix in the table is an error, and stays as it is.
    public func add(_ prefix: VirtualAddress, table: Int) throws {
        let added = try change(prefix, table: table) { rtnl_route_add($0, $1, NLM_F_CREATE | NLM_F_EXCL) }
        guard added == -NLE_EXIST else { return try check(added, "add", prefix, table) }
        guard try hasOwnRoute(prefix, table: table) else {
            throw VRRPSystemError("netlink: table \(table) has a route for \(prefix) that penha did not add; it is left alone")
        }
    }

    /// Deleting a route that is not there, or is not penha's, succeeds and changes nothing.
    public func remove(_ prefix: VirtualAddress, table: Int) throws {
        let result = try change(prefix, table: table) { rtnl_route_delete($0, $1, 0) }
        try check(result == -NLE_OBJ_NOTFOUND ? 0 : result, "delete", prefix, table)
    }

    private func check(_ result: Int32, _ verb: String, _ prefix: VirtualAddress, _ table: Int) throws {
        guard result == 0 else {
            throw VRRPSystemError("netlink: \(verb) route \(prefix) table \(table): \(NetlinkRoute.errorText(result))")
        }
    }

    /// Whether `table` has a route to `prefix` of penha's protocol, as `ip route show table N
    /// proto 200` would list it. Read only when an add finds the prefix taken (at start): the
    /// routes of the prefix's family, every table, once.
    private func hasOwnRoute(_ prefix: VirtualAddress, table: Int) throws -> Bool {
        var cache: OpaquePointer?
        let read = rtnl_route_alloc_cache(socket, NetlinkRoute.family(prefix), 0, &cache)
        guard read == 0, let cache else { throw VRRPSystemError("netlink: reading the routes: \(NetlinkRoute.errorText(read))") }
        defer { nl_cache_free(cache) }
        let destination = try NetlinkRoute.address(prefix)
        defer { nl_addr_put(destination) }
        // Bounded by the cache, which holds what the kernel listed.
        var next = nl_cache_get_first(cache)
        while let route = next {
            if rtnl_route_get_table(route) == UInt32(truncatingIfNeeded: table), rtnl_route_get_protocol(route) == Self.protocolNumber,
               let found = rtnl_route_get_dst(route), nl_addr_cmp(found, destination) == 0 {
                return true
            }
            next = nl_cache_get_next(route)
        }
        return false
    }

    /// The request for penha's route to `prefix` in `table`, given to `operation`; its result.
    private func change(_ prefix: VirtualAddress, table: Int,
                        _ operation: (OpaquePointer, OpaquePointer) -> Int32) throws -> Int32 {
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
        rtnl_route_set_protocol(request, Self.protocolNumber)
        guard rtnl_route_set_dst(request, destination) == 0 else { throw VRRPSystemError("netlink: bad prefix \(prefix)") }
        return operation(socket, request)
    }
}
