import NIOCore
import VRRPCore

/// A client-table change as the sender holds it: the time, not yet the age, which is taken
/// when the entry is sent.
public struct SyncChange: Equatable, Sendable {
    public var client: ClientKey
    public var server: SyncSettings.Address
    public var lastUsed: NIODeadline

    public init(client: ClientKey, server: SyncSettings.Address, lastUsed: NIODeadline) {
        self.client = client
        self.server = server
        self.lastUsed = lastUsed
    }

    func entry(now: NIODeadline) -> SyncEntry {
        let milliseconds = max(0, (now - lastUsed).nanoseconds / 1_000_000)
        return SyncEntry(client: client, server: server, ageMilliseconds: UInt32(clamping: milliseconds))
    }
}

/// What one peer is still to be sent: a full copy of the table in progress, if any, then the
/// changes since, coalesced per client (a client that changes twice is sent once, as it is
/// last). Bounded: past `capacity` changes the oldest is dropped and the peer is marked for
/// a full copy, so a slow or dead peer costs a bounded amount of memory and never the data path.
public struct SyncOutbox: Sendable {
    public let capacity: Int
    private var order = CircularBuffer<ClientKey>()
    private var pending: [ClientKey: SyncChange] = [:]
    private var fullCopy: [SyncChange] = []
    private var fullCopySent = 0
    private var fullCopyStarted = false
    /// A new peer starts with a full copy.
    public private(set) var needsFullCopy = true
    /// Changes dropped because the peer fell behind.
    public private(set) var dropped: UInt64 = 0

    public init(capacity: Int = 65536) {
        precondition(capacity > 0, "an outbox holds at least one change")
        self.capacity = capacity
    }

    public var pendingCount: Int { pending.count }
    public var isSendingFullCopy: Bool { fullCopyStarted }

    public mutating func add(_ change: SyncChange) {
        if pending.updateValue(change, forKey: change.client) != nil { return }
        order.append(change.client)
        if order.count > capacity {
            pending[order.removeFirst()] = nil
            dropped += 1
            needsFullCopy = true
        }
    }

    /// The peer must be sent the whole table again (it reconnected, or this node became the sender).
    public mutating func requestFullCopy() { needsFullCopy = true }

    /// Starts a full copy of `snapshot`, the whole table, oldest first (so the receiver's use
    /// order ends as the sender's). It supersedes the changes pending; those made from now on
    /// follow it.
    public mutating func startFullCopy(_ snapshot: [SyncChange]) {
        fullCopy = snapshot
        fullCopySent = 0
        fullCopyStarted = true
        order.removeAll()
        pending.removeAll()
        needsFullCopy = false
    }

    /// The next message for the peer, nil when there is nothing to send: the full copy's next
    /// chunk while one is in progress, else up to `SyncMessage.maxEntries` changes.
    public mutating func nextMessage(now: NIODeadline) -> SyncMessage? {
        if fullCopyStarted {
            let end = min(fullCopy.count, fullCopySent + SyncMessage.maxEntries)
            let chunk = fullCopy[fullCopySent..<end].map { $0.entry(now: now) }
            let first = fullCopySent == 0
            fullCopySent = end
            let last = end == fullCopy.count
            if last {
                fullCopy = []
                fullCopySent = 0
                fullCopyStarted = false
            }
            return .fullCopy(first: first, last: last, entries: chunk)
        }
        guard !order.isEmpty else { return nil }
        var entries: [SyncEntry] = []
        entries.reserveCapacity(min(order.count, SyncMessage.maxEntries))
        while entries.count < SyncMessage.maxEntries, let client = order.popFirst() {
            if let change = pending.removeValue(forKey: client) { entries.append(change.entry(now: now)) }
        }
        return .updates(entries)
    }
}
