import XCTest
@testable import VRRPCore

/// The second chance among N nodes behind ECMP routers: its configuration, where the strays
/// go, and the program that sends them.
final class ECMPSecondChanceTests: XCTestCase {
    private let own = HardwareAddress("02:00:00:00:00:01")!
    private let peerB = HardwareAddress("02:00:00:00:00:02")!
    private let peerC = HardwareAddress("02:00:00:00:00:03")!

    func testTheConfigurationBoundsItsPeersAndWritesBackAsGiven() throws {
        let peers: [SecondChance.Peer] = [.address(IPAddress("192.0.2.2")!), .hardware(peerC)]
        let secondChance = try ECMPSecondChance(interface: "eth0", peers: peers)
        XCTAssertEqual(secondChance.words, ["interface", "eth0", "second_chance", "192.0.2.2", "02:00:00:00:00:03"])
        XCTAssertEqual(secondChance.addressedPeers, [IPAddress("192.0.2.2")!])
        let sixteen = (1...16).map { SecondChance.Peer.address(IPAddress(ipv4: 0xC000_0200 + UInt32($0))) }
        XCTAssertNoThrow(try ECMPSecondChance(interface: "eth0", peers: sixteen))
        let refused: [(String, [SecondChance.Peer], String)] = [
            ("eth0", [], "at least one PEER"),
            ("eth0", sixteen + [.hardware(peerB)], "at most 16 peers"),
            ("eth0", [.hardware(peerB), .hardware(peerB)], "given twice"),
            ("", peers, "not an interface name"), ("a-very-long-name", peers, "not an interface name"),
            ("eth0/1", peers, "not an interface name"), ("eth 0", peers, "not an interface name"),
        ]
        for (interface, peers, reason) in refused {
            XCTAssertThrowsError(try ECMPSecondChance(interface: interface, peers: peers)) {
                XCTAssertTrue("\($0)".contains(reason), "\(interface) \(peers): \($0)")
            }
        }
    }

    /// Every node may carry the same list: its own entry is skipped, as are peers not in the
    /// neighbour table yet and a hardware address named twice (once by IP address).
    func testTheStraysGoToEveryKnownPeerButThisNode() throws {
        let (a, b, c, d) = (IPAddress("192.0.2.1")!, IPAddress("192.0.2.2")!, IPAddress("192.0.2.3")!, IPAddress("192.0.2.4")!)
        let secondChance = try ECMPSecondChance(interface: "eth0", peers: [.address(a), .address(b), .hardware(peerC), .address(c), .address(d)])
        let known = [a: own, b: peerB, c: peerC]
        XCTAssertEqual(secondChance.destinations(known: known, own: own), [peerB, peerC])
        XCTAssertEqual(secondChance.destinations(known: [:], own: own), [peerC])
        XCTAssertEqual(secondChance.destinations(known: [:], own: peerC), [])
    }

    // MARK: The program

    private let prefixes = [VirtualAddress("203.0.113.200")!, VirtualAddress("198.51.100.0/24")!]

    private func program(peers: [HardwareAddress]) -> SecondChanceProgram {
        .spread(prefixes: prefixes, peers: peers, own: own, interfaceIndex: 7)
    }

    private func jumpTargets(_ program: SecondChanceProgram) -> [(index: Int, target: Int)] {
        program.instructions.enumerated().compactMap { index, instruction in
            let jumpClass = instruction.code & 0x07 == 0x05 || instruction.code & 0x07 == 0x06
            guard jumpClass, instruction.code != 0x85, instruction.code != 0x95 else { return nil }
            return (index, index + 1 + Int(instruction.offset))
        }
    }

    func testEveryJumpGoesForwardWithinTheProgramWhichEndsInExit() {
        for peers in [[], [peerB], [peerB, peerC]] {
            let program = program(peers: peers)
            for (index, target) in jumpTargets(program) {
                XCTAssertTrue(target > index && target < program.instructions.count, "jump at \(index) to \(target)")
            }
            XCTAssertEqual(program.instructions.last, .exit)
            XCTAssertEqual(program.name, "penha_ecmp")
        }
    }

    /// Little-endian loads of 203.0.113.200 and of 198.51.100.0 have the top bit set: the
    /// comparisons are 32 bits (JMP32), the mask too (ALU32), never sign-extended 64-bit ones.
    func testTheDestinationsAreComparedIn32BitsAndAShorterPrefixIsMasked() {
        let instructions = program(peers: [peerB]).instructions
        let host = instructions.filter { $0.immediate == Int32(bitPattern: 0xC871_00CB) }
        XCTAssertEqual(host.map(\.code), [0x16], "203.0.113.200 as one JMP32 equality")
        XCTAssertEqual(host.first?.destination, .r4)
        guard let mask = instructions.firstIndex(where: { $0.code == 0x54 }) else { return XCTFail("no mask") }
        XCTAssertEqual(instructions[mask - 1], .move(.r5, from: .r4), "the mask works on a copy")
        XCTAssertEqual(instructions[mask].immediate, 0x00FF_FFFF, "/24 in network order")
        XCTAssertEqual(instructions[mask + 1].code, 0x16)
        XCTAssertEqual(instructions[mask + 1].destination, .r5)
        XCTAssertEqual(instructions[mask + 1].immediate, 0x0064_33C6, "198.51.100.0")
        XCTAssertFalse(instructions.contains { $0.code == 0x15 && $0.destination == .r4 }, "no 64-bit comparison of a loaded word")
    }

    /// One copy per peer, each with its own destination and this node's source, and the
    /// original dropped; a segment from a peer jumps past every copy to the drop: one hop.
    func testAStrayIsCopiedToEveryPeerAndOneFromAPeerIsDroppedWithoutACopy() {
        let program = program(peers: [peerB, peerC])
        let instructions = program.instructions
        XCTAssertEqual(instructions.filter { $0.code == 0x85 }.map(\.immediate), [99, 100, 86, 10, 13, 13],
                       "lookup, SYN cookie check, release, the copy mark's checksum, two copies")
        XCTAssertFalse(instructions.contains { $0.code == 0x85 && $0.immediate == 23 }, "no plain redirect: the original is not sent on")
        let stores = instructions.filter { $0.code == 0x62 || $0.code == 0x6A }
        XCTAssertEqual(stores.map(\.offset), [0, 4, 6, 10, 0, 4, 6, 10])
        XCTAssertEqual(stores.map(\.immediate), [peerB.firstWord, peerB.lastHalf, own.firstWord, own.lastHalf,
                                                 peerC.firstWord, peerC.lastHalf, own.firstWord, own.lastHalf])
        XCTAssertTrue(instructions.contains(BPFInstruction(0xB7, .r2, immediate: 7)), "out of the interface it came in by")
        guard let drop = instructions.lastIndex(of: BPFInstruction(0xB7, .r0, immediate: 2)),
              let lastCopy = instructions.lastIndex(where: { $0.code == 0x85 && $0.immediate == 13 }) else { return XCTFail("\(instructions)") }
        XCTAssertEqual(instructions[drop + 1], .exit)
        XCTAssertGreaterThan(drop, lastCopy, "the original is dropped after its copies")
        // Each peer: not its first four bytes skips the test of its last two.
        let fromPeer = jumpTargets(program).filter { index, _ in
            instructions[index].code == 0x16 && instructions[index].destination == .r5 && instructions[index - 1].code == 0x56
        }
        XCTAssertEqual(fromPeer.map { instructions[$0.index].immediate }, [peerB.lastHalf, peerC.lastHalf])
        XCTAssertEqual(fromPeer.map(\.target), [drop, drop], "from a peer: dropped, no copy")
        let firstWords = instructions.filter { $0.code == 0x56 && $0.destination == .r4 && $0.offset == 1 }.map(\.immediate)
        XCTAssertEqual(firstWords, [peerB.firstWord, peerC.firstWord])
        // Every copy comes after the SYN test, which passes a SYN up.
        guard let syn = instructions.firstIndex(where: { $0.code == 0x46 && $0.immediate == 0x02 }),
              let lookup = instructions.firstIndex(where: { $0.code == 0x85 && $0.immediate == 99 }) else { return XCTFail() }
        XCTAssertLessThan(syn, lookup)
    }

    /// The most a configuration asks for (64 prefixes, 16 peers) stays far below the 4096
    /// instructions an unprivileged program may have, let alone the verifier's million.
    func testTheLargestProgramIsBounded() {
        let many = (0..<64).map { VirtualAddress(address: IPAddress(ipv4: 0xCB00_7100 + UInt32($0)), prefixLength: $0 % 2 == 0 ? 32 : 31) }
        let peers = (0..<16).compactMap { HardwareAddress(bytes: [2, 0, 0, 0, 1, UInt8($0)]) }
        let program = SecondChanceProgram.spread(prefixes: many, peers: peers, own: own, interfaceIndex: 1)
        XCTAssertLessThan(program.instructions.count, 600)
        XCTAssertEqual(program.instructions.filter { $0.code == 0x85 && $0.immediate == 13 }.count, 16)
    }
}
