import NIOCore

/// The balancer's state as it moves between two penha processes (`penha upgrade`): the client
/// table and the counters, as values for `HandoverMessage`, and back.
extension BalancerState {
    /// The client table, most recently used first, in frames a message can carry.
    public var handedOverClients: [[HandedOverClient]] {
        let clients = clients.byRecentUse.map { _, entry in
            HandedOverClient(key: entry.key, server: entry.server, lastUsed: entry.lastUsed.uptimeNanoseconds,
                             connections: entry.connections, sent: entry.sent, received: entry.received)
        }
        return stride(from: 0, to: clients.count, by: HandoverMessage.maxClients).map {
            Array(clients[$0..<min($0 + HandoverMessage.maxClients, clients.count)])
        }
    }

    /// The totals and the servers' counters (the first `HandoverMessage.maxServers`).
    public var handedOverCounters: HandedOverCounters {
        HandedOverCounters(connections: totalConnections, refusedClients: refusedClients,
                           servers: servers.servers.prefix(HandoverMessage.maxServers).map {
                               HandedOverCounters.Server(connections: $0.totalConnections, sent: $0.sent, received: $0.received)
                           })
    }

    /// Entries another penha process handed over, merged into the client table.
    public mutating func restore(_ handedOver: [HandedOverClient], now: NIODeadline) {
        for client in handedOver {
            var entry = ClientTable.Entry(key: client.key, server: client.server, lastUsed: .uptimeNanoseconds(client.lastUsed))
            entry.connections = client.connections
            entry.sent = client.sent
            entry.received = client.received
            clients.restore(entry, now: now, tracking: configuration.trackingTime)
        }
    }
}
