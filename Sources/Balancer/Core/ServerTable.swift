import NIOCore

/// What running adds to one backend: where its host resolved to, its blacklisting, health
/// and counters. What it is configured with is its `ServerSpec` in `Configuration.servers`
/// (or `emergency`, `abuse`), the one home of those fields: a decision that needs them is
/// given the spec (`BalancerState.withServer` gives both, in place).
public struct Server: Equatable, Sendable {
    /// The resolved address connections go to: the spec's host, with its port.
    public var address: SocketAddress
    public var blacklistedUntil: NIODeadline?
    /// Its standing in the health checks, and when the next is due.
    public var health = ServerHealth()

    /// Which server this is at its number: a reload that removes server N and a later one that
    /// adds a new N make another server there, whose counts the first one's connections must
    /// leave alone (`ServerTable.append`).
    public internal(set) var incarnation: UInt64 = 0

    public var connections: Int = 0
    public var totalConnections: UInt64 = 0
    /// Bytes relayed to the server and from it.
    public var sent: UInt64 = 0
    public var received: UInt64 = 0

    public init(address: SocketAddress) {
        self.address = address
    }

    /// What `penha status` shows: down (by its health checks), blacklisted, full (at the soft
    /// limit its `spec` sets) or up.
    public func state(_ spec: ServerSpec, now: NIODeadline) -> StatusReport.ServerState {
        health.isDown ? .down : isBlacklisted(now: now) ? .blacklisted : isFull(spec, returning: false) ? .full : .up
    }

    /// Whole seconds of blacklist left, rounded up; 0 when not blacklisted.
    public func blacklistSecondsLeft(now: NIODeadline) -> Int {
        guard let until = blacklistedUntil, now < until else { return 0 }
        return Int(((until - now).nanoseconds + 999_999_999) / 1_000_000_000)
    }

    public func isBlacklisted(now: NIODeadline) -> Bool {
        guard let until = blacklistedUntil else { return false }
        return now < until
    }

    /// pen's try_server: a server over its soft limit still takes a client that used it
    /// last (`returning`), up to its hard limit (both its `spec`'s).
    public func isFull(_ spec: ServerSpec, returning: Bool) -> Bool {
        guard spec.maxConnections > 0, connections >= spec.maxConnections else { return false }
        return !returning || connections >= spec.hardLimit
    }

    /// A server its health checks found down takes no new client, returning or not.
    public func isAvailable(_ spec: ServerSpec, now: NIODeadline, returning: Bool = false) -> Bool {
        !health.isDown && !isBlacklisted(now: now) && !isFull(spec, returning: returning)
    }
}

/// Where a connection goes: one of the regular servers (by index), the emergency server,
/// or the abuse server that clients refused by `client_acl` are sent to.
public enum Target: Hashable, Sendable {
    case server(Int)
    case emergency
    case abuse
}

/// The running part of the regular servers, in ring order (one for each of
/// `Configuration.servers`, at the same index), of the emergency server of last resort (`-e`)
/// and of the abuse server (`-B`).
public struct ServerTable: Sendable {
    public var servers: [Server]
    public var emergency: Server?
    public var abuse: Server?

    /// The incarnation the next server added gets.
    private var nextIncarnation: UInt64

    public init(servers: [Server], emergency: Server? = nil, abuse: Server? = nil) {
        self.servers = servers
        self.emergency = emergency
        self.abuse = abuse
        for index in self.servers.indices { self.servers[index].incarnation = UInt64(index) }
        nextIncarnation = UInt64(servers.count)
    }

    /// A new server at the next number: a new incarnation, even where one was removed before.
    public mutating func append(_ server: Server) {
        var server = server
        server.incarnation = nextIncarnation
        nextIncarnation += 1
        servers.append(server)
    }

    public var count: Int { servers.count }

    public subscript(target: Target) -> Server? {
        switch target {
        case .server(let index): return servers.indices.contains(index) ? servers[index] : nil
        case .emergency: return emergency
        case .abuse: return abuse
        }
    }

    /// Changes the target's server in place (a get-and-set through the subscript would copy
    /// it, its address and all, on every read burst); nothing happens for a target not there.
    public mutating func modify(_ target: Target, _ change: (inout Server) -> Void) {
        switch target {
        case .server(let index) where servers.indices.contains(index): change(&servers[index])
        case .server: break
        case .emergency: if emergency != nil { change(&emergency!) }
        case .abuse: if abuse != nil { change(&abuse!) }
        }
    }

    public mutating func blacklist(_ target: Target, until deadline: NIODeadline) {
        modify(target) { $0.blacklistedUntil = deadline }
    }
}
