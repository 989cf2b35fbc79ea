import VRRPCore

/// The incoming sync connections a node keeps, per peer address. A new connection takes one of
/// a few places for connections that have not proven the key; when they are all taken it
/// pushes out the oldest of them. So connections without the key (a process on the peer's
/// address reflecting or replaying what it saw) never keep the real peer out: at most they
/// race its handshake, which takes one round trip, and each is dropped at the hello bound
/// anyway. A connection that proves the key moves to the peer's one proven place and pushes
/// out the connection there: the peer's older one, left over from before it reconnected.
public struct SyncPlaces<Connection: Hashable & Sendable>: Sendable {
    public let unprovenPerPeer: Int
    /// Oldest first.
    private var unproven: [IPAddress: [Connection]] = [:]
    private var proven: [IPAddress: Connection] = [:]
    private var peerOf: [Connection: IPAddress] = [:]
    // Keyed by the configured peers' addresses only (`SyncSettings.isPeer` comes first), so
    // at most 16 of each.

    public init(unprovenPerPeer: Int = 4) {
        precondition(unprovenPerPeer > 0, "a peer has at least one place to connect")
        self.unprovenPerPeer = unprovenPerPeer
    }

    /// The connections held, proven or not.
    public var count: Int { peerOf.count }

    public func isProven(_ connection: Connection) -> Bool {
        peerOf[connection].map { proven[$0] == connection } ?? false
    }

    /// A new connection from `peer`; returns the one it pushes out, to be closed.
    public mutating func admit(_ connection: Connection, from peer: IPAddress) -> Connection? {
        var waiting = unproven[peer, default: []]
        let pushedOut = waiting.count >= unprovenPerPeer ? waiting.removeFirst() : nil
        waiting.append(connection)
        unproven[peer] = waiting
        if let pushedOut { peerOf[pushedOut] = nil }
        peerOf[connection] = peer
        return pushedOut
    }

    /// `connection` has proven the key; returns the peer's connection it replaces, to be closed.
    public mutating func prove(_ connection: Connection) -> Connection? {
        guard let peer = peerOf[connection], !isProven(connection) else { return nil }
        unproven[peer]?.removeAll { $0 == connection }
        let replaced = proven.updateValue(connection, forKey: peer)
        if let replaced { peerOf[replaced] = nil }
        return replaced
    }

    /// `connection` is gone (closed or refused): its place is free at once.
    public mutating func remove(_ connection: Connection) {
        guard let peer = peerOf.removeValue(forKey: connection) else { return }
        if proven[peer] == connection { proven[peer] = nil }
        unproven[peer]?.removeAll { $0 == connection }
    }
}
