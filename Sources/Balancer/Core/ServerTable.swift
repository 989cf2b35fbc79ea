import NIOCore

/// One backend, with pen's limits and the counters kept for the control socket. Its
/// configured fields are its `spec`, read through it (`server.weight`): one home for each.
@dynamicMemberLookup
public struct Server: Equatable, Sendable {
    /// What the configuration says of this server.
    public var spec: ServerSpec {
        didSet { if spec.host != oldValue.host { hostHash = MaglevTable.fnv1a(spec.host, seed: 2) } }
    }
    /// The host's hash, kept with it: `maglev` looks at every server's for each new client.
    public private(set) var hostHash: UInt64
    /// The resolved address connections go to.
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

    public init(spec: ServerSpec, address: SocketAddress) {
        self.spec = spec
        hostHash = MaglevTable.fnv1a(spec.host, seed: 2)
        self.address = address
    }

    /// A server by the fields pen's `host:port:maxc:hard:weight:prio` gives.
    public init(host: String, port: Int, address: SocketAddress, maxConnections: Int = 0,
                hardLimit: Int = 0, weight: Int = 1, priority: Int = 0) {
        self.init(spec: ServerSpec(host: host, port: port, maxConnections: maxConnections, hardLimit: hardLimit,
                                   weight: weight, priority: priority),
                  address: address)
    }

    /// Inlinable so that the data path's reads compile to a field access in other modules too.
    @inlinable
    public subscript<Value>(dynamicMember field: WritableKeyPath<ServerSpec, Value>) -> Value {
        get { spec[keyPath: field] }
        set { spec[keyPath: field] = newValue }
    }

    /// `server N healthcheck off` turns this off: the server is never checked, never down.
    public var healthCheckEnabled: Bool {
        get { spec.healthCheck }
        set { spec.healthCheck = newValue }
    }

    /// Takes the configured fields of `spec`, keeping the counters; `address` is where
    /// `spec.host` resolved to, with `spec.port`. Checks start afresh for a new address, or
    /// when they are turned on or off for it: the old standing says nothing about the new.
    public mutating func adopt(_ spec: ServerSpec, address: SocketAddress) {
        if address != self.address || spec.healthCheck != self.spec.healthCheck { health = ServerHealth() }
        self.spec = spec
        self.address = address
    }

    /// What `penha status` shows: down (by its health checks), blacklisted, full (at its soft
    /// limit) or up.
    public func state(now: NIODeadline) -> StatusReport.ServerState {
        health.isDown ? .down : isBlacklisted(now: now) ? .blacklisted : isFull(returning: false) ? .full : .up
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
    /// last (`returning`), up to its hard limit.
    public func isFull(returning: Bool) -> Bool {
        guard spec.maxConnections > 0, connections >= spec.maxConnections else { return false }
        return !returning || connections >= spec.hardLimit
    }

    /// A server its health checks found down takes no new client, returning or not.
    public func isAvailable(now: NIODeadline, returning: Bool = false) -> Bool {
        !health.isDown && !isBlacklisted(now: now) && !isFull(returning: returning)
    }
}

/// Where a connection goes: one of the regular servers (by index), the emergency server,
/// or the abuse server that clients refused by `client_acl` are sent to.
public enum Target: Hashable, Sendable {
    case server(Int)
    case emergency
    case abuse
}

/// The regular servers, in ring order, the emergency server of last resort (`-e`) and the
/// abuse server (`-B`).
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

    /// Reads the target's server in place (the subscript returns a copy, strings and all);
    /// nil for a target not there. Inlinable: the engine calls it from its own module once per
    /// connection, where an unspecialised generic call costs about 0.4k instructions.
    @inlinable
    public func read<Result>(_ target: Target, _ body: (borrowing Server) -> Result) -> Result? {
        switch target {
        case .server(let index) where servers.indices.contains(index): return body(servers[index])
        case .server: return nil
        case .emergency:
            guard let emergency else { return nil }
            return body(emergency)
        case .abuse:
            guard let abuse else { return nil }
            return body(abuse)
        }
    }

    /// Changes the target's server in place (a get-and-set through the subscript would copy
    /// it, strings and all, on every read burst); nothing happens for a target not there.
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
