import XCTest
@testable import VRRPCore

final class SecondChanceTests: XCTestCase {
    private let base = "interface eth0 vrid 51 priority 100 vip 192.0.2.10/24"

    private func parse(_ line: String) throws -> VRRPInstanceConfiguration {
        try VRRPInstanceConfiguration.parse(line.split(separator: " ").map(String.init))
    }

    func testSecondChanceTakesThePeersAddressOrHardwareAddressAndWritesBackAsRead() throws {
        let byAddress = try parse("\(base) second_chance 192.0.2.2")
        XCTAssertEqual(byAddress.secondChance, SecondChance(peer: .address(IPAddress("192.0.2.2")!)))
        XCTAssertEqual(try VRRPInstanceConfiguration.parse(byAddress.words), byAddress)
        let byHardware = try parse("\(base) second_chance 02:00:5E:00:01:0a")
        XCTAssertEqual(byHardware.secondChance, SecondChance(peer: .hardware(HardwareAddress(bytes: [2, 0, 0x5E, 0, 1, 10])!)))
        XCTAssertEqual(byHardware.words.suffix(2), ["second_chance", "02:00:5e:00:01:0a"])
        XCTAssertEqual(try VRRPInstanceConfiguration.parse(byHardware.words), byHardware)
        XCTAssertNil(try parse(base).secondChance, "off unless configured")
        XCTAssertFalse(try parse(base).words.contains("second_chance"))
    }

    func testBadSecondChancesSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("\(base) second_chance", "'second_chance' needs a value"),
            ("\(base) second_chance peer-b", "is not the peer's hardware address (like 02:00:5e:00:01:02) or its IPv4 address"),
            ("\(base) second_chance 2001:db8::2", "is not the peer's hardware address"),
            ("\(base) second_chance 01:00:5e:00:00:12", "is a group address"),
            ("\(base) second_chance ff:ff:ff:ff:ff:ff", "is a group address"),
            ("\(base) second_chance 02:00:5e:00:01", "is not the peer's"),
            ("interface eth0 vrid 51 priority 100 vip 2001:db8::10/64 second_chance 02:00:5e:00:01:02", "IPv4 vips only"),
        ]
        for (line, expected) in cases {
            XCTAssertThrowsError(try parse(line), line) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(line): \(error)")
            }
        }
    }

    func testAnotherSecondChanceIsAnotherInstance() throws {
        let plain = try parse(base)
        XCTAssertFalse(plain.changesInPlace(to: try parse("\(base) second_chance 192.0.2.2")))
        XCTAssertTrue(try parse("\(base) second_chance 192.0.2.2").changesInPlace(to: try parse("\(base) priority 50 second_chance 192.0.2.2")))
    }

    // MARK: The plan

    private let second: UInt64 = 1_000_000_000
    private func at(_ seconds: UInt64) -> VRRPInstant { VRRPInstant(nanoseconds: 1000 * second + seconds * second) }

    func testTheNewMasterRedirectsForTheDrainBoundThenStops() {
        var plan = SecondChancePlan(seconds: 30)
        XCTAssertEqual(plan.becameMaster(now: at(0)), [.startRedirecting])
        XCTAssertEqual(plan.becameMaster(now: at(1)), [], "already")
        XCTAssertEqual(plan.nextDeadline, at(30))
        XCTAssertEqual(plan.tick(now: at(29)), [])
        XCTAssertEqual(plan.tick(now: at(30)), [.stopRedirecting])
        XCTAssertNil(plan.nextDeadline)
        XCTAssertEqual(plan.leftMaster(now: at(40)), [.startAcceptingLocally], "a master past its window still has connections to keep")
    }

    /// `drain N` at runtime: a running window is counted from its start with the new bound,
    /// and `drain 0` ends it (and starts none).
    func testTheWindowFollowsTheDrainBoundAndZeroEndsIt() {
        var plan = SecondChancePlan(seconds: 30)
        _ = plan.becameMaster(now: at(0))
        XCTAssertEqual(plan.windowChanged(seconds: 60, now: at(10)), [])
        XCTAssertEqual(plan.nextDeadline, at(60), "counted from the takeover")
        XCTAssertEqual(plan.windowChanged(seconds: 5, now: at(10)), [.stopRedirecting], "a bound already past ends it")

        var leaving = SecondChancePlan(seconds: 30)
        _ = leaving.becameMaster(now: at(0))
        _ = leaving.leftMaster(now: at(1))
        XCTAssertEqual(leaving.windowChanged(seconds: 0, now: at(2)), [.stopAcceptingLocally])
        XCTAssertEqual(leaving.becameMaster(now: at(3)), [], "drain 0: no window")
        XCTAssertEqual(leaving.leftMaster(now: at(4)), [])
        XCTAssertEqual(leaving.windowChanged(seconds: 30, now: at(5)), [])
        XCTAssertEqual(leaving.becameMaster(now: at(6)), [.startRedirecting])
    }

    func testTheOldMasterAcceptsLocallyForTheBoundOrUntilItsDrainEnds() {
        var plan = SecondChancePlan(seconds: 20)
        _ = plan.becameMaster(now: at(0))
        XCTAssertEqual(plan.leftMaster(now: at(5)), [.stopRedirecting, .startAcceptingLocally])
        XCTAssertEqual(plan.leftMaster(now: at(5)), [], "the instance's last removal adds nothing")
        XCTAssertEqual(plan.nextDeadline, at(25))
        XCTAssertEqual(plan.tick(now: at(25)), [.stopAcceptingLocally])
        XCTAssertEqual(plan.drainEnded(), [])

        var stopping = SecondChancePlan(seconds: 20)
        _ = stopping.becameMaster(now: at(0))
        XCTAssertEqual(stopping.leftMaster(now: at(1)), [.stopRedirecting, .startAcceptingLocally])
        XCTAssertEqual(stopping.instanceStopped(), [], "accepting goes on while the process drains")
        XCTAssertNil(stopping.nextDeadline)
        XCTAssertEqual(stopping.drainEnded(), [.stopAcceptingLocally])
        XCTAssertEqual(stopping.drainEnded(), [])
    }

    /// `penha upgrade`: a window open holds kernel state (refused meanwhile); a master resumed
    /// in the new process opens none, and its leaving opens one, as any master's.
    func testAWindowIsOpenWhileSomethingIsInstalledAndAResumedMasterLeavesWithASecondChance() {
        var plan = SecondChancePlan(seconds: 20)
        XCTAssertFalse(plan.isWindowOpen, "a backup")
        _ = plan.becameMaster(now: at(0))
        XCTAssertTrue(plan.isWindowOpen, "redirecting")
        _ = plan.tick(now: at(20))
        XCTAssertFalse(plan.isWindowOpen, "a master past its window")
        _ = plan.leftMaster(now: at(30))
        XCTAssertTrue(plan.isWindowOpen, "accepting locally")

        var resumed = SecondChancePlan(seconds: 20)
        resumed.resumedAsMaster()
        XCTAssertFalse(resumed.isWindowOpen)
        XCTAssertNil(resumed.nextDeadline)
        XCTAssertEqual(resumed.becameMaster(now: at(1)), [], "no redirect for connections that are its own")
        XCTAssertEqual(resumed.leftMaster(now: at(2)), [.startAcceptingLocally])
        XCTAssertEqual(resumed.nextDeadline, at(22))
    }

    func testABackupInstallsNothingAndARetakenVIPStopsAcceptingLocally() {
        var plan = SecondChancePlan(seconds: 20)
        XCTAssertEqual(plan.leftMaster(now: at(0)), [], "a backup's removal at its end")
        XCTAssertEqual(plan.instanceStopped(), [])
        _ = plan.becameMaster(now: at(1))
        _ = plan.leftMaster(now: at(2))
        XCTAssertEqual(plan.becameMaster(now: at(3)), [.stopAcceptingLocally, .startRedirecting])
        XCTAssertEqual(plan.instanceStopped(), [.stopRedirecting])
    }

    func testDrainZeroTurnsItOff() {
        var plan = SecondChancePlan(seconds: 0)
        XCTAssertEqual(plan.becameMaster(now: at(0)), [])
        XCTAssertEqual(plan.leftMaster(now: at(1)), [])
        XCTAssertNil(plan.nextDeadline)
    }

    // MARK: The programs

    private let peer = HardwareAddress("02:00:5e:00:01:02")!
    private let own = HardwareAddress("02:00:5e:00:01:01")!
    private let vips = [IPAddress("192.0.2.10")!, IPAddress("203.0.113.200")!]

    /// Every jump lands inside the program, forwards (the verifier takes no loops), and the
    /// program ends in exit.
    private func assertWellFormed(_ program: SecondChanceProgram, file: StaticString = #filePath, line: UInt = #line) {
        for (index, instruction) in program.instructions.enumerated() where instruction.code & 0x07 == 0x05 || instruction.code & 0x07 == 0x06 {
            guard instruction.code != 0x85, instruction.code != 0x95 else { continue }
            let target = index + 1 + Int(instruction.offset)
            XCTAssertTrue(target > index && target < program.instructions.count, "jump at \(index) to \(target)", file: file, line: line)
        }
        XCTAssertEqual(program.instructions.last, .exit, file: file, line: line)
        // TC_ACT_UNSPEC: on to the next filter; TC_ACT_OK would end the chain for other instances' programs.
        XCTAssertEqual(program.instructions.suffix(2).first, BPFInstruction(0xB7, .r0, immediate: -1), file: file, line: line)
        XCTAssertFalse(program.instructions.contains(BPFInstruction(0xB7, .r0, immediate: 0)), "no TC_ACT_OK", file: file, line: line)
        XCTAssertEqual(program.bytes.count, program.instructions.count * 8, file: file, line: line)
    }

    func testTheRedirectComparesEveryVIPInNetworkOrderAndWritesTheConfiguredAddressesOnly() {
        let program = SecondChanceProgram.redirect(virtualAddresses: vips, peer: peer, own: own, interfaceIndex: 7)
        assertWellFormed(program)
        let comparisons = program.instructions.filter { $0.code == 0x16 }.map(\.immediate)
        // 203.0.113.200 has its top bit set in a little-endian load: a 32-bit compare (JMP32).
        XCTAssertTrue(comparisons.contains(Int32(bitPattern: 0x0A02_00C0)), "\(comparisons)")
        XCTAssertTrue(comparisons.contains(Int32(bitPattern: 0xC871_00CB)), "\(comparisons)")
        let stores = program.instructions.filter { $0.code == 0x62 || $0.code == 0x6A }
        XCTAssertEqual(stores.map(\.offset), [0, 4, 6, 10], "destination, then source hardware address")
        XCTAssertEqual(stores.map(\.immediate), [Int32(bitPattern: 0x005E_0002), 0x0201, Int32(bitPattern: 0x005E_0002), 0x0101])
        XCTAssertTrue(program.instructions.contains(BPFInstruction(0xB7, .r1, immediate: 7)), "out of the interface it came in by")
        XCTAssertEqual(program.instructions.filter { $0.code == 0x85 }.map(\.immediate), [99, 100, 86, 23], "lookup, SYN cookie check, release, redirect")
        XCTAssertEqual(Array(program.bytes.prefix(8)), [0xBF, 0x16, 0, 0, 0, 0, 0, 0], "mov r6, r1")
    }

    func testTheARPSilenceDropsRequestsForTheVIPs() {
        let program = SecondChanceProgram.arpSilence(virtualAddresses: vips)
        assertWellFormed(program)
        XCTAssertTrue(program.instructions.contains(BPFInstruction(0x61, .r4, .r2, offset: 38)), "the target protocol address")
        XCTAssertTrue(program.instructions.contains(BPFInstruction(0xB7, .r0, immediate: 2)), "TC_ACT_SHOT")
        XCTAssertEqual(program.instructions.filter { $0.code == 0x16 }.count, 2)
    }

    /// The old master's: ARP silence first, then the redirect of what is not its own.
    func testTheDrainProgramSilencesARPAndPassesStraysOn() {
        let program = SecondChanceProgram.redirect(virtualAddresses: vips, peer: peer, own: own, interfaceIndex: 7, silencingARP: true)
        assertWellFormed(program)
        XCTAssertEqual(program.name, "penha_drain")
        XCTAssertTrue(program.instructions.contains(BPFInstruction(0x61, .r4, .r2, offset: 38)), "the target protocol address")
        XCTAssertTrue(program.instructions.contains(BPFInstruction(0xB7, .r0, immediate: 2)), "TC_ACT_SHOT")
        XCTAssertEqual(program.instructions.filter { $0.code == 0x16 }.count, 6,
                       "the VIPs as ARP targets and as destinations, the peer as source, the SYN cookie's verdict")
        XCTAssertEqual(program.instructions.filter { $0.code == 0x85 }.map(\.immediate), [99, 100, 86, 23], "lookup, SYN cookie check, release, redirect")
    }
}
