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
    /// `configured` are the servers' settings and `servers` their running part, index by index.
    /// `tracked` is the server the client used last, if the table remembers one; `admits`
    /// says whether a server's `acl` lets this client in (pen's try_server checks it).
    public mutating func initialServer(by selection: Selection, for client: ClientKey, tracked: Int?, configured: [ServerSpec],
                                       servers: [Server], now: NIODeadline, admits: (_ acl: Int) -> Bool = { _ in true }) -> Int? {
        // One running entry for each configured server (`BalancerState`); the shorter bounds the reads all the same.
        let count = min(configured.count, servers.count)
        guard count > 0 else { return nil }
        if !selection.roundRobin, let tracked, tracked < count { return tracked }
        if selection.priority { return Self.byPriority(configured, servers, count, now: now, admits: admits) }
        if selection.maglev { return byMaglev(client, configured, servers, count, now: now) }
        if selection.weight { return Self.byWeight(configured, servers, count, now: now, admits: admits) }
        if selection.hash { return Self.hashIndex(of: client, count: count) }
        return byRoundRobin(configured, servers, count, now: now, admits: admits)
    }

    /// Whether server `index` takes a new client now: available, and its `acl` admits the
    /// client. Its fields are read in place: a closure over the tables would copy them.
    private static func isUsable(_ index: Int, _ configured: [ServerSpec], _ servers: [Server], now: NIODeadline,
                                 admits: (Int) -> Bool) -> Bool {
        servers[index].isAvailable(configured[index], now: now) && admits(configured[index].acl)
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
    private mutating func byMaglev(_ client: ClientKey, _ configured: [ServerSpec], _ servers: [Server], _ count: Int,
                                   now: NIODeadline) -> Int? {
        // A function, not a closure: one over the tables would copy them, for every client.
        func isMember(_ index: Int) -> Bool { configured[index].weight > 0 && servers[index].isAvailable(configured[index], now: now) }
        var fingerprint: UInt64 = 0xCBF2_9CE4_8422_2325
        for index in 0..<count where isMember(index) {
            fingerprint = MaglevTable.mix(fingerprint ^ UInt64(index))
            fingerprint = MaglevTable.mix(fingerprint ^ UInt64(configured[index].weight))
            fingerprint = MaglevTable.mix(fingerprint ^ UInt64(configured[index].port))
            fingerprint = MaglevTable.mix(fingerprint ^ configured[index].hostHash)
        }
        if maglevTable?.fingerprint != fingerprint {
            let table = MaglevTable(members: (0..<count).filter(isMember).map { index in
                let spec = configured[index]
                return MaglevTable.Member(index: index, name: Endpoint.describe(host: spec.host, port: spec.port), weight: spec.weight)
            })
            maglevTable = (fingerprint, table)
        }
        return maglevTable?.table.server(for: Self.clientHash(client))
    }

    private mutating func byRoundRobin(_ configured: [ServerSpec], _ servers: [Server], _ count: Int, now: NIODeadline,
                                       admits: (Int) -> Bool) -> Int? {
        for step in 1...count {
            let index = ((lastRoundRobin + step) % count + count) % count
            if Self.isUsable(index, configured, servers, now: now, admits: admits) {
                lastRoundRobin = index
                return index
            }
        }
        return nil
    }

    private static func byWeight(_ configured: [ServerSpec], _ servers: [Server], _ count: Int, now: NIODeadline,
                                 admits: (Int) -> Bool) -> Int? {
        var best: (index: Int, load: Double)?
        for index in 0..<count where configured[index].weight > 0 && isUsable(index, configured, servers, now: now, admits: admits) {
            let load = Double(servers[index].connections) / Double(configured[index].weight)
            if best == nil || load < best!.load { best = (index, load) }
        }
        return best?.index
    }

    private static func byPriority(_ configured: [ServerSpec], _ servers: [Server], _ count: Int, now: NIODeadline,
                                   admits: (Int) -> Bool) -> Int? {
        var best: Int?
        for index in 0..<count where isUsable(index, configured, servers, now: now, admits: admits) {
            if best == nil || configured[index].priority < configured[best!].priority { best = index }
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
