/// `interface IF second_chance PEER [PEER ...]` on a `bgp` command: the second chance among N
/// active nodes behind routers that spread a VIP's flows by a hash (ECMP). When a node joins
/// or leaves, or the routers rehash, a flow's segments reach a node that does not have its
/// connection; that node copies each such segment to every peer on IF (an eBPF program at tc
/// ingress: `SecondChanceProgram.spread`), and the owner accepts its copy while the others
/// drop theirs. The peers share IF's link (the copies go by hardware address). A peer is an
/// IPv4 address (its hardware address is read from the neighbour table) or a hardware
/// address, never one learnt from a packet. This node's own entry is skipped, so every node
/// can carry the same list.
public struct ECMPSecondChance: Equatable, Sendable {
    /// Each stray is copied once per peer: a bound on the copies and on the program's length.
    public static let maxPeers = 16

    /// Where the routers deliver the VIPs' traffic, and where the peers are.
    public let interface: String
    public let peers: [SecondChance.Peer]

    public init(interface: String, peers: [SecondChance.Peer]) throws {
        // IFNAMSIZ is 16 with the terminating zero.
        guard (1...15).contains(interface.utf8.count), !interface.contains("/"), !interface.contains(where: \.isWhitespace) else {
            throw VRRPCommandError("interface '\(interface)' is not an interface name (1-15 characters, no '/' or space)")
        }
        guard !peers.isEmpty else { throw VRRPCommandError("second_chance needs at least one PEER") }
        guard peers.count <= Self.maxPeers else { throw VRRPCommandError("second_chance takes at most \(Self.maxPeers) peers") }
        for (index, peer) in peers.enumerated() where peers[..<index].contains(peer) {
            throw VRRPCommandError("second_chance: peer \(SecondChance(peer: peer)) is given twice")
        }
        self.interface = interface
        self.peers = peers
    }

    /// The peers named by an IPv4 address, to be looked up in the neighbour table.
    public var addressedPeers: [IPAddress] {
        peers.compactMap { peer in
            if case .address(let address) = peer { return address }
            return nil
        }
    }

    /// The hardware addresses the strays go to: each peer's as configured or as `known` from
    /// the neighbour table (a peer not known yet is left out until it is), without this node's
    /// own (`own`) and without repeats, in the configured order.
    public func destinations(known: [IPAddress: HardwareAddress], own: HardwareAddress) -> [HardwareAddress] {
        var result: [HardwareAddress] = []
        for peer in peers {
            let hardware: HardwareAddress?
            switch peer {
            case .hardware(let configured): hardware = configured
            case .address(let address): hardware = known[address]
            }
            guard let hardware, hardware != own, !result.contains(hardware) else { continue }
            result.append(hardware)
        }
        return result
    }

    /// `interface IF second_chance PEER ...`, as `write` gives it.
    public var words: [String] {
        ["interface", interface, "second_chance"] + peers.map { "\(SecondChance(peer: $0))" }
    }
}
