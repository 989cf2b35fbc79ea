import VRRPCore

/// `bgp table N vip ADDR[/LEN] [vip ...] [track_servers MIN] [interface IF second_chance PEER ...]`: penha announces its VIPs by BGP
/// through the routing daemon the host already runs (BIRD, FRR), never speaking BGP itself.
/// While it serves, each prefix is a route in the kernel routing table N, which the daemon
/// imports and exports to its peers (the anycast-healthchecker pattern); to withdraw, penha
/// deletes the routes. Table N routes nothing by itself: no `ip rule` points at it.
public struct BGPSettings: Equatable, Sendable {
    /// Far more VIPs than one balancer serves; each is a route added or deleted in one step.
    public static let maxPrefixes = 64
    /// Linux's table numbers are 32 bits; 0 is "unspecified".
    public static let tables = 1...Int(UInt32.max)
    /// default (253), main (254) and local (255): routes there would forward traffic.
    static let systemTables: Set<Int> = [253, 254, 255]
    /// Servers `track_servers` may ask for, as for vrrp's.
    public static let minimumServers = 1...65535

    public var table: Int
    /// The announced prefixes, all of them host routes unless a length is given.
    public var prefixes: [VirtualAddress]
    /// Announce only while at least this many servers are available (as vrrp's `track_servers` counts them).
    public var minimumServers: Int
    /// Established connections survive when the routers move their flows to another node.
    public var secondChance: ECMPSecondChance?

    public init(table: Int, prefixes: [VirtualAddress], minimumServers: Int = 1, secondChance: ECMPSecondChance? = nil) {
        self.table = table
        self.prefixes = prefixes
        self.minimumServers = minimumServers
        self.secondChance = secondChance
    }

    /// The words after `bgp`, when they are not `announce` or `withdraw`.
    public static func parse(_ words: [String]) throws -> BGPSettings {
        let usage = "'bgp' needs 'table N vip ADDR[/LEN] [vip ...] [track_servers MIN] [interface IF second_chance PEER ...]', "
            + "or is 'bgp withdraw' or 'bgp announce'"
        var table: Int?
        var prefixes: [VirtualAddress] = []
        var minimumServers: Int?
        var interface: String?
        var peers: [SecondChance.Peer]?
        var index = 0
        while index < words.count {
            guard index + 1 < words.count else { throw ConfigurationError("bgp: '\(words[index])' needs a value; \(usage)") }
            let value = words[index + 1]
            switch words[index] {
            case "interface":
                guard interface == nil else { throw ConfigurationError("bgp: 'interface' is given twice") }
                interface = value
            case "second_chance":
                guard peers == nil else { throw ConfigurationError("bgp: 'second_chance' is given twice") }
                // Every word up to the next keyword is a peer.
                let end = words[(index + 1)...].firstIndex { keywords.contains($0) } ?? words.count
                peers = try words[(index + 1)..<end].map { word in
                    do { return try SecondChance.parse(word).peer } catch { throw ConfigurationError("bgp: \(error)") }
                }
                index = end
                continue
            case "table":
                guard table == nil else { throw ConfigurationError("bgp: 'table' is given twice") }
                table = try tableNumber(value)
            case "vip":
                let prefix = try Self.prefix(value)
                guard !prefixes.contains(prefix) else { throw ConfigurationError("bgp: vip \(prefix) is given twice") }
                guard prefixes.count < maxPrefixes else { throw ConfigurationError("bgp: at most \(maxPrefixes) vips") }
                prefixes.append(prefix)
            case "track_servers":
                guard minimumServers == nil else { throw ConfigurationError("bgp: 'track_servers' is given twice") }
                minimumServers = try boundedNumber(try nonNegativeNumber(value, for: "bgp track_servers"), Self.minimumServers,
                                                   for: "bgp track_servers")
            default:
                throw ConfigurationError("bgp: unknown word '\(words[index])'; \(usage)")
            }
            index += 2
        }
        guard let table, !prefixes.isEmpty else { throw ConfigurationError(usage) }
        return BGPSettings(table: table, prefixes: prefixes, minimumServers: minimumServers ?? 1,
                           secondChance: try secondChance(interface: interface, peers: peers, prefixes: prefixes))
    }

    private static let keywords: Set<String> = ["table", "vip", "track_servers", "interface", "second_chance"]

    /// The two words come together: the peers are found on the interface.
    private static func secondChance(interface: String?, peers: [SecondChance.Peer]?, prefixes: [VirtualAddress]) throws -> ECMPSecondChance? {
        switch (interface, peers) {
        case (nil, nil): return nil
        case (nil, _?): throw ConfigurationError("bgp: 'second_chance' needs 'interface IF': where the routers deliver the vips' traffic")
        case (_?, nil): throw ConfigurationError("bgp: 'interface' is only for 'second_chance PEER ...'")
        case (let interface?, let peers?):
            guard prefixes.allSatisfy({ $0.address.family == .v4 }) else {
                throw ConfigurationError("bgp: second_chance works with IPv4 vips only, for now")
            }
            do { return try ECMPSecondChance(interface: interface, peers: peers) } catch { throw ConfigurationError("bgp: \(error)") }
        }
    }

    /// The words of the command that recreates these settings (for `write`).
    public var words: [String] {
        ["table", "\(table)"] + prefixes.flatMap { ["vip", "\($0)"] } + ["track_servers", "\(minimumServers)"]
            + (secondChance?.words ?? [])
    }

    /// The routes penha keeps in the table while it announces.
    public var routes: Set<BGPRoute> { Set(prefixes.map { BGPRoute(table: table, prefix: $0) }) }

    private static func tableNumber(_ text: String) throws -> Int {
        let number = try boundedNumber(try nonNegativeNumber(text, for: "bgp table"), tables, for: "bgp table")
        guard !systemTables.contains(number) else {
            throw ConfigurationError("bgp table \(number) is one the kernel routes with (default 253, main 254, local 255): "
                                     + "give a table of penha's own, such as 201")
        }
        return number
    }

    /// An address with its length; the address bits past the length must be zero, as a route's are.
    private static func prefix(_ text: String) throws -> VirtualAddress {
        guard let prefix = VirtualAddress(text) else {
            throw ConfigurationError("bgp: vip '\(text)' is not ADDRESS or ADDRESS/LENGTH (LENGTH 1-32 for IPv4, 1-128 for IPv6)")
        }
        // Each byte's bits past the length: all of a byte past it, none of one before it.
        let hostBitsSet = prefix.address.bytes.enumerated().contains { index, byte in
            let networkBits = min(max(prefix.prefixLength - index * 8, 0), 8)
            return byte & UInt8(truncatingIfNeeded: 0xFF >> networkBits) != 0
        }
        guard !hostBitsSet else {
            throw ConfigurationError("bgp: vip '\(text)' has bits set past its length /\(prefix.prefixLength): "
                                     + "a route names a network (a VIP alone is ADDRESS or ADDRESS/32)")
        }
        return prefix
    }
}

/// One prefix in one kernel routing table: what penha adds to announce and deletes to withdraw.
public struct BGPRoute: Hashable, Sendable, CustomStringConvertible {
    public var table: Int
    public var prefix: VirtualAddress

    public init(table: Int, prefix: VirtualAddress) {
        self.table = table
        self.prefix = prefix
    }

    public var description: String { "\(prefix) table \(table)" }
}

/// `bgp withdraw`, `bgp announce`: the operator takes this node out of the routers' choice
/// and puts it back. `announce` only ends a `withdraw`: a node that is not ready or whose
/// servers are down stays withdrawn, for an announcement it cannot serve would draw traffic.
public enum BGPOperatorAction: String, Equatable, Sendable {
    case announce, withdraw
}

/// Whether penha announces its prefixes now, and why. A pure function of what the caller
/// knows: no clock, no sockets.
public struct BGPDecision: Equatable, Sendable {
    public enum Reason: String, Equatable, Sendable, CaseIterable, Codable {
        /// Listening, with enough servers: announced.
        case serving
        /// The listener is not bound yet (or any more).
        case notListening = "not_listening"
        /// Fewer servers available than `track_servers` asks for.
        case serversDown = "servers_down"
        /// `bgp withdraw`.
        case withdrawnByOperator = "operator"
        /// SIGTERM (or `exit`): withdrawn before the drain, so the routers send new clients elsewhere first.
        case stopping
    }

    public var reason: Reason
    public var announces: Bool { reason == .serving }

    /// What decides, the strongest first: a stopping node never comes back, one that does not
    /// listen cannot serve, the operator's word holds over health, and health last.
    public static func decide(stopping: Bool, listening: Bool, withdrawnByOperator: Bool,
                              availableServers: Int, minimumServers: Int) -> BGPDecision {
        if stopping { return BGPDecision(reason: .stopping) }
        if !listening { return BGPDecision(reason: .notListening) }
        if withdrawnByOperator { return BGPDecision(reason: .withdrawnByOperator) }
        if availableServers < minimumServers { return BGPDecision(reason: .serversDown) }
        return BGPDecision(reason: .serving)
    }
}

/// The routes penha has in the kernel, and the steps from them to the ones it wants.
/// Owned by the one thread that changes routes, so a step is planned from what the previous
/// ones did and never from a stale copy.
public struct BGPRouteTable: Equatable, Sendable {
    public enum Change: Equatable, Sendable {
        case add(BGPRoute)
        case remove(BGPRoute)
    }

    /// The routes this run has added and not deleted since.
    public private(set) var installed: Set<BGPRoute> = []
    /// Routes that may be in the kernel without this run having added them (left by a penha
    /// that died, or by the one this took over from): the first plan deletes them unless it
    /// wants them, and then adds them (an add that finds penha's route keeps it).
    private var unknown: Set<BGPRoute>

    public init(unknown routes: Set<BGPRoute> = []) {
        unknown = routes
    }

    /// Deletions first, so a withdrawal does not wait behind additions; each list in the
    /// order of its text, so the steps are the same on every run.
    public func changes(toward wanted: Set<BGPRoute>) -> [Change] {
        installed.union(unknown).subtracting(wanted).sorted(by: Self.order).map(Change.remove)
            + wanted.subtracting(installed).sorted(by: Self.order).map(Change.add)
    }

    /// What the kernel took: a change that failed leaves the table as it was, so the next
    /// plan tries it again.
    public mutating func record(_ change: Change) {
        switch change {
        case .add(let route):
            installed.insert(route)
            unknown.remove(route)
        case .remove(let route):
            installed.remove(route)
            unknown.remove(route)
        }
    }

    /// By table, then address, then length: the order of the steps and of `status`'s lines.
    public static func order(_ first: BGPRoute, _ second: BGPRoute) -> Bool {
        (first.table, first.prefix.address, first.prefix.prefixLength) < (second.table, second.prefix.address, second.prefix.prefixLength)
    }
}
