import NIOCore

extension BalancerState {
    /// A relayed connection as the control socket shows it.
    public struct ConnectionRecord: Equatable, Sendable {
        public let peer: ConnectionPeer
        public let target: Target
        public let since: NIODeadline

        /// `192.0.2.1:80`, as `connection N` shows it: written when asked, not per connection.
        public var client: String { peer.text }
    }
}

/// A connection's client as `connection N` shows it. IPv4, the common case, is kept as its
/// numbers and written only when asked (bench/RESULTS.md: text made per connection cost
/// instructions on every one); any other client comes as its text.
public enum ConnectionPeer: Equatable, Sendable {
    case ipv4(address: UInt32, port: UInt16)
    case text(String)

    public var text: String {
        switch self {
        case .ipv4(let address, let port): return Self.ipv4Text(address, port: port)
        case .text(let text): return text
        }
    }

    /// `192.0.2.1:80`, as `Endpoint.describe` writes it, digit by digit (no inet_ntop, no sprintf).
    public static func ipv4Text(_ address: UInt32, port: UInt16) -> String {
        // "255.255.255.255:65535" is 21 bytes, written backwards from the end.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { buffer in
            var start = buffer.count
            func prepend(_ value: UInt32, _ separator: UInt8?) {
                var value = value
                repeat {
                    start -= 1
                    buffer[start] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10)
                    value /= 10
                } while value > 0
                if let separator {
                    start -= 1
                    buffer[start] = separator
                }
            }
            prepend(UInt32(port), UInt8(ascii: ":"))
            prepend(address & 0xff, UInt8(ascii: "."))
            prepend(address >> 8 & 0xff, UInt8(ascii: "."))
            prepend(address >> 16 & 0xff, UInt8(ascii: "."))
            prepend(address >> 24, nil)
            return String(decoding: UnsafeBufferPointer(rebasing: buffer[start...]), as: UTF8.self)
        }
    }
}

/// The relayed connections by number (`connection N`): open addressing, indexed by the
/// number's low bits with linear probing. Numbers are handed out in order, so live ones
/// mostly land in distinct slots and an insert or a removal is an index and a store, with
/// no hashing (a Dictionary's insert and removal were a cost on every connection).
public struct ConnectionTable: Sendable {
    private typealias Entry = (number: Int, record: BalancerState.ConnectionRecord)
    /// A power of two in size, never more than half full, so every probe meets an empty slot.
    private var entries: [Entry?] = Array(repeating: nil, count: 16)
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    private var mask: Int { entries.count - 1 }

    public subscript(number: Int) -> BalancerState.ConnectionRecord? {
        index(of: number).map { entries[$0]!.record }
    }

    private func index(of number: Int) -> Int? {
        var index = number & mask
        // Bounded: at most every slot, and an empty one (there always is one) ends the probe.
        for _ in 0..<entries.count {
            guard let entry = entries[index] else { return nil }
            if entry.number == number { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    /// Adds a connection under a number not in the table (numbers are never reused).
    mutating func insert(_ record: BalancerState.ConnectionRecord, number: Int) {
        if (count + 1) * 2 > entries.count { grow() }
        place((number, record))
        count += 1
    }

    private mutating func place(_ entry: Entry) {
        var index = entry.number & mask
        while entries[index] != nil { index = (index + 1) & mask }  // bounded: half the slots are empty
        entries[index] = entry
    }

    private mutating func grow() {
        let old = entries
        entries = Array(repeating: nil, count: old.count * 2)
        for case let entry? in old { place(entry) }
    }

    /// Removes a connection; nothing for a number not there. Backward-shift deletion: the
    /// entries after the hole that probed past it move back, so no probe meets a false end.
    mutating func remove(_ number: Int) {
        guard var hole = index(of: number) else { return }
        var next = (hole + 1) & mask
        while let entry = entries[next] {  // bounded: an empty slot ends the run
            let home = entry.number & mask
            // The entry may fill the hole unless its home lies after the hole, up to it.
            if (next &- home) & mask >= (next &- hole) & mask {
                entries[hole] = entry
                hole = next
            }
            next = (next + 1) & mask
        }
        entries[hole] = nil
        count -= 1
    }
}
