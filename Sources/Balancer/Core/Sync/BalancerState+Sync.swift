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

    /// Slots read in one part of a full copy: at most ~0.2 ms under the lock, where the whole
    /// table of a million clients held it ~170 ms (release build; sorting the million, outside
    /// the lock, takes ~70 ms).
    public static let snapshotPart = 4096

    /// The whole client table for a full copy, oldest first (so the receiver's use order ends
    /// as the sender's), read a part at a time by `part`, which returns the changes in a
    /// range of slots, nil past the table (`clientChanges(slots:)`, run under the lock the data
    /// path takes, so that the lock is held for one part at a time). The data path may change
    /// the table between parts; what it changes is journaled and sent after the copy, and a
    /// client that moved to another slot meanwhile may come twice, which the receiver's last
    /// writer wins rule settles. Slots keep their numbers between parts as long as the table is
    /// not resized, which only a command does, on the event loop that reads the parts.
    public static func clientSnapshot(reading part: (Range<Int>) -> [SyncChange]?) -> [SyncChange] {
        var changes: [SyncChange] = []
        var start = 0
        // Bounded: each turn moves on by a part, and the table has at most `Limits.clients` slots.
        while let changesInPart = part(start..<start + snapshotPart) {
            changes += changesInPart
            start += snapshotPart
        }
        changes.sort { $0.lastUsed < $1.lastUsed }
        return changes
    }

    /// The client table's entries in `slots` that name a server, as changes; nil when the
    /// range starts past the table.
    public func clientChanges(slots: Range<Int>) -> [SyncChange]? {
        guard slots.lowerBound < clients.count else { return nil }
        let servers = servers.servers
        return slots.clamped(to: 0..<clients.count).compactMap { slot in
            clients.entry(slot: slot).flatMap { Self.change($0, servers: servers) }
        }
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
            if clients.adoptRemote(entry.client, server: server, lastUsed: lastUsed, now: now, tracking: configuration.trackingTime) { applied += 1 }
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
