/// `second_chance PEER` on a `vrrp` command: while the VIP moves between this node and PEER,
/// established connections survive (issue 20). The new master passes every TCP segment for a
/// VIP that belongs to none of its connections on to PEER (an eBPF program at tc ingress:
/// `SecondChanceProgram.redirect`), and the old master goes on accepting the VIP's packets
/// (the VIP on `lo`) without answering ARP for it (`SecondChanceProgram.arpSilence`), both
/// for the balancer's `drain` bound. PEER is the other node's hardware address, or its address
/// on the interface whose neighbour entry the operator has made permanent (one learnt by ARP
/// would come from whoever answers): never an address from a packet or an advert, so no
/// forged advert or ARP reply can send traffic elsewhere.
public struct SecondChance: Equatable, Sendable, CustomStringConvertible {
    public enum Peer: Equatable, Sendable {
        /// Resolved through the operator's permanent neighbour entry for it.
        case address(IPAddress)
        case hardware(HardwareAddress)
    }

    public let peer: Peer

    public init(peer: Peer) { self.peer = peer }

    /// `192.0.2.2` or `02:00:00:00:00:02`.
    public static func parse(_ text: String) throws -> SecondChance {
        if let hardware = HardwareAddress(text) {
            guard !hardware.isGroup else { throw VRRPCommandError("second_chance \(text) is a group address, not one peer's") }
            return SecondChance(peer: .hardware(hardware))
        }
        guard let address = IPAddress(text), address.family == .v4 else {
            throw VRRPCommandError("second_chance '\(text)' is not the peer's hardware address (like 02:00:5e:00:01:02) "
                                   + "or its IPv4 address (with a permanent neighbour entry)")
        }
        return SecondChance(peer: .address(address))
    }

    public var description: String {
        switch peer {
        case .address(let address): return "\(address)"
        case .hardware(let hardware): return "\(hardware)"
        }
    }
}

/// An Ethernet (EUI-48) address, written `aa:bb:cc:dd:ee:ff`.
public struct HardwareAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts.allSatisfy({ $0.count == 2 }) else { return nil }
        let bytes = parts.compactMap { UInt8($0, radix: 16) }
        self.init(bytes: bytes)
    }

    /// A group (multicast or broadcast) address names no single peer.
    public var isGroup: Bool { bytes[0] & 1 == 1 }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}
