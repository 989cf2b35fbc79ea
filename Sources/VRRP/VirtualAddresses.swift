import CNetlinkRoute
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// Adds and removes virtual addresses on an interface through rtnetlink (libnl-route-3),
/// as `ip address add/del` would.
public final class VirtualAddresses {
    private let socket: OpaquePointer

    public init() throws {
        socket = try NetlinkRoute.connectedSocket()
    }

    deinit {
        nl_socket_free(socket)
    }

    /// Adding an address that is already there succeeds (and keeps its label). `label`: an
    /// IPv4 address's (`ip addr` shows it), by which `remove` tells it from another's.
    public func add(_ address: VirtualAddress, to interface: NetworkInterface, label: String? = nil) throws {
        try change(address, on: interface, label: label) { socket, request in
            // No duplicate address detection: a VIP must answer the moment we are master.
            rtnl_addr_set_flags(request, UInt32(IFA_F_NODAD))
            let result = rtnl_addr_add(socket, request, NLM_F_CREATE | NLM_F_REPLACE)
            return result == -NLE_EXIST ? 0 : result
        }
    }

    /// Removing an address that is not there, or not with this label, succeeds.
    public func remove(_ address: VirtualAddress, from interface: NetworkInterface, label: String? = nil) throws {
        try change(address, on: interface, label: label) { socket, request in
            let result = rtnl_addr_delete(socket, request, 0)
            return result == -NLE_NOADDR || result == -NLE_OBJ_NOTFOUND ? 0 : result
        }
    }

    private func change(_ address: VirtualAddress, on interface: NetworkInterface, label: String?,
                        _ operation: (OpaquePointer, OpaquePointer) -> Int32) throws {
        guard let request = rtnl_addr_alloc() else { throw VRRPSystemError("netlink: out of memory") }
        defer { rtnl_addr_put(request) }
        let local = try NetlinkRoute.address(address)
        defer { nl_addr_put(local) }
        rtnl_addr_set_ifindex(request, interface.index)
        rtnl_addr_set_family(request, NetlinkRoute.family(address))
        rtnl_addr_set_prefixlen(request, Int32(address.prefixLength))
        guard rtnl_addr_set_local(request, local) == 0 else { throw VRRPSystemError("netlink: bad address \(address)") }
        if let label, rtnl_addr_set_label(request, label) != 0 { throw VRRPSystemError("netlink: bad label \(label)") }
        let result = operation(socket, request)
        guard result == 0 else {
            throw VRRPSystemError("netlink: \(address) on \(interface.name): \(NetlinkRoute.errorText(result))")
        }
    }
}
