import NIOCore
import VRRPCore

extension BalancerState {
    /// The client-table changes since the last call, servers named by address and port.
    public mutating func takeClientChanges() -> [SyncChange] {
        var changes: [SyncChange] = []
        let servers = servers.servers
        clients.drainChanges { entry in
            if let change = Self.change(entry, servers: servers) { changes.append(change) }
        }
        return changes
    }

    /// The whole client table, oldest first: a full copy for a peer.
    public func clientSnapshot() -> [SyncChange] {
        let servers = servers.servers
        return clients.byRecentUse.reversed().compactMap { Self.change($0.entry, servers: servers) }
    }

    /// A peer's entries applied to the client table (`ClientTable.adoptRemote`: last writer
    /// wins, a newer local client is never disturbed). A server is found by address and port;
    /// an entry naming a server this node does not have is skipped. Returns how many were taken.
    public mutating func applyRemote(_ entries: [SyncEntry], now: NIODeadline) -> Int {
        var indexOfServer: [SyncSettings.Address: Int] = [:]
        for (index, server) in servers.servers.enumerated() {
            let address = Self.address(of: server)
            if indexOfServer[address] == nil { indexOfServer[address] = index }
        }
        var applied = 0
        for entry in entries {
            guard let server = indexOfServer[entry.server] else { continue }
            let lastUsed = now - .milliseconds(Int64(entry.ageMilliseconds))
            if clients.adoptRemote(entry.client, server: server, lastUsed: lastUsed, now: now) { applied += 1 }
        }
        return applied
    }

    private static func change(_ entry: ClientTable.Entry, servers: [Server]) -> SyncChange? {
        guard let index = entry.server, servers.indices.contains(index), entry.key != .local else { return nil }
        return SyncChange(client: entry.key, server: address(of: servers[index]), lastUsed: entry.lastUsed)
    }

    private static func address(of server: Server) -> SyncSettings.Address {
        SyncSettings.Address(ip: ClientKey(server.address), port: server.address.port ?? 0)
    }
}
