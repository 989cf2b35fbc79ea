import NIOCore

/// Everything the balancer decides, with no I/O: the server and client tables, the
/// selection, and the lifecycle of one client connection through them. The NIO code calls
/// these in order: `accept`, then `nextTarget` / `connectFailed` until one `connected`,
/// then `finished` (or `connectFailedLocally`, when this host could not connect). Time
/// comes in as an argument so every decision is testable.
public struct BalancerState: Sendable {
    /// The running configuration: the one home of the settings the state decides by (the
    /// selection's flags, `blacklist`, the access lists and `client_acl`, `tracking`,
    /// `clients_max`, `healthcheck`), read where they are used. `Runtime` changes it.
    public var configuration: Configuration
    /// What running adds to each of the configuration's servers (`Server`), at its index.
    public var servers: ServerTable
    public var clients: ClientTable
    /// Where round-robin is and Maglev's table: what the selection remembers between clients.
    public var selector = Selector()
    /// The last check's ticket, so a late result of a forgotten check is known as such.
    var nextCheckTicket: UInt64 = 0
    public private(set) var activeConnections = 0
    /// Clients `client_acl` refused (sent to the abuse server or closed).
    public private(set) var refusedClients: UInt64 = 0
    public private(set) var totalConnections: UInt64 = 0
    /// The relayed connections, by the number `connection N` and `close N` use.
    public private(set) var connections = ConnectionTable()
    /// `bgp withdraw` until `bgp announce`: kept across reloads and `bgp` changes, not saved by `write`.
    public var bgpWithdrawnByOperator = false
    private var nextConnectionNumber = 0

    /// One client connection on its way to a server.
    public struct Placement: Sendable {
        public let client: ClientKey
        public let clientSlot: Int
        /// The server the client used last, which may exceed its soft limit.
        public let tracked: Int?
        fileprivate var plan: FailoverPlan
        /// The incarnation of the target `nextTarget` counted the connection against: its end
        /// gives the count back only to that server, not to another added at its number since.
        fileprivate var incarnation: UInt64 = 0
        /// `client_acl` refused the client: it goes to the abuse server, if there is one.
        public var isRefused: Bool { plan.isRefused }
    }

    /// The state of a balancer started with `configuration`: its servers' running part made
    /// from their addresses (`address` gives a spec's host resolved, with its port).
    public init(configuration: Configuration, clients: ClientTable, address: (ServerSpec) throws -> SocketAddress) rethrows {
        self.configuration = configuration
        servers = ServerTable(servers: try configuration.servers.map { Server(address: try address($0)) },
                              emergency: try configuration.emergency.map { Server(address: try address($0)) },
                              abuse: try configuration.abuse.map { Server(address: try address($0)) })
        self.clients = clients
    }

    /// `-b`: how long a server that failed to connect is left out.
    public var blacklistTime: TimeAmount { .seconds(Int64(configuration.blacklistSeconds)) }

    /// The client table with `clients_max` slots, after a change of it.
    mutating func fitClientTable() {
        guard clients.capacity != configuration.clientsMax else { return }
        clients = clients.resized(to: configuration.clientsMax)
    }

    /// A client `client_acl` refuses gets a plan with only the abuse server (pen's -B) in it.
    public mutating func accept(client: ClientKey, now: NIODeadline) -> Placement {
        let slot = clients.connect(client, now: now, tracking: configuration.trackingTime)
        // connect keeps the server of a slot that is the client's own and not expired: the tracked one.
        let selection = configuration.selection
        let tracked = selection.roundRobin ? nil : clients.server(slot: slot)
        guard configuration.accessLists.permits(client, list: configuration.clientACL) else {
            refusedClients += 1
            return Placement(client: client, clientSlot: slot, tracked: nil, plan: .refused)
        }
        let lists = configuration.accessLists
        let initial = selector.initialServer(by: selection, for: client, tracked: tracked, configured: configuration.servers,
                                             servers: servers.servers, now: now) {
            lists.permits(client, list: $0)
        }
        let plan = FailoverPlan(initial: initial, serverCount: servers.count, stubborn: selection.stubborn)
        return Placement(client: client, clientSlot: slot, tracked: tracked, plan: plan)
    }

    /// The next target to connect to, skipping blacklisted and full ones and servers whose
    /// `acl` refuses the client; nil when the client must be closed. The connection counts
    /// against the target from here on, so a burst of clients sees the connects still in
    /// progress (for limits and for `-W`).
    public mutating func nextTarget(_ placement: inout Placement, now: NIODeadline) -> Target? {
        while let target = placement.plan.next() {
            let returning = target == placement.tracked.map(Target.server)
            if takesClient(target, placement.client, returning: returning, now: now) {
                servers.modify(target) { server in
                    server.connections += 1
                    placement.incarnation = server.incarnation
                }
                return target
            }
        }
        return nil
    }

    /// Whether `target` takes the client now: available (a returning client may go over the
    /// soft limit), and a regular server's `acl` admits the client (pen's try_server; the
    /// emergency and abuse servers take anyone). A regular server's fields are read in place,
    /// as this runs for every new client: `withServer` would copy its spec, strings and all.
    private func takesClient(_ target: Target, _ client: ClientKey, returning: Bool, now: NIODeadline) -> Bool {
        switch target {
        case .server(let index):
            guard configuration.servers.indices.contains(index), servers.servers.indices.contains(index) else { return false }
            return servers.servers[index].isAvailable(configuration.servers[index], now: now, returning: returning)
                && configuration.accessLists.permits(client, list: configuration.servers[index].acl)
        case .emergency, .abuse:
            return withServer(target) { spec, server in server.isAvailable(spec, now: now, returning: returning) } ?? false
        }
    }

    /// Reads the target's configuration and running part; nil for a target not there. An
    /// element the array's subscript gives is a copy unless the optimiser sees through it.
    /// Inlinable: the engine calls it from its own module once per connection, where an
    /// unspecialised generic call costs about 0.4k instructions.
    @inlinable
    public func withServer<Result>(_ target: Target, _ body: (borrowing ServerSpec, borrowing Server) -> Result) -> Result? {
        switch target {
        case .server(let index) where configuration.servers.indices.contains(index) && servers.servers.indices.contains(index):
            return body(configuration.servers[index], servers.servers[index])
        case .server: return nil
        case .emergency:
            guard let spec = configuration.emergency, let server = servers.emergency else { return nil }
            return body(spec, server)
        case .abuse:
            guard let spec = configuration.abuse, let server = servers.abuse else { return nil }
            return body(spec, server)
        }
    }

    /// Each regular server's configuration beside its running part, for reports.
    public var configuredServers: Zip2Sequence<[ServerSpec], [Server]> { zip(configuration.servers, servers.servers) }

    /// Server `index`'s running part after its configuration changed from `before` (nil: a new
    /// server, appended). Only what running adds follows: the address is looked up again (in
    /// `resolved`, the hosts resolved off the event loop) when the host changed or `lookUp`
    /// asks, and takes the port; a changed address applies to new connections only. Checks
    /// start afresh for a new address, or when they are turned on or off: the old standing
    /// says nothing about the new. The counters stay.
    mutating func serverConfigured(_ index: Int, before: ServerSpec?, lookUp: Bool = false,
                                   resolved: [String: SocketAddress]) throws {
        guard configuration.servers.indices.contains(index) else { return }
        let spec = configuration.servers[index]
        let running = servers.servers.indices.contains(index) ? servers.servers[index].address : nil
        var address: SocketAddress
        if let before, let running, !lookUp, spec.host == before.host {
            address = running
        } else {
            guard let found = resolved[spec.host] else { throw ConfigurationError("cannot resolve server host '\(spec.host)'") }
            address = found
        }
        address.port = spec.port
        guard running != nil else { return servers.append(Server(address: address)) }
        servers.modify(.server(index)) { server in
            if address != server.address || spec.healthCheck != before?.healthCheck { server.health = ServerHealth() }
            server.address = address
        }
    }

    /// Servers a new client could be sent to now: what VRRP's health coupling watches.
    public func availableServerCount(now: NIODeadline) -> Int {
        configuredServers.filter { $1.isAvailable($0, now: now) }.count
    }

    /// pen blacklists a server whose connect fails, for `-b` seconds. `placement`: the one
    /// `nextTarget` counted against it (nil: a failure no count was taken for).
    public mutating func connectFailed(_ target: Target, of placement: Placement? = nil, now: NIODeadline) {
        let until = now + blacklistTime
        servers.modify(target) { server in
            guard Self.isCounted(server.incarnation, by: placement) else { return }
            server.connections = max(0, server.connections - 1)
            server.blacklistedUntil = until
        }
    }

    /// The connect to `target` failed for a reason of this host's (`FailureCause.isLocal`,
    /// such as no descriptor left for its socket): the server keeps its standing, only the
    /// connection `nextTarget` counted against it is taken back.
    public mutating func connectFailedLocally(_ target: Target, of placement: Placement? = nil) {
        releaseConnection(on: target, of: placement)
    }

    /// The client is connected to `target`; returns the connection's number.
    @discardableResult
    public mutating func connected(_ placement: Placement, to target: Target, client: String, now: NIODeadline) -> Int {
        connected(placement, to: target, peer: .text(client), now: now)
    }

    /// The same, with the client kept as numbers where it can be (text only when `connection N` asks).
    @discardableResult
    public mutating func connected(_ placement: Placement, to target: Target, peer: ConnectionPeer, now: NIODeadline) -> Int {
        let number = nextConnectionNumber
        nextConnectionNumber += 1
        connections.insert(ConnectionRecord(peer: peer, target: target, since: now), number: number)
        servers.modify(target) { server in
            guard Self.isCounted(server.incarnation, by: placement) else { return }
            server.totalConnections += 1
            server.blacklistedUntil = nil
        }
        activeConnections += 1
        totalConnections += 1
        // The emergency server is a last resort, not a place to send the client back to.
        if case .server(let index) = target {
            clients.setServer(index, slot: placement.clientSlot, key: placement.client)
        }
        return number
    }

    /// A connection another penha process relayed to `target` and handed over (`penha
    /// upgrade`): counted against it as `nextTarget` counts a new one, and numbered; the client
    /// goes back to that server as after `connected`. Not counted in the totals again: the
    /// old process's come with `add(_:)`. nil when the table has no such target.
    public mutating func adopt(client: ClientKey, target: Target, peer: ConnectionPeer, connectedAt: NIODeadline,
                               now: NIODeadline) -> (placement: Placement, number: Int)? {
        guard withServer(target, { _, _ in true }) != nil else { return nil }
        let slot = clients.slot(of: client) ?? clients.connect(client, now: now, tracking: configuration.trackingTime)
        var placement = Placement(client: client, clientSlot: slot, tracked: nil, plan: .refused)
        servers.modify(target) { server in
            server.connections += 1
            placement.incarnation = server.incarnation
        }
        let number = nextConnectionNumber
        nextConnectionNumber += 1
        connections.insert(ConnectionRecord(peer: peer, target: target, since: connectedAt), number: number)
        activeConnections += 1
        if case .server(let index) = target { clients.setServer(index, slot: placement.clientSlot, key: client) }
        return (placement, number)
    }

    /// The counters another penha process handed over, added to this one's (which count only
    /// what it accepted itself).
    public mutating func add(_ counters: HandedOverCounters) {
        totalConnections &+= counters.connections
        refusedClients &+= counters.refusedClients
        for (index, counted) in counters.servers.enumerated() {
            servers.modify(.server(index)) { server in
                server.totalConnections &+= counted.connections
                server.sent &+= counted.sent
                server.received &+= counted.received
            }
        }
    }

    /// A connection ended after relaying `sent` bytes to the server and `received` from it.
    /// Bytes relayed while a connection lasts, so counters move during long transfers.
    public mutating func relayed(_ placement: Placement, target: Target, toServer: UInt64, toClient: UInt64) {
        servers.modify(target) { server in
            guard Self.isCounted(server.incarnation, by: placement) else { return }
            server.sent &+= toServer
            server.received &+= toClient
        }
        clients.addBytes(slot: placement.clientSlot, key: placement.client, sent: toClient, received: toServer)
    }

    public mutating func finished(_ placement: Placement, connection: Int, target: Target) {
        connections.remove(connection)
        releaseConnection(on: target, of: placement)
        activeConnections = max(0, activeConnections - 1)
    }

    /// Whether a server of this incarnation is still the one `placement` was counted against
    /// (no placement: whichever server is there).
    private static func isCounted(_ incarnation: UInt64, by placement: Placement?) -> Bool {
        placement.map { $0.incarnation == incarnation } ?? true
    }

    private mutating func releaseConnection(on target: Target, of placement: Placement?) {
        servers.modify(target) { server in
            guard Self.isCounted(server.incarnation, by: placement) else { return }
            server.connections = max(0, server.connections - 1)
        }
    }
}
