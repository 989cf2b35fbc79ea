/// Maglev's consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
/// Network Load Balancer", NSDI 2016, section 3.4): a lookup table of a prime size M in which
/// each server, in turns, takes the next free slot its own permutation of the table names.
/// Every node that knows the same servers builds the same table, so nodes that share no state
/// send a new client to the same server; a server that leaves gives up only its own slots
/// (almost: section 3.4's small extra disruption), and one that joins takes about 1/(N+1)
/// of them. Weighted: a server of weight w takes w turns a round. Pure: names and weights in,
/// a table out; the hashes are fixed (FNV-1a and SplitMix64), never Swift's seeded Hasher, so
/// every process builds the same table.
public struct MaglevTable: Equatable, Sendable {
    /// One server as every node names it: `host:port` as configured, and its weight.
    public struct Member: Equatable, Sendable {
        public let index: Int
        public let name: String
        public let weight: Int

        public init(index: Int, name: String, weight: Int) {
            self.index = index
            self.name = name
            self.weight = weight
        }
    }

    /// The smallest of these primes at least 100 times the servers is the table's size
    /// (section 3.4: M > 100 N keeps each server's share within about 1%).
    public static let sizes = [65_537, 131_071, 262_147, 524_287, 1_048_573]

    public let members: [Member]
    public let size: Int
    /// The member (its position in `members`) each slot sends to; empty when no member has weight.
    private let entries: [Int32]

    /// `size`: nil picks from `sizes`; a given one must be prime (tests use small ones).
    public init(members: [Member], size: Int? = nil) {
        // By name, not as listed: nodes whose files list the same servers in another order agree.
        let weighted = members.filter { $0.weight > 0 }.sorted { ($0.name, $0.index) < ($1.name, $1.index) }
        self.members = weighted
        self.size = size ?? Self.sizes.first { $0 >= 100 * weighted.count } ?? Self.sizes[Self.sizes.count - 1]
        entries = Self.populate(weighted, size: self.size)
    }

    /// The server (its index in the server table) for a client's hash; nil without members.
    public func server(for hash: UInt64) -> Int? {
        guard !entries.isEmpty else { return nil }
        return members[Int(entries[Int(hash % UInt64(size))])].index
    }

    /// How many slots each member holds, by server index: the balance the paper measures.
    public var shares: [Int: Int] {
        var counts: [Int: Int] = [:]
        for entry in entries { counts[members[Int(entry)].index, default: 0] += 1 }
        return counts
    }

    /// The slots whose server differs between two tables of one size: the clients that move.
    public func moved(to other: MaglevTable) -> Int {
        guard size == other.size, !entries.isEmpty, !other.entries.isEmpty else { return size }
        var moved = 0
        for slot in 0..<size where members[Int(entries[slot])].index != other.members[Int(other.entries[slot])].index {
            moved += 1
        }
        return moved
    }

    /// Pseudocode 1 of the paper: each member's permutation is offset + j × skip (mod M),
    /// from two hashes of its name; members take turns (`turnsPerRound` a round), each
    /// taking the next slot of its permutation that is still free, until all M are taken.
    /// Bounded: every turn fills a slot, and a permutation visits every slot (M is prime).
    private static func populate(_ members: [Member], size: Int) -> [Int32] {
        guard !members.isEmpty else { return [] }
        let modulus = UInt64(size)
        let offsets = members.map { fnv1a($0.name, seed: 0) % modulus }
        let skips = members.map { fnv1a($0.name, seed: 1) % (modulus - 1) + 1 }
        let turns = turnsPerRound(members.map(\.weight), size: size)
        var next = [UInt64](repeating: 0, count: members.count)
        var entries = [Int32](repeating: -1, count: size)
        var filled = 0
        while true {
            for member in members.indices {
                for _ in 0..<turns[member] {
                    var slot = Int((offsets[member] &+ next[member] &* skips[member]) % modulus)
                    while entries[slot] >= 0 {
                        next[member] += 1
                        slot = Int((offsets[member] &+ next[member] &* skips[member]) % modulus)
                    }
                    entries[slot] = Int32(member)
                    next[member] += 1
                    filled += 1
                    if filled == size { return entries }
                }
            }
        }
    }

    /// Each member's turns a round, in proportion to its weight: the weights divided by their
    /// greatest common divisor, and scaled down (at least 1 each) when a round would not fit
    /// the table 16 times; a weight of 1,000,000 must not fill the table in its first turns.
    static func turnsPerRound(_ weights: [Int], size: Int) -> [Int] {
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let divisor = max(1, weights.reduce(0, gcd))
        let turns = weights.map { $0 / divisor }
        let total = turns.reduce(0, +), most = max(1, size / 16)
        guard total > most else { return turns }
        return turns.map { max(1, Int(Double($0) * Double(most) / Double(total))) }
    }

    /// FNV-1a over the name, the seed first, through SplitMix64's finaliser: two independent
    /// hashes of one name, the same in every process.
    static func fnv1a(_ text: String, seed: UInt8) -> UInt64 {
        // The seed, then the text's bytes: no array, as this runs for each server.
        var hash = (0xCBF2_9CE4_8422_2325 ^ UInt64(seed)) &* 0x100_0000_01B3
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return mix(hash)
    }

    /// SplitMix64's finaliser: spreads neighbouring values.
    static func mix(_ value: UInt64) -> UInt64 {
        var value = value
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
