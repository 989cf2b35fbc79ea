import VRRPCore

/// The second chance among ECMP nodes (`ECMPSecondChance`), as I/O: keeps
/// `SecondChanceProgram.spread` at tc ingress on the configured interface (preference
/// `filterPriority`, handle 1) for the peers whose hardware addresses are known, and brings it
/// up to date as they become known or change. A peer named by its IPv4 address is read from
/// the operator's permanent entry in the neighbour table (never one ARP filled in), and left
/// out while there is none. With no peer known yet nothing is installed: a
/// stray is reset as without the second chance, rather than dropped with no copy made.
/// One thread calls it (the BGP announcer's), so it keeps its state without a lock.
public final class ECMPSecondChanceTraffic {
    /// Below vrrp's (49152 + VRID, from 49153), so the two never take each other's place.
    public static let filterPriority: UInt32 = 49152

    /// A line for the log, and whether it says what failed.
    private let log: (_ line: String, _ failed: Bool) -> Void
    /// What is at tc ingress now.
    private var installed: (filter: TCIngressFilter, program: SecondChanceProgram)?
    private var known: [IPAddress: HardwareAddress] = [:]
    /// What a penha before this one left at the filter's place (one killed before its drain
    /// ended, or the one this took over from): the first attach replaces it in place, with no
    /// moment without a filter; with nothing to attach, the first update removes it.
    private var leftoversRemoved = false
    private var lastError: String?

    /// The peers the installed filter passes strays on to; 0 with none installed.
    public private(set) var peerCount = 0

    public init(log: @escaping (_ line: String, _ failed: Bool) -> Void) {
        self.log = log
    }

    /// Brings tc ingress to what `secondChance` asks for `prefixes`; nil removes the filter
    /// (`no bgp`, or penha's drain has ended). A failure is logged once, until it changes, and
    /// tried again at the next update.
    public func update(_ secondChance: ECMPSecondChance?, prefixes: [VirtualAddress]) {
        do {
            try reconcile(secondChance, prefixes: prefixes)
            lastError = nil
        } catch {
            let text = "\(error)"
            if text != lastError { log("bgp second chance: \(text)", true) }
            lastError = text
        }
    }

    private func reconcile(_ secondChance: ECMPSecondChance?, prefixes: [VirtualAddress]) throws {
        guard let secondChance else { return try remove() }
        let interface = try NetworkInterface(name: secondChance.interface)
        let filter = TCIngressFilter(interfaceIndex: interface.index, priority: Self.filterPriority)
        if let installed, installed.filter != filter { try remove() }
        guard let own = HardwareAddress(bytes: try interface.hardwareAddress()) else {
            throw VRRPSystemError("\(interface.name) has no Ethernet address")
        }
        let local = Set(interface.addresses(.v4))
        // Only the operator's permanent entries: any host on the link can answer ARP for a peer.
        for address in secondChance.addressedPeers where !local.contains(address) {
            known[address] = NeighbourTable.permanentHardwareAddress(of: address, on: interface.name)
        }
        let peers = secondChance.destinations(known: known, own: own)
        guard !peers.isEmpty else {
            if !leftoversRemoved { try filter.detach() }
            leftoversRemoved = true
            return try remove()
        }
        let program = SecondChanceProgram.spread(prefixes: prefixes, peers: peers, own: own, interfaceIndex: interface.index)
        guard installed?.program != program else { return }
        try filter.attach(program)
        leftoversRemoved = true
        installed = (filter, program)
        peerCount = peers.count
        log("bgp second chance on \(interface.name): strays for \(prefixes.map(\.description).joined(separator: " ")) "
            + "go on to \(peers.count) peers: \(peers.map(\.description).joined(separator: " "))", false)
    }

    private func remove() throws {
        guard let installed else { return }
        try installed.filter.detach()
        self.installed = nil
        peerCount = 0
        log("bgp second chance: the tc filter is removed", false)
    }
}
