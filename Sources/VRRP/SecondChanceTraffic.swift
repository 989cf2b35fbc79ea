import CVRRPSockets
import Synchronization
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// The second chance of one instance (`SecondChance`), as I/O: it carries out what
/// `SecondChancePlan` decides. Its tc filter (`TCIngressFilter`) sits at ingress on the
/// instance's interface with the preference 49152 + VRID, handle 1: `tc filter show dev IF
/// ingress` shows it, `tc filter del dev IF ingress pref N` undoes it; penha removes it, and the
/// VIPs it put on `lo` (labelled `loopbackLabel`), when the window ends, on exit, and at start after a crash.
// Unchecked: the netlink socket of `addresses` is used only under `state`'s lock (every
// action is carried out there), the rest is immutable.
final class SecondChanceTraffic: @unchecked Sendable {
    private let secondChance: SecondChance
    private let interface: NetworkInterface
    private let loopback: NetworkInterface
    private let virtualAddresses: [VirtualAddress]
    private let addresses: VirtualAddresses
    private let log: @Sendable (String) -> Void
    private let logError: @Sendable (String) -> Void
    private let filter: TCIngressFilter
    private let state: Mutex<State>

    private struct State {
        var plan: SecondChancePlan
        /// The peer's hardware address as last read from the neighbour table.
        var peer: HardwareAddress?
        var peerReadAt: VRRPInstant?
    }

    /// The neighbour table is read at most this often, while the node is not master.
    static let peerReadInterval: UInt64 = 1_000_000_000

    init(_ secondChance: SecondChance, configuration: VRRPInstanceConfiguration, interface: NetworkInterface,
         window seconds: Int, log: @escaping @Sendable (String) -> Void, logError: @escaping @Sendable (String) -> Void) throws {
        // At start, not at the first takeover: a kernel that cannot is a clear error now.
        try SecondChanceSupport.check()
        self.secondChance = secondChance
        self.interface = interface
        loopback = try NetworkInterface(name: "lo")
        virtualAddresses = configuration.virtualAddresses
        addresses = try VirtualAddresses()
        self.log = log
        self.logError = logError
        filter = TCIngressFilter(interfaceIndex: interface.index, priority: 49152 + UInt32(configuration.vrid))
        var peer: HardwareAddress?
        switch secondChance.peer {
        case .hardware(let hardware):
            peer = hardware
        case .address(let address):
            peer = NeighbourTable.permanentHardwareAddress(of: address, on: interface.name)
            if peer == nil { logError("VRRP second chance on \(interface.name): \(Self.noPermanentEntry(secondChance, interface.name))") }
        }
        state = Mutex(State(plan: SecondChancePlan(seconds: seconds), peer: peer))
    }

    /// What a penha that died without cleaning up left (a filter, the VIPs on `lo`).
    func removeLeftovers() {
        state.withLock { _ in perform([.stopRedirecting, .stopAcceptingLocally]) }
    }

    var nextDeadline: VRRPInstant? { state.withLock { $0.plan.nextDeadline } }
    /// nil when no window is open; else when it ends (nil: with the process's drain).
    var openWindowEnd: VRRPInstant?? { state.withLock { $0.plan.isWindowOpen ? .some($0.plan.nextDeadline) : nil } }

    func resumedAsMaster() { state.withLock { $0.plan.resumedAsMaster() } }

    func becameMaster(now: VRRPInstant) { state.withLock { perform($0.plan.becameMaster(now: now), peer: $0.peer) } }
    func leftMaster(now: VRRPInstant) { state.withLock { perform($0.plan.leftMaster(now: now), peer: $0.peer) } }
    func tick(now: VRRPInstant) { state.withLock { perform($0.plan.tick(now: now)) } }
    func instanceStopped() { state.withLock { perform($0.plan.instanceStopped()) } }
    func drainEnded() { state.withLock { perform($0.plan.drainEnded()) } }
    func windowChanged(seconds: Int, now: VRRPInstant) { state.withLock { perform($0.plan.windowChanged(seconds: seconds, now: now)) } }

    /// Keeps the peer's hardware address current while this node is not master, so that it is
    /// known the moment this node takes over: the operator's permanent neighbour entry for the
    /// configured address. Never from a packet or an advert, nor from an entry ARP filled in:
    /// any host on the link can answer ARP for the peer's address.
    func refreshPeer(now: VRRPInstant) {
        guard case .address(let address) = secondChance.peer else { return }
        let due = state.withLock { state in
            guard state.peerReadAt.map({ now >= $0.advanced(by: Self.peerReadInterval) }) ?? true else { return false }
            state.peerReadAt = now
            return true
        }
        guard due else { return }
        let hardware = NeighbourTable.permanentHardwareAddress(of: address, on: interface.name)
        state.withLock { $0.peer = hardware }
    }

    /// Why an address alone gives no peer, and what to do.
    private static func noPermanentEntry(_ address: SecondChance, _ interface: String) -> String {
        "no permanent neighbour entry for peer \(address) on \(interface) (one learnt by ARP could come from any host): "
            + "add one (ip neigh replace \(address) lladdr MAC nud permanent dev \(interface)) or write second_chance MAC; "
            + "until then segments of connections that are not this node's are not passed on"
    }

    /// Under `state`'s lock, with the peer's hardware address as known then (for the actions
    /// that pass strays on to it).
    private func perform(_ actions: [SecondChancePlan.Action], peer: HardwareAddress? = nil) {
        for action in actions {
            do {
                try perform(action, peer: peer)
            } catch {
                log("VRRP second chance on \(interface.name): \(error)")
            }
        }
    }

    private func perform(_ action: SecondChancePlan.Action, peer: HardwareAddress?) throws {
        switch action {
        case .startRedirecting:
            guard let peer else { throw VRRPSystemError(Self.noPermanentEntry(secondChance, interface.name)) }
            guard let own = HardwareAddress(bytes: try interface.hardwareAddress()) else {
                throw VRRPSystemError("\(interface.name) has no Ethernet address")
            }
            // Strays sent to this node's own address reach nobody: better reset, as without it.
            guard peer != own else {
                throw VRRPSystemError("second_chance \(secondChance) is this node's own hardware address on \(interface.name) "
                                      + "(name the other node's); strays are not passed on")
            }
            try filter.attach(.redirect(virtualAddresses: virtualAddresses.map(\.address), peer: peer, own: own,
                                 interfaceIndex: interface.index))
            log("VRRP second chance on \(interface.name): passing strays for \(vipList) on to \(peer)")
        case .stopRedirecting, .stopAcceptingLocally:
            try filter.detach()
            if action == .stopAcceptingLocally {
                for address in virtualAddresses { try addresses.remove(Self.host(address), from: loopback, label: Self.loopbackLabel) }
            }
        case .startAcceptingLocally:
            // The silence first: without it a VIP on lo would be answered for beside the new
            // master's, so a failed attach lets the VIPs go as if there were no second chance.
            let vips = virtualAddresses.map(\.address)
            do {
                if let peer, let own = HardwareAddress(bytes: try interface.hardwareAddress()), peer != own {
                    try filter.attach(.redirect(virtualAddresses: vips, peer: peer, own: own, interfaceIndex: interface.index, silencingARP: true))
                } else {
                    try filter.attach(.arpSilence(virtualAddresses: vips))
                }
            } catch {
                return logError("VRRP second chance on \(interface.name): \(error): \(vipList) not kept on lo, "
                                + "established connections through it are not carried over")
            }
            for address in virtualAddresses { try addresses.add(Self.host(address), to: loopback, label: Self.loopbackLabel) }
            log("VRRP second chance on \(interface.name): accepting \(vipList) on lo, not answering ARP for it")
        }
    }

    private var vipList: String { virtualAddresses.map { "\($0.address)" }.joined(separator: " ") }

    /// What marks the VIPs penha puts on `lo` (`ip addr show dev lo` shows it): the removal
    /// names it, so an operator's own copy of a VIP on `lo` is never taken away.
    static let loopbackLabel = "lo:penha"

    /// The VIP alone: on `lo` it must not bring a route for its subnet with it.
    private static func host(_ address: VirtualAddress) -> VirtualAddress {
        VirtualAddress(address: address.address, prefixLength: 32)
    }
}

/// Whether this kernel takes the second chance's programs (VRRP's and ECMP's), for `penha
/// check` and the start: loads each once (with stand-in addresses) and unloads it.
public enum SecondChanceSupport {
    public static func check() throws {
        guard let stand = HardwareAddress(bytes: [2, 0, 0, 0, 0, 1]) else { return }
        let vip = [IPAddress(ipv4: 0xC000_020A)]
        for program in [SecondChanceProgram.redirect(virtualAddresses: vip, peer: stand, own: stand, interfaceIndex: 1),
                        .redirect(virtualAddresses: vip, peer: stand, own: stand, interfaceIndex: 1, silencingARP: true),
                        .arpSilence(virtualAddresses: vip),
                        .spread(prefixes: [VirtualAddress(address: vip[0], prefixLength: 32)], peers: [stand], own: stand,
                                interfaceIndex: 1)] {
            close(try TCIngressFilter.load(program))
        }
    }
}

/// The kernel's IPv4 neighbour table (ARP), as `ip -4 neigh` shows it.
enum NeighbourTable {
    /// A permanent entry's hardware address (`nud permanent`: set by the operator, never by a
    /// packet), from /proc/net/arp (of this network namespace).
    static func permanentHardwareAddress(of address: IPAddress, on interface: String) -> HardwareAddress? {
        let fd = open("/proc/net/arp", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // Bounded: 256 KB is some 3000 entries; a bigger table is read that far.
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while text.count < 262_144 {
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { break }
            text += buffer[0..<count]
        }
        let wanted = "\(address)"
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n").dropFirst() {
            // IP address, HW type, Flags (ATF_COM 0x2: complete, ATF_PERM 0x4), HW address, Mask, Device.
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[0] == wanted, fields[5] == interface,
                  let flags = Int(fields[2].dropFirst(2), radix: 16), flags & 0x6 == 0x6 else { continue }
            return HardwareAddress(String(fields[3]))
        }
        return nil
    }
}
