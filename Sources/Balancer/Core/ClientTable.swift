import NIOCore
import VRRPCore

/// A client's identity for tracking: its IP address only (pen tracks hosts, not ports).
/// `IPAddress` keeps IPv4 mapped, so a client reaching a dual-stack listener as
/// ::ffff:a.b.c.d is the same client as a.b.c.d.
public typealias ClientKey = IPAddress

extension ClientKey {
    /// Unix-socket clients have no address; pen counts them all as one client. (`::`, which
    /// no client connecting over IP has.)
    public static let local = IPAddress(high: 0, low: 0)

    public init(_ address: SocketAddress?) {
        switch address {
        case .v4(let v4):
            self.init(ipv4: UInt32(bigEndian: v4.address.sin_addr.s_addr))
        case .v6(let v6):
            self = withUnsafeBytes(of: v6.address.sin6_addr) { IPAddress(bytes: Array($0))! }
        default:
            self = .local
        }
    }

    var isIPv4: Bool { family == .v4 }

    /// The client as `recent`, the `-w` page and X-Forwarded-For write it: its address, or "local".
    public var clientText: String { self == .local ? "local" : description }
}

/// pen's client table: at most `-c` slots, each remembering the server a client used last.
/// Slots are added as clients arrive rather than reserved up front (pen preallocates), so a
/// large `-c` costs memory only for the clients actually seen. When the table is full the least recently used slot is reused; with a tracking
/// time (`-T`) entries older than that are forgotten.
/// Lookup, touch and eviction are O(1): a dictionary finds the slot, and a doubly linked list
/// through the slots keeps them in order of use.
public struct ClientTable: Sendable {
    public struct Entry: Equatable, Sendable {
        public var key: ClientKey
        public var server: Int?
        public var lastUsed: NIODeadline
        public var connections: UInt64 = 0
        /// Bytes relayed to the client and from it.
        public var sent: UInt64 = 0
        public var received: UInt64 = 0
    }

    public private(set) var capacity: Int
    private var entries: [Entry] = []
    private var slotOfKey: [ClientKey: Int] = [:]
    // Use order: `newest` is the most recently used slot, `oldest` the next one to reuse.
    private var newerSlot: [Int] = []
    private var olderSlot: [Int] = []
    private var newest = -1
    private var oldest = -1
    /// With `sync`: the slots whose server was set since the sync last drained them, each at
    /// most once (`isChanged`), so the journal is bounded by the table and coalesces by itself;
    /// its storage is kept between drains, so recording a change allocates nothing.
    public var isJournaling = false {
        didSet { if !isJournaling { discardChanges() } }
    }
    private var journal: [Int] = []
    private var isChanged: [Bool] = []

    public init(capacity: Int) {
        precondition(capacity > 0, "the client table needs at least one slot")
        self.capacity = capacity
    }

    public var count: Int { entries.count }

    /// The same clients in a table of `capacity` slots; when it shrinks, the most recently
    /// used ones stay. Slot numbers change (placements in flight find their slot gone, which
    /// costs them only their byte counts).
    public func resized(to capacity: Int) -> ClientTable {
        var table = ClientTable(capacity: capacity)
        for (_, entry) in byRecentUse.prefix(capacity).reversed() {
            let slot = table.connect(entry.key, now: entry.lastUsed, tracking: nil)
            table.entries[slot] = entry
        }
        // Slot numbers changed, so the journal cannot carry over: changes not yet sent are
        // lost, and each such client's next connection records it again.
        table.isJournaling = isJournaling
        return table
    }

    /// Entries from the most recently used to the least.
    public var byRecentUse: [(slot: Int, entry: Entry)] {
        var result: [(slot: Int, entry: Entry)] = []
        var slot = newest
        while slot >= 0 {
            result.append((slot, entries[slot]))
            slot = olderSlot[slot]
        }
        return result
    }

    public func entry(slot: Int) -> Entry? {
        entries.indices.contains(slot) ? entries[slot] : nil
    }

    /// The server a client used last, unless it has been forgotten. `tracking` (`-T`): entries
    /// not used for this long are forgotten; nil keeps them forever.
    public func trackedServer(of key: ClientKey, now: NIODeadline, tracking: TimeAmount?) -> Int? {
        guard let slot = slotOfKey[key], !Self.isExpired(entries[slot], now: now, tracking: tracking) else { return nil }
        return entries[slot].server
    }

    /// The server a slot's client used last (nil for a slot not there).
    public func server(slot: Int) -> Int? {
        entries.indices.contains(slot) ? entries[slot].server : nil
    }

    /// Records a new connection from `key` and returns its slot: the client's own slot if it
    /// has one, else a fresh one, else the least recently used one. An expired or reused slot
    /// starts with empty counters and no server.
    @discardableResult
    public mutating func connect(_ key: ClientKey, now: NIODeadline, tracking: TimeAmount?) -> Int {
        let slot: Int
        if let existing = slotOfKey[key] {
            // A returning client: one hash lookup, its slot is already under its key.
            slot = existing
            if Self.isExpired(entries[slot], now: now, tracking: tracking) {
                entries[slot] = Entry(key: key, server: nil, lastUsed: now)
            }
            removeFromAgeOrder(slot)
        } else if entries.count < capacity {
            slot = entries.count
            entries.append(Entry(key: key, server: nil, lastUsed: now))
            newerSlot.append(-1)
            olderSlot.append(-1)
            isChanged.append(false)
            slotOfKey[key] = slot
        } else {
            slot = oldest
            removeFromAgeOrder(slot)
            slotOfKey[entries[slot].key] = nil
            entries[slot] = Entry(key: key, server: nil, lastUsed: now)
            slotOfKey[key] = slot
        }
        entries[slot].lastUsed = now
        entries[slot].connections += 1
        linkAsNewest(slot)
        return slot
    }

    /// Remembers the server a client was connected to, if the slot still belongs to it.
    public mutating func setServer(_ server: Int, slot: Int, key: ClientKey) {
        guard entries.indices.contains(slot), entries[slot].key == key else { return }
        entries[slot].server = server
        if isJournaling && !isChanged[slot] {
            isChanged[slot] = true
            journal.append(slot)
        }
    }

    /// The entries whose server was set since the last call, as they are now (a slot reused
    /// meanwhile gives its new client, or nothing while that one has no server yet).
    public mutating func drainChanges(_ body: (Entry) -> Void) {
        for slot in journal {
            isChanged[slot] = false
            if entries[slot].server != nil { body(entries[slot]) }
        }
        journal.removeAll(keepingCapacity: true)
    }

    private mutating func discardChanges() {
        for slot in journal { isChanged[slot] = false }
        journal.removeAll()
    }

    /// A peer's entry: the client used `server` last at `lastUsed`. Last writer wins: it
    /// replaces the client's entry only when that is older (or expired), and it takes a new
    /// slot, or the least recently used one if that is older still, so it never pushes out
    /// a client used more recently. Not journaled: a node never echoes what it was told.
    /// Returns whether the entry was taken.
    @discardableResult
    public mutating func adoptRemote(_ key: ClientKey, server: Int, lastUsed: NIODeadline, now: NIODeadline,
                                     tracking: TimeAmount?) -> Bool {
        let remote = Entry(key: key, server: server, lastUsed: lastUsed)
        guard !Self.isExpired(remote, now: now, tracking: tracking) else { return false }
        let slot: Int
        if let existing = slotOfKey[key] {
            guard Self.isExpired(entries[existing], now: now, tracking: tracking) || entries[existing].lastUsed < lastUsed else {
                return false
            }
            slot = existing
            entries[slot].server = server
            entries[slot].lastUsed = lastUsed
            removeFromAgeOrder(slot)
        } else if entries.count < capacity {
            slot = entries.count
            entries.append(remote)
            newerSlot.append(-1)
            olderSlot.append(-1)
            isChanged.append(false)
        } else {
            guard entries[oldest].lastUsed < lastUsed else { return false }
            slot = oldest
            removeFromAgeOrder(slot)
            slotOfKey[entries[slot].key] = nil
            entries[slot] = remote
        }
        slotOfKey[key] = slot
        linkAsNewest(slot)
        return true
    }

    /// The client's slot, if it has one.
    public func slot(of key: ClientKey) -> Int? {
        slotOfKey[key]
    }

    /// An entry another penha process handed over (`penha upgrade`), given the most recently
    /// used first: each goes after every entry there is, so the order of use carries over behind
    /// the clients this process has served since it took over. A client it has served keeps
    /// its entry, with the counters added; one that expired, or that a full table has no room
    /// for, is dropped (every entry there is more recent).
    public mutating func restore(_ entry: Entry, now: NIODeadline, tracking: TimeAmount?) {
        if let slot = slotOfKey[entry.key] {
            entries[slot].connections &+= entry.connections
            entries[slot].sent &+= entry.sent
            entries[slot].received &+= entry.received
            if entries[slot].server == nil { entries[slot].server = entry.server }
            return
        }
        guard !Self.isExpired(entry, now: now, tracking: tracking), entries.count < capacity else { return }
        let slot = entries.count
        entries.append(entry)
        newerSlot.append(-1)
        olderSlot.append(-1)
        isChanged.append(false)
        slotOfKey[entry.key] = slot
        newerSlot[slot] = oldest
        if oldest >= 0 { olderSlot[oldest] = slot } else { newest = slot }
        oldest = slot
    }

    public mutating func addBytes(slot: Int, key: ClientKey, sent: UInt64, received: UInt64) {
        guard entries.indices.contains(slot), entries[slot].key == key else { return }
        entries[slot].sent &+= sent
        entries[slot].received &+= received
    }

    private static func isExpired(_ entry: Entry, now: NIODeadline, tracking: TimeAmount?) -> Bool {
        guard let tracking else { return false }
        return entry.lastUsed + tracking < now
    }

    private mutating func removeFromAgeOrder(_ slot: Int) {
        let newer = newerSlot[slot]
        let older = olderSlot[slot]
        if newer >= 0 { olderSlot[newer] = older } else { newest = older }
        if older >= 0 { newerSlot[older] = newer } else { oldest = newer }
        newerSlot[slot] = -1
        olderSlot[slot] = -1
    }

    private mutating func linkAsNewest(_ slot: Int) {
        olderSlot[slot] = newest
        newerSlot[slot] = -1
        if newest >= 0 { newerSlot[newest] = slot } else { oldest = slot }
        newest = slot
    }
}
