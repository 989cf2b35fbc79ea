import NIOCore

/// pen's server selection, as configured: the algorithm flags. They combine as pen's do;
/// `prio` wins over `maglev`, which wins over `weight`, which wins over `hash`, which wins
/// over round-robin (`Selector` chooses by them).
public struct Selection: Equatable, Sendable {
    /// `-r`: skip the client table and go straight to the algorithm.
    public var roundRobin = false
    /// `-h`: hash of the client address.
    public var hash = false
    /// `-W`: least connections per weight.
    public var weight = false
    /// `prio`: lowest priority value among the available servers.
    public var priority = false
    /// `-s`: close the client when its first choice fails instead of failing over.
    public var stubborn = false
    /// `maglev`: Maglev's consistent hash of the client address over the available servers,
    /// so that every node with the same servers sends a new client to the same one.
    public var maglev = false

    public init() {}
}

/// Which server a connection tries first, by a `Selection`, and what that choice remembers
/// between clients: where round-robin is and Maglev's table. Running state, so a reload that
/// keeps the flags keeps both.
public struct Selector: Sendable {
    /// The table for the servers available when it was built, and their fingerprint.
    private var maglevTable: (fingerprint: UInt64, table: MaglevTable)?
    /// The server round-robin chose last; the next choice starts after it.
    public private(set) var lastRoundRobin = -1

    public init() {}

    /// The first server to try for a client, nil when no regular server can be chosen.
    /// `tracked` is the server the client used last, if the table remembers one; `admits`
    /// says whether a server's `acl` lets this client in (pen's try_server checks it).
    public mutating func initialServer(by selection: Selection, for client: ClientKey, tracked: Int?, servers: ServerTable,
                                       now: NIODeadline, admits: (Server) -> Bool = { _ in true }) -> Int? {
        guard servers.count > 0 else { return nil }
        if !selection.roundRobin, let tracked, tracked < servers.count { return tracked }
        let usable = { (server: Server) in server.isAvailable(now: now) && admits(server) }
        if selection.priority { return byPriority(servers, usable) }
        if selection.maglev { return byMaglev(client, servers, now: now) }
        if selection.weight { return byWeight(servers, usable) }
        if selection.hash { return Self.hashIndex(of: client, count: servers.count) }
        return byRoundRobin(servers, usable)
    }

    /// Stable across restarts and equal for IPv4 and IPv4-mapped clients.
    static func hashIndex(of client: ClientKey, count: Int) -> Int {
        Int(clientHash(client) % UInt64(count))
    }

    /// The client address through SplitMix64's finaliser, which spreads neighbouring addresses.
    static func clientHash(_ client: ClientKey) -> UInt64 {
        MaglevTable.mix(client.high ^ client.low)
    }

    /// The table's server for the client. The table covers the servers available now (up, not
    /// blacklisted, weight above 0) and is built again only when that set, or a server's name or
    /// weight, changes: a few milliseconds for 65,537 slots, not per connection. A server's
    /// `acl` is the failover plan's to apply, as for a tracked server.
    private mutating func byMaglev(_ client: ClientKey, _ servers: ServerTable, now: NIODeadline) -> Int? {
        var fingerprint: UInt64 = 0xCBF2_9CE4_8422_2325
        for (index, server) in servers.servers.enumerated() where server.weight > 0 && server.isAvailable(now: now) {
            fingerprint = MaglevTable.mix(fingerprint ^ UInt64(index))
            fingerprint = MaglevTable.mix(fingerprint ^ UInt64(server.weight))
            fingerprint = MaglevTable.mix(fingerprint ^ UInt64(server.port))
            fingerprint = MaglevTable.mix(fingerprint ^ server.hostHash)
        }
        if maglevTable?.fingerprint != fingerprint {
            let members = servers.servers.enumerated().compactMap { index, server in
                server.weight > 0 && server.isAvailable(now: now)
                    ? MaglevTable.Member(index: index, name: Endpoint.describe(host: server.host, port: server.port), weight: server.weight)
                    : nil
            }
            maglevTable = (fingerprint, MaglevTable(members: members))
        }
        return maglevTable?.table.server(for: Self.clientHash(client))
    }

    private mutating func byRoundRobin(_ servers: ServerTable, _ usable: (Server) -> Bool) -> Int? {
        let count = servers.count
        for step in 1...count {
            let index = ((lastRoundRobin + step) % count + count) % count
            if usable(servers.servers[index]) {
                lastRoundRobin = index
                return index
            }
        }
        return nil
    }

    private func byWeight(_ servers: ServerTable, _ usable: (Server) -> Bool) -> Int? {
        var best: (index: Int, load: Double)?
        for (index, server) in servers.servers.enumerated() where server.weight > 0 && usable(server) {
            let load = Double(server.connections) / Double(server.weight)
            if best == nil || load < best!.load { best = (index, load) }
        }
        return best?.index
    }

    private func byPriority(_ servers: ServerTable, _ usable: (Server) -> Bool) -> Int? {
        var best: Int?
        for (index, server) in servers.servers.enumerated() where usable(server) {
            if best == nil || server.priority < servers.servers[best!].priority { best = index }
        }
        return best
    }
}

/// The order in which one connection tries servers: its initial choice, then the servers
/// after it round the ring once, then the emergency server (pen's failover_server).
/// A stubborn plan stops after the initial choice.
public struct FailoverPlan: Sendable {
    public let initial: Int?
    private let serverCount: Int
    private let stubborn: Bool
    public private(set) var isRefused = false
    private var step = 0

    public init(initial: Int?, serverCount: Int, stubborn: Bool) {
        self.initial = initial
        self.serverCount = serverCount
        self.stubborn = stubborn
    }

    /// The plan of a client refused by `client_acl`: the abuse server, and nothing after it.
    public static var refused: FailoverPlan {
        var plan = FailoverPlan(initial: nil, serverCount: 0, stubborn: true)
        plan.isRefused = true
        return plan
    }

    /// The next target to consider, nil when the plan is exhausted. Bounded: at most
    /// serverCount + 1 targets.
    public mutating func next() -> Target? {
        defer { step += 1 }
        if isRefused { return step == 0 ? .abuse : nil }
        guard let initial else { return step == 0 && !stubborn ? .emergency : nil }
        if step == 0 { return .server(initial) }
        if stubborn { return nil }
        if step < serverCount { return .server((initial + step) % serverCount) }
        if step == serverCount { return .emergency }
        return nil
    }
}
