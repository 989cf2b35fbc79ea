/// The second chance's two eBPF programs for tc ingress (`SecondChance`), assembled here
/// from a few dozen instructions with the instance's constants (VIPs, hardware addresses,
/// interface) in them: no compiler, no object file and no map to ship, and the bytes are a
/// pure function of the configuration, tested like any other. The I/O side loads them with
/// bpf(2) and attaches them with tc (`tc filter show dev IF ingress` shows them).
public struct SecondChanceProgram: Equatable, Sendable {
    /// The name the kernel shows (`bpftool prog`), at most 15 characters.
    public let name: String
    public let instructions: [BPFInstruction]

    /// What the kernel takes: 8 bytes per instruction (`struct bpf_insn`).
    public var bytes: [UInt8] { instructions.flatMap(\.bytes) }

    /// The new master's: a TCP segment for a VIP that is not a SYN and matches no local socket
    /// but a listener (`bpf_skc_lookup_tcp`; a listener would answer it with a reset), and is
    /// not the ACK of one of this node's SYN cookies (`bpf_tcp_check_syncookie`), goes on
    /// to the peer, its destination hardware address the peer's and its source this node's
    /// (a switch must not learn the client's address on this port), out of the interface it
    /// came in by. A segment that comes from the peer is never passed back: one hop at most,
    /// so the two nodes cannot bounce a segment between them. IPv4 without options, not
    /// fragmented; anything else goes up the stack as before. `silencingARP`: the old
    /// master's, which also drops ARP requests for the VIPs (`arpSilence`) and passes on what
    /// is not its own, should it still receive it (a client that has not heard of the move).
    public static func redirect(virtualAddresses: [IPAddress], peer: HardwareAddress, own: HardwareAddress,
                                interfaceIndex: Int32, silencingARP: Bool = false) -> SecondChanceProgram {
        var program = Assembler()
        program.add(.move(.r6, from: .r1))
        if silencingARP { program.silenceARP(virtualAddresses) }
        program.passUnlessTCPOverIPv4(to: virtualAddresses.map(VirtualAddress.host))
        program.add(.load(.r4, .word, from: .r2, offset: Offset.ethernetSource))
        program.jump(.notEqual, .r4, peer.firstWord, to: .fromElsewhere)
        program.add(.load(.r4, .half, from: .r2, offset: Offset.ethernetSource + 4))
        program.jump(.equal, .r4, peer.lastHalf, to: .pass)
        program.label(.fromElsewhere)
        program.add(.load(.r4, .byte, from: .r2, offset: Offset.tcpFlags))
        program.jump(.anyBitOf, .r4, 0x02, to: .pass)
        program.passIfConnection(else: .redirect)
        program.label(.redirect)
        program.addressTo(peer, from: own)
        program.add(.move(.r1, Int32(interfaceIndex)))
        program.add(.move(.r2, 0))
        program.add(.call(.redirect))  // TC_ACT_REDIRECT, or TC_ACT_SHOT for a bad interface
        program.add(.exit)
        program.passLabel()
        return SecondChanceProgram(name: silencingARP ? "penha_drain" : "penha_redirect", instructions: program.assembled)
    }

    /// For N active nodes behind ECMP routers (`ECMPSecondChance`): a TCP segment for one of
    /// `prefixes` that is not a SYN and matches no local socket but a listener is a stray.
    /// One that came from the router (the routers moved its flow here) is copied to every
    /// peer, destination hardware address the peer's and source this node's
    /// (`bpf_clone_redirect` out of the interface it came in by), marked as a copy (IPv4's
    /// reserved flag, which the stack ignores), and dropped here; the peer that has the
    /// connection accepts its copy. A marked one, or one from a peer (a penha that marked no
    /// copies), is another node's copy of a segment this node does not own: dropped, never
    /// passed up (the stack would answer with a reset) and never copied on, so a segment makes
    /// one hop at most, even between nodes whose lists leave each other out. A segment of this
    /// node's own connections, from anywhere, goes up as before.
    public static func spread(prefixes: [VirtualAddress], peers: [HardwareAddress], own: HardwareAddress,
                              interfaceIndex: Int32) -> SecondChanceProgram {
        var program = Assembler()
        program.add(.move(.r6, from: .r1))
        program.passUnlessTCPOverIPv4(to: prefixes)
        program.add(.load(.r4, .byte, from: .r2, offset: Offset.tcpFlags))
        program.jump(.anyBitOf, .r4, 0x02, to: .pass)
        program.passIfConnection(else: .stray)
        program.label(.stray)
        program.loadPacketBounds(context: .r6)
        program.passUnless(.r2, holds: Offset.tcpFlags + 1, within: .r3)
        program.add(.load(.r4, .half, from: .r2, offset: Offset.ipFragment))
        program.jump(.anyBitOf, .r4, BPFInstruction.networkOrder(half: Offset.copyMark), to: .drop)
        program.add(.load(.r4, .word, from: .r2, offset: Offset.ethernetSource))
        program.add(.load(.r5, .half, from: .r2, offset: Offset.ethernetSource + 4))
        for peer in peers {
            // Not this peer's first four bytes: skip the test of its last two.
            program.add(.conditional(.notEqual, .r4, peer.firstWord, offset: 1))
            program.jump(.equal, .r5, peer.lastHalf, to: .drop)
        }
        program.markCopy()
        for peer in peers {
            // The copy before made the packet's pointers stale: the verifier wants them again.
            program.addressTo(peer, from: own)
            program.add(.move(.r1, from: .r6))
            program.add(.move(.r2, Int32(interfaceIndex)))
            program.add(.move(.r3, 0))  // out of the interface (egress)
            program.add(.call(.cloneRedirect))
        }
        program.label(.drop)
        program.add(.move(.r0, 2))  // TC_ACT_SHOT
        program.add(.exit)
        program.passLabel()
        return SecondChanceProgram(name: "penha_ecmp", instructions: program.assembled)
    }

    /// The old master's while it drains: ARP requests for a VIP are dropped, so this node
    /// (which still accepts the VIP's packets, the VIP being on `lo`) never answers them and
    /// clients stay with the new master.
    public static func arpSilence(virtualAddresses: [IPAddress]) -> SecondChanceProgram {
        var program = Assembler()
        program.add(.move(.r6, from: .r1))
        program.silenceARP(virtualAddresses)
        program.passLabel()
        return SecondChanceProgram(name: "penha_arp_quiet", instructions: program.assembled)
    }

    /// Byte offsets in an Ethernet frame with an IPv4 header of 20 bytes, and in `struct
    /// __sk_buff` and `struct bpf_sock` (the kernel's stable UAPI).
    enum Offset {
        static let ethernetDestination: Int16 = 0
        static let ethernetSource: Int16 = 6
        static let etherType: Int16 = 12
        static let ipHeader: Int16 = 14
        static let ipVersionAndLength = ipHeader
        static let ipFragment: Int16 = 20
        /// The reserved bit of the flags and fragment offset (RFC 791): set on ECMP's copies.
        static let copyMark: UInt16 = 0x8000
        static let ipProtocol: Int16 = 23
        static let ipChecksum: Int16 = 24
        static let ipSource: Int16 = 26
        static let ipDestination: Int16 = 30
        static let tcpHeader: Int16 = 34
        static let tcpPorts = tcpHeader
        static let tcpFlags: Int16 = 47
        static let arpOperation: Int16 = 20
        static let arpTarget: Int16 = 38
        static let contextData: Int16 = 76
        static let contextDataEnd: Int16 = 80
        static let socketState: Int16 = 72
    }
}

/// Instructions with jumps to labels, resolved once all are in.
private struct Assembler {
    enum Label: Hashable { case pass, notARP, virtualTarget, fromElsewhere, virtualDestination, release, redirect, stray, drop }

    private enum Item {
        case instruction(BPFInstruction)
        case jump(BPFInstruction.Condition, BPFInstruction.Register, Int32, Label)
        case label(Label)
    }

    private var items: [Item] = []

    mutating func add(_ instruction: BPFInstruction) { items.append(.instruction(instruction)) }
    mutating func jump(_ condition: BPFInstruction.Condition, _ register: BPFInstruction.Register, _ value: Int32, to label: Label) {
        items.append(.jump(condition, register, value, label))
    }
    mutating func label(_ label: Label) { items.append(.label(label)) }

    /// r2 = skb->data, r3 = skb->data_end.
    mutating func loadPacketBounds(context: BPFInstruction.Register) {
        add(.load(.r2, .word, from: context, offset: SecondChanceProgram.Offset.contextData))
        add(.load(.r3, .word, from: context, offset: SecondChanceProgram.Offset.contextDataEnd))
    }

    /// The verifier's bounds check: the packet holds `length` bytes from `start`, or pass.
    mutating func passUnless(_ start: BPFInstruction.Register, holds length: Int16, within end: BPFInstruction.Register) {
        add(.move(.r4, from: start))
        add(.add(.r4, Int32(length)))
        jump(.aboveRegister(end), .r4, 0, to: .pass)
    }

    /// Goes on (at `then`) when the 4 bytes at `offset` of the packet (r2) are within one of
    /// the IPv4 prefixes, else passes. A host prefix is one comparison; a shorter one masks a
    /// copy (r5) first.
    mutating func passUnlessVirtual(offset: Int16, _ prefixes: [VirtualAddress], then: Label) {
        add(.load(.r4, .word, from: .r2, offset: offset))
        for prefix in prefixes {
            let address = prefix.address.ipv4 ?? 0
            guard prefix.prefixLength < 32 else {
                jump(.equal, .r4, BPFInstruction.networkOrder(word: address), to: then)
                continue
            }
            let mask = UInt32.max << (32 - UInt32(max(prefix.prefixLength, 0)))
            add(.move(.r5, from: .r4))
            add(.and32(.r5, BPFInstruction.networkOrder(word: mask)))
            jump(.equal, .r5, BPFInstruction.networkOrder(word: address & mask), to: then)
        }
        jump(.always, .r4, 0, to: .pass)
        label(then)
    }

    /// Passes unless the packet is a first (or whole) IPv4 datagram without options carrying
    /// TCP to one of `destinations`, whose header up to the flags it holds; r2 and r3 then
    /// hold its bounds. The context is in r6.
    mutating func passUnlessTCPOverIPv4(to destinations: [VirtualAddress]) {
        loadPacketBounds(context: .r6)
        passUnless(.r2, holds: SecondChanceProgram.Offset.tcpFlags + 1, within: .r3)
        add(.load(.r4, .half, from: .r2, offset: SecondChanceProgram.Offset.etherType))
        jump(.notEqual, .r4, BPFInstruction.networkOrder(half: 0x0800), to: .pass)
        add(.load(.r4, .byte, from: .r2, offset: SecondChanceProgram.Offset.ipVersionAndLength))
        jump(.notEqual, .r4, 0x45, to: .pass)
        add(.load(.r4, .byte, from: .r2, offset: SecondChanceProgram.Offset.ipProtocol))
        jump(.notEqual, .r4, 6, to: .pass)
        // More fragments, or a fragment offset: only a first, whole datagram has the TCP header.
        add(.load(.r4, .half, from: .r2, offset: SecondChanceProgram.Offset.ipFragment))
        jump(.anyBitOf, .r4, BPFInstruction.networkOrder(half: 0x3FFF), to: .pass)
        passUnlessVirtual(offset: SecondChanceProgram.Offset.ipDestination, destinations, then: .virtualDestination)
    }

    /// Passes a segment of one of this node's connections (`bpf_skc_lookup_tcp` finds a
    /// socket that is not a listener: a listener would answer it with a reset) and jumps to
    /// `stray` with any other. The packet's bounds are in r2 and r3, the context in r6.
    mutating func passIfConnection(else stray: Label) {
        // struct bpf_sock_tuple's ipv4 part on the stack: source, destination, ports.
        for (index, offset) in [SecondChanceProgram.Offset.ipSource, SecondChanceProgram.Offset.ipDestination,
                                SecondChanceProgram.Offset.tcpPorts].enumerated() {
            add(.load(.r4, .word, from: .r2, offset: offset))
            add(.store(.word, .r10, offset: Int16(-16 + 4 * index), from: .r4))
        }
        add(.move(.r1, from: .r6))
        add(.move(.r2, from: .r10))
        add(.add(.r2, -16))
        add(.move(.r3, 12))
        add(.move(.r4, -1))  // BPF_F_CURRENT_NETNS
        add(.move(.r5, 0))
        add(.call(.skcLookupTCP))
        jump(.equal64, .r0, 0, to: stray)
        passSYNCookieACKs(socket: .r0, context: .r6)
    }

    /// With the socket `bpf_skc_lookup_tcp` found (a reference to release on every path): a
    /// connection's own socket passes the segment up the stack, and so does a listener for the
    /// ACK of a valid SYN cookie (`bpf_tcp_check_syncookie`: the kernel answered the SYN with a
    /// cookie, so no request socket exists, and the peer could not know the cookie); a listener
    /// alone goes on, below. r7 holds the verdict (0: pass), r8 the socket.
    private mutating func passSYNCookieACKs(socket: BPFInstruction.Register, context: BPFInstruction.Register) {
        add(.move(.r8, from: socket))
        add(.load(.r4, .word, from: .r8, offset: SecondChanceProgram.Offset.socketState))
        add(.move(.r7, 0))
        jump(.notEqual, .r4, 10, to: .release)  // TCP_LISTEN
        add(.move(.r7, 1))
        loadPacketBounds(context: context)
        add(.move(.r4, from: .r2))
        add(.add(.r4, Int32(SecondChanceProgram.Offset.tcpHeader + 20)))
        jump(.aboveRegister(.r3), .r4, 0, to: .release)
        add(.move(.r1, from: .r8))
        add(.move(.r4, from: .r2))
        add(.add(.r4, Int32(SecondChanceProgram.Offset.tcpHeader)))
        add(.add(.r2, Int32(SecondChanceProgram.Offset.ipHeader)))
        add(.move(.r3, 20))
        add(.move(.r5, 20))
        add(.call(.tcpCheckSYNCookie))
        add(.move(.r7, from: .r0))  // 0: a valid cookie
        label(.release)
        add(.move(.r1, from: .r8))
        add(.call(.skRelease))
        jump(.equal, .r7, 0, to: .pass)
    }

    /// Rewrites the packet's hardware addresses: destination `destination`, source `source`
    /// (a switch must not learn the client's address on this port). Passes a packet too
    /// short, which the checks before have ruled out, for the verifier. The context is in r6.
    mutating func addressTo(_ destination: HardwareAddress, from source: HardwareAddress) {
        loadPacketBounds(context: .r6)
        passUnless(.r2, holds: 12, within: .r3)
        add(.storeImmediate(.word, to: .r2, offset: SecondChanceProgram.Offset.ethernetDestination, destination.firstWord))
        add(.storeImmediate(.half, to: .r2, offset: SecondChanceProgram.Offset.ethernetDestination + 4, destination.lastHalf))
        add(.storeImmediate(.word, to: .r2, offset: SecondChanceProgram.Offset.ethernetSource, source.firstWord))
        add(.storeImmediate(.half, to: .r2, offset: SecondChanceProgram.Offset.ethernetSource + 4, source.lastHalf))
    }

    /// Sets `Offset.copyMark` in the IPv4 header (whose 48 bytes the checks before have ruled
    /// in: again for the verifier) and updates its checksum. The context is in r6.
    mutating func markCopy() {
        loadPacketBounds(context: .r6)
        passUnless(.r2, holds: SecondChanceProgram.Offset.tcpFlags + 1, within: .r3)
        add(.load(.r4, .half, from: .r2, offset: SecondChanceProgram.Offset.ipFragment))
        add(.move(.r5, from: .r4))
        add(.or32(.r5, BPFInstruction.networkOrder(half: SecondChanceProgram.Offset.copyMark)))
        add(.store(.half, .r2, offset: SecondChanceProgram.Offset.ipFragment, from: .r5))
        // bpf_l3_csum_replace(skb, offset, from, to, 2): both halves as they are in the packet.
        add(.move(.r1, from: .r6))
        add(.move(.r2, Int32(SecondChanceProgram.Offset.ipChecksum)))
        add(.move(.r3, from: .r4))
        add(.move(.r4, from: .r5))
        add(.move(.r5, 2))
        add(.call(.l3ChecksumReplace))
    }

    /// Drops an ARP request for a VIP (TC_ACT_SHOT), passes any other ARP and goes on at
    /// `notARP` with the rest. The context is in r6.
    mutating func silenceARP(_ addresses: [IPAddress]) {
        loadPacketBounds(context: .r6)
        add(.move(.r4, from: .r2))
        add(.add(.r4, Int32(SecondChanceProgram.Offset.arpTarget + 4)))
        jump(.aboveRegister(.r3), .r4, 0, to: .notARP)
        add(.load(.r4, .half, from: .r2, offset: SecondChanceProgram.Offset.etherType))
        jump(.notEqual, .r4, BPFInstruction.networkOrder(half: 0x0806), to: .notARP)
        add(.load(.r4, .half, from: .r2, offset: SecondChanceProgram.Offset.arpOperation))
        jump(.notEqual, .r4, BPFInstruction.networkOrder(half: 1), to: .pass)
        passUnlessVirtual(offset: SecondChanceProgram.Offset.arpTarget, addresses.map(VirtualAddress.host), then: .virtualTarget)
        add(.move(.r0, 2))  // TC_ACT_SHOT
        add(.exit)
        label(.notARP)
    }

    /// `return TC_ACT_UNSPEC`: the packet goes on as if there were no program, to the next
    /// filter if there is one (TC_ACT_OK would end the chain: another instance's program, or
    /// an operator's filter after this one, would never see it).
    mutating func passLabel() {
        label(.pass)
        add(.move(.r0, -1))
        add(.exit)
    }

    var assembled: [BPFInstruction] {
        var positions: [Label: Int] = [:]
        var count = 0
        for item in items {
            if case .label(let label) = item { positions[label] = count } else { count += 1 }
        }
        var result: [BPFInstruction] = []
        for item in items {
            switch item {
            case .instruction(let instruction):
                result.append(instruction)
            case .jump(let condition, let register, let value, let label):
                // Every label used is placed above: a missing one is a bug in this file, caught
                // by the tests (a jump to itself would never pass the verifier).
                let target = positions[label] ?? result.count
                result.append(.conditional(condition, register, value, offset: Int16(target - result.count - 1)))
            case .label:
                break
            }
        }
        return result
    }
}
