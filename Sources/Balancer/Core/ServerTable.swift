import NIOCore

/// One backend, with pen's limits and the counters kept for the control socket.
public struct Server: Equatable, Sendable {
    /// The host as the operator wrote it (name or address), kept for `servers` and `write`.
    public var host: String
    public var port: Int
    /// The resolved address connections go to.
    public var address: SocketAddress
    /// Soft limit on simultaneous connections (pen's maxc); 0 means unlimited.
    public var maxConnections: Int = 0
    /// Hard limit for returning clients once the soft limit is reached (pen's hard).
    public var hardLimit: Int = 0
    /// Weight for `-W`; a server with weight 0 is never chosen by weight (pen).
    public var weight: Int = 1
    /// Priority for `prio`: the lowest value wins.
    public var priority: Int = 0
    /// The access list a client must pass to be sent here.
    public var acl: Int = 0
    public var blacklistedUntil: NIODeadline?
    /// `server N healthcheck off` turns this off: the server is never checked, never down.
    public var healthCheckEnabled = true
    /// Its standing in the health checks, and when the next is due.
    public var health = ServerHealth()

    public var connections: Int = 0
    public var totalConnections: UInt64 = 0
    /// Bytes relayed to the server and from it.
    public var sent: UInt64 = 0
    public var received: UInt64 = 0

    public init(host: String, port: Int, address: SocketAddress, maxConnections: Int = 0,
                hardLimit: Int = 0, weight: Int = 1, priority: Int = 0, acl: Int = 0, healthCheckEnabled: Bool = true) {
        self.host = host
        self.port = port
        self.address = address
        self.maxConnections = maxConnections
        self.hardLimit = hardLimit
        self.weight = weight
        self.priority = priority
        self.acl = acl
        self.healthCheckEnabled = healthCheckEnabled
    }

    /// Takes the configured fields of `spec`, keeping the counters; `address` is where
    /// `spec.host` resolved to, with `spec.port`. Checks start afresh for a new address, or
    /// when they are turned on or off for it: the old standing says nothing about the new.
    public mutating func adopt(_ spec: ServerSpec, address: SocketAddress) {
        if address != self.address || spec.healthCheck != healthCheckEnabled { health = ServerHealth() }
        healthCheckEnabled = spec.healthCheck
        host = spec.host
        port = spec.port
        self.address = address
        maxConnections = spec.maxConnections
        hardLimit = spec.hardLimit
        weight = spec.weight
        priority = spec.priority
        acl = spec.acl
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
        guard maxConnections > 0, connections >= maxConnections else { return false }
        return !returning || connections >= hardLimit
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

    public init(servers: [Server], emergency: Server? = nil, abuse: Server? = nil) {
        self.servers = servers
        self.emergency = emergency
        self.abuse = abuse
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
