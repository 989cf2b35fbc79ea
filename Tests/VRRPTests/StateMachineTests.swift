import TestSupport
import XCTest
@testable import VRRP
@testable import VRRPCore

/// Virtual time only: every instant is built from `t0` plus exact nanoseconds.
private let t0 = VRRPInstant(nanoseconds: 1_000_000_000_000)
private func cs(_ value: UInt64) -> UInt64 { value * 10_000_000 }
private func seconds(_ value: UInt64) -> UInt64 { value * 1_000_000_000 }
private func ip(_ text: String) -> IPAddress { IPAddress(text)! }
/// Priority 100 at advert 1 s (RFC 5798 section 6.1): Skew_Time = 156 * 100 / 256 = 60.9375 cs.
private let skew100 = cs(15_600) / 256
private let masterDown100 = cs(300) + skew100
/// Priority 200 at advert 1 s: Skew_Time = 56 * 100 / 256 = 21.875 cs.
private let masterDown200 = cs(300) + cs(5_600) / 256

private let ours = ip("192.0.2.1")
private let higherPeer = ip("192.0.2.2")
private let lowerPeer = ip("192.0.2.0")

private func makeMachine(
    version: VRRPConfiguration.Version = .v3, priority: UInt8 = 100, interval: UInt16 = 100,
    preempt: Bool = true, preemptDelay: UInt16? = nil, primary: IPAddress = ours
) throws -> VRRPStateMachine {
    VRRPStateMachine(configuration: try VRRPConfiguration(
        version: version, vrid: 7, priority: priority, advertisementInterval: interval,
        preempt: preempt, preemptDelay: preemptDelay, primaryAddress: primary))
}

/// A non-owner started at `t0` and left alone until its down timer made it master.
private func makeMaster(version: VRRPConfiguration.Version = .v3, priority: UInt8 = 100) throws -> VRRPStateMachine {
    var machine = try makeMachine(version: version, priority: priority)
    _ = machine.start(now: t0)
    _ = machine.tick(now: machine.nextDeadline!)
    XCTAssertEqual(machine.state, .master)
    return machine
}

final class StateMachineTests: XCTestCase {

    // MARK: Startup (RFC 5798 section 6.4.1)

    func testOwnerBecomesMasterAtStart() throws {
        var machine = try makeMachine(priority: 255)
        XCTAssertEqual(machine.state, .initialize)
        XCTAssertNil(machine.nextDeadline)

        XCTAssertEqual(machine.start(now: t0), [
            .sendAdvertisement(priority: 255, interval: 100),
            .addVirtualAddresses,
            .announce,
            .transition(from: .initialize, to: .master, reason: "startup as address owner"),
        ])
        XCTAssertEqual(machine.state, .master)
        XCTAssertEqual(machine.masterAddress, ours)
        XCTAssertEqual(machine.nextDeadline, t0.advanced(by: seconds(1)))
        XCTAssertEqual(machine.start(now: t0), [], "starting twice does nothing")
    }

    func testNonOwnerStartsAsBackupWithMasterDownTimer() throws {
        var machine = try makeMachine(priority: 100, interval: 100)
        XCTAssertEqual(machine.start(now: t0), [.removeVirtualAddresses, .transition(from: .initialize, to: .backup, reason: "startup")])
        XCTAssertEqual(machine.state, .backup)
        XCTAssertNil(machine.masterAddress)
        XCTAssertEqual(machine.masterAdvertInterval, 100)
        // Skew_Time = (156 * 100) / 256 = 60.9375 cs; Master_Down_Interval = 300 cs + Skew_Time.
        XCTAssertEqual(machine.skewTime, skew100)
        XCTAssertEqual(machine.masterDownInterval, masterDown100)
        XCTAssertEqual(machine.nextDeadline, t0.advanced(by: masterDown100))
    }

    /// A node killed with SIGKILL leaves its addresses on the interface; restarted, or back
    /// from Fault, it enters Backup and must not hold them (RFC 5798 section 6.4.2).
    func testEveryEntryIntoBackupRemovesLeftoverAddresses() throws {
        var machine = try makeMachine(priority: 100)
        let started = machine.start(now: t0)
        XCTAssertEqual(started.first, .removeVirtualAddresses, "before Backup is entered: \(started)")
        _ = machine.interfaceDown(now: t0.advanced(by: seconds(1)))
        let up = machine.interfaceUp(now: t0.advanced(by: seconds(2)))
        XCTAssertEqual(up.first, .removeVirtualAddresses, "before Backup is entered: \(up)")
        XCTAssertEqual(machine.state, .backup)
    }

    // MARK: Timers (RFC 5798 / RFC 3768 section 6.1)

    func testBackupBecomesMasterExactlyAtMasterDownInterval() throws {
        var machine = try makeMachine(priority: 100)
        _ = machine.start(now: t0)
        let deadline = t0.advanced(by: masterDown100)

        XCTAssertEqual(machine.tick(now: t0.advanced(by: masterDown100 - 1)), [])
        XCTAssertEqual(machine.state, .backup)
        XCTAssertEqual(machine.nextDeadline, deadline)

        XCTAssertEqual(machine.tick(now: deadline), [
            .sendAdvertisement(priority: 100, interval: 100),
            .addVirtualAddresses,
            .announce,
            .transition(from: .backup, to: .master, reason: "master down timer expired"),
        ])
        XCTAssertEqual(machine.state, .master)
        XCTAssertEqual(machine.masterAddress, ours)
        XCTAssertEqual(machine.lastTransition, VRRPTransition(
            from: .backup, to: .master, reason: "master down timer expired", at: deadline))
        XCTAssertEqual(machine.nextDeadline, deadline.advanced(by: seconds(1)))
    }

    func testV3SkewTimeIsExactNotWholeCentiseconds() throws {
        XCTAssertEqual(try makeMachine(priority: 1, interval: 100).skewTime, 996_093_750)      // 25500 / 256 cs
        XCTAssertEqual(try makeMachine(priority: 254, interval: 100).skewTime, 7_812_500)      // 200 / 256 cs
        XCTAssertEqual(try makeMachine(priority: 100, interval: 4095).skewTime, 24_953_906_250)  // 638820 / 256 cs
        XCTAssertEqual(try makeMachine(priority: 100, interval: 4095).masterDownInterval, cs(3 * 4095) + 24_953_906_250)
    }

    /// At advert 10 ms (1 cs) whole centiseconds gave every priority a skew of 0: two backups
    /// would take over at the same moment. RFC 5798 section 6.1 wants the higher one first.
    func testV3SkewAtTenMillisecondAdvertsStillOrdersBackupsByPriority() throws {
        let low = try makeMachine(priority: 100, interval: 1)
        let high = try makeMachine(priority: 200, interval: 1)
        XCTAssertEqual(low.skewTime, 6_093_750)    // 156 / 256 cs
        XCTAssertEqual(high.skewTime, 2_187_500)   // 56 / 256 cs
        XCTAssertEqual(low.masterDownInterval, cs(3) + 6_093_750)
        XCTAssertLessThan(high.masterDownInterval, low.masterDownInterval)
    }

    func testV2TimingUsesWholeSecondsAndExactSkew() throws {
        var machine = try makeMachine(version: .v2, priority: 100, interval: 100)
        _ = machine.start(now: t0)
        // Skew_Time = 156 / 256 s = 0.609375 s; Master_Down_Interval = 3 s + Skew_Time.
        XCTAssertEqual(machine.skewTime, 609_375_000)
        XCTAssertEqual(machine.nextDeadline, t0.advanced(by: 3_609_375_000))
        XCTAssertEqual(machine.tick(now: t0.advanced(by: 3_609_375_000 - 1)), [])
        XCTAssertEqual(machine.tick(now: t0.advanced(by: 3_609_375_000)).last,
                       .transition(from: .backup, to: .master, reason: "master down timer expired"))
    }

    func testMasterResendsAdvertisementEveryInterval() throws {
        var machine = try makeMaster()
        var sent = 0
        var now = machine.nextDeadline!
        for _ in 0..<10 {
            XCTAssertEqual(machine.tick(now: VRRPInstant(nanoseconds: now.nanoseconds - 1)), [])
            XCTAssertEqual(machine.tick(now: now), [.sendAdvertisement(priority: 100, interval: 100)])
            sent += 1
            XCTAssertEqual(machine.nextDeadline, now.advanced(by: seconds(1)))
            now = machine.nextDeadline!
        }
        XCTAssertEqual(sent, 10)
        XCTAssertEqual(machine.state, .master)

        // A late tick rearms from the moment it ran, without a burst of catch-up adverts.
        let late = now.advanced(by: cs(250))
        XCTAssertEqual(machine.tick(now: late), [.sendAdvertisement(priority: 100, interval: 100)])
        XCTAssertEqual(machine.nextDeadline, late.advanced(by: seconds(1)))
    }

    /// A tick a little late (the thread woke 0.7 ms after the deadline) keeps the rhythm: the
    /// next advert is due one interval after this one was due, not after it was sent, so at
    /// advert 10 ms the adverts stay 10 ms apart rather than drifting to 10.7.
    func testSlightlyLateTickKeepsTheAdvertRhythm() throws {
        var machine = try makeMachine(priority: 100, interval: 1)
        _ = machine.start(now: t0)
        _ = machine.tick(now: machine.nextDeadline!)
        XCTAssertEqual(machine.state, .master)
        var due = machine.nextDeadline!
        for _ in 0..<5 {
            XCTAssertEqual(machine.tick(now: due.advanced(by: 700_000)), [.sendAdvertisement(priority: 100, interval: 1)])
            XCTAssertEqual(machine.nextDeadline, due.advanced(by: cs(1)))
            due = machine.nextDeadline!
        }
    }

    // MARK: Backup receiving advertisements (RFC 5798 section 6.4.2)

    func testAdvertsFromHigherPriorityMasterKeepBackupDown() throws {
        var machine = try makeMachine(priority: 100)
        _ = machine.start(now: t0)
        for second in 1...30 {
            let now = t0.advanced(by: seconds(UInt64(second)))
            XCTAssertEqual(machine.tick(now: now), [])
            XCTAssertEqual(machine.advertisementReceived(priority: 150, maxAdvertInterval: 100, sender: higherPeer, now: now), [])
            XCTAssertEqual(machine.nextDeadline, now.advanced(by: masterDown100))
        }
        XCTAssertEqual(machine.state, .backup)
        XCTAssertEqual(machine.masterAddress, higherPeer)
    }

    func testBackupFollowsEqualPriorityMasterWhateverItsAddress() throws {
        var machine = try makeMachine(priority: 100)
        _ = machine.start(now: t0)
        let now = t0.advanced(by: seconds(3))
        _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: lowerPeer, now: now)
        XCTAssertEqual(machine.masterAddress, lowerPeer)
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: masterDown100))
    }

    func testPriorityZeroAdvertLeadsToTakeoverAfterSkewTime() throws {
        var machine = try makeMachine(priority: 100)
        _ = machine.start(now: t0)
        let heard = t0.advanced(by: seconds(1))
        _ = machine.advertisementReceived(priority: 150, maxAdvertInterval: 100, sender: higherPeer, now: heard)
        let bye = t0.advanced(by: cs(150))
        XCTAssertEqual(machine.advertisementReceived(priority: 0, maxAdvertInterval: 100, sender: higherPeer, now: bye), [])
        XCTAssertEqual(machine.nextDeadline, bye.advanced(by: skew100))

        XCTAssertEqual(machine.tick(now: bye.advanced(by: skew100 - 1)), [])
        XCTAssertEqual(machine.tick(now: bye.advanced(by: skew100)), [
            .sendAdvertisement(priority: 100, interval: 100),
            .addVirtualAddresses,
            .announce,
            .transition(from: .backup, to: .master, reason: "priority 0 from 192.0.2.2"),
        ])
    }

    func testV2PriorityZeroUsesV2SkewTime() throws {
        var machine = try makeMachine(version: .v2, priority: 200)
        _ = machine.start(now: t0)
        _ = machine.advertisementReceived(priority: 0, maxAdvertInterval: 100, sender: higherPeer, now: t0)
        XCTAssertEqual(machine.nextDeadline, t0.advanced(by: 56 * 1_000_000_000 / 256))
    }

    func testV3BackupAdoptsMasterIntervalAndRecomputesDownInterval() throws {
        var machine = try makeMachine(version: .v3, priority: 100, interval: 100)
        _ = machine.start(now: t0)
        let now = t0.advanced(by: seconds(1))
        _ = machine.advertisementReceived(priority: 150, maxAdvertInterval: 300, sender: higherPeer, now: now)
        XCTAssertEqual(machine.masterAdvertInterval, 300)
        // Skew_Time = (156 * 300) / 256 = 182.8125 cs.
        XCTAssertEqual(machine.masterDownInterval, cs(900) + 1_828_125_000)
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: cs(900) + 1_828_125_000))
    }

    func testV2BackupKeepsItsOwnInterval() throws {
        var machine = try makeMachine(version: .v2, priority: 100, interval: 100)
        _ = machine.start(now: t0)
        let now = t0.advanced(by: seconds(1))
        _ = machine.advertisementReceived(priority: 150, maxAdvertInterval: 300, sender: higherPeer, now: now)
        XCTAssertEqual(machine.masterAdvertInterval, 100)
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: 3_609_375_000))
    }

    // MARK: Preemption

    func testPreemptingBackupTakesOverFromLowerPriorityMaster() throws {
        var machine = try makeMachine(priority: 200)
        _ = machine.start(now: t0)
        // Skew_Time = (56 * 100) / 256 = 21.875 cs; Master_Down_Interval = 321.875 cs.
        let deadline = t0.advanced(by: masterDown200)
        for second in 1...3 {
            let now = t0.advanced(by: seconds(UInt64(second)))
            XCTAssertEqual(machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: now), [])
            XCTAssertEqual(machine.nextDeadline, deadline, "lower-priority adverts are discarded")
        }
        XCTAssertNil(machine.masterAddress)
        XCTAssertEqual(machine.tick(now: deadline).last,
                       .transition(from: .backup, to: .master, reason: "preempted lower priority 100 from 192.0.2.2"))
    }

    func testPreemptOffKeepsHigherPriorityBackupAsBackup() throws {
        var machine = try makeMachine(priority: 200, preempt: false)
        _ = machine.start(now: t0)
        for second in 1...30 {
            let now = t0.advanced(by: seconds(UInt64(second)))
            XCTAssertEqual(machine.tick(now: now), [])
            _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: now)
            XCTAssertEqual(machine.nextDeadline, now.advanced(by: masterDown200))
        }
        XCTAssertEqual(machine.state, .backup)
        XCTAssertEqual(machine.masterAddress, higherPeer)

        // Once the lower master falls silent, the backup still takes over.
        let silentDeadline = t0.advanced(by: seconds(30) + masterDown200)
        XCTAssertEqual(machine.tick(now: silentDeadline).last,
                       .transition(from: .backup, to: .master, reason: "master down timer expired"))
    }

    func testPreemptDelayDefersPreemptionAfterStartup() throws {
        var machine = try makeMachine(priority: 200, preemptDelay: 10)
        _ = machine.start(now: t0)
        // Adverts at 1...9 s fall inside the delay and are followed; the one at 10 s is the first discarded.
        for second in 1...12 {
            let now = t0.advanced(by: seconds(UInt64(second)))
            XCTAssertEqual(machine.tick(now: now), [], "no takeover at \(second) s")
            _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: now)
        }
        let deadline = t0.advanced(by: seconds(9) + masterDown200)
        XCTAssertEqual(machine.nextDeadline, deadline)
        XCTAssertEqual(machine.tick(now: deadline).last,
                       .transition(from: .backup, to: .master, reason: "preempted lower priority 100 from 192.0.2.2"))
    }

    func testPreemptDelayRestartsWhenInterfaceComesBack() throws {
        var machine = try makeMachine(priority: 200, preemptDelay: 10)
        _ = machine.start(now: t0)
        _ = machine.interfaceDown(now: t0.advanced(by: seconds(60)))
        let up = t0.advanced(by: seconds(70))
        _ = machine.interfaceUp(now: up)
        let now = up.advanced(by: seconds(5))
        _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: now)
        XCTAssertEqual(machine.masterAddress, higherPeer, "still inside the delay after interface up")
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: masterDown200))
    }

    func testOwnerPreemptsEvenWithPreemptOffAndDelay() throws {
        var machine = try makeMachine(priority: 255, preempt: false, preemptDelay: 100)
        machine.setEffectivePriority(200)  // unhealthy owner starts as an ordinary router
        XCTAssertEqual(machine.start(now: t0), [.removeVirtualAddresses, .transition(from: .initialize, to: .backup, reason: "startup")])
        let followed = t0.advanced(by: seconds(1))
        _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: followed)
        XCTAssertEqual(machine.masterAddress, higherPeer, "preempt off: a lower master is followed")

        machine.setEffectivePriority(255)
        _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: t0.advanced(by: seconds(2)))
        // Discarded now; the timer armed at priority 200 (300 + 21 cs) runs out.
        let deadline = followed.advanced(by: masterDown200)
        XCTAssertEqual(machine.nextDeadline, deadline)
        XCTAssertEqual(machine.tick(now: deadline).first, .sendAdvertisement(priority: 255, interval: 100))
        XCTAssertEqual(machine.state, .master)
    }

    // MARK: Master receiving advertisements (RFC 5798 section 6.4.3)

    func testMasterYieldsToHigherPriority() throws {
        var machine = try makeMaster(priority: 100)
        let now = t0.advanced(by: seconds(10))
        XCTAssertEqual(machine.advertisementReceived(priority: 150, maxAdvertInterval: 200, sender: lowerPeer, now: now), [
            .sendAdvertisement(priority: 0, interval: 100),
            .transition(from: .master, to: .backup, reason: "higher priority 150 from 192.0.2.0"),
        ])
        XCTAssertEqual(machine.state, .backup)
        XCTAssertEqual(machine.masterAddress, lowerPeer)
        XCTAssertEqual(machine.masterAdvertInterval, 200)
        XCTAssertTrue(machine.holdsVirtualAddresses, "kept until the new master's gratuitous ARP is out")
        // The handover bound, 3 x 200 cs, comes before the down timer:
        // Skew_Time = (156 * 200) / 256 = 121.875 cs, Master_Down_Interval 721.875 cs.
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: seconds(6)))
        let second = now.advanced(by: seconds(2))
        XCTAssertEqual(machine.advertisementReceived(priority: 150, maxAdvertInterval: 200, sender: lowerPeer, now: second),
                       [.removeVirtualAddresses], "the new master's second advert releases them")
        XCTAssertFalse(machine.holdsVirtualAddresses)
        XCTAssertEqual(machine.nextDeadline, second.advanced(by: cs(600) + cs(31_200) / 256))
    }

    /// A new master that is never heard again: the addresses go at the handover bound.
    func testPreemptedMasterReleasesTheAddressesAtTheHandoverBound() throws {
        var machine = try makeMaster(priority: 100)
        let now = t0.advanced(by: seconds(10))
        _ = machine.advertisementReceived(priority: 150, maxAdvertInterval: 10, sender: lowerPeer, now: now)
        // 3 x 10 cs, before the Master_Down_Interval of 30 + 6.09375 cs.
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: cs(30)))
        XCTAssertEqual(machine.tick(now: now.advanced(by: cs(30) - 1)), [])
        XCTAssertEqual(machine.tick(now: now.advanced(by: cs(30))), [.removeVirtualAddresses])
        XCTAssertEqual(machine.state, .backup)
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: cs(30) + cs(1_560) / 256))
        XCTAssertEqual(machine.tick(now: now.advanced(by: cs(30) + cs(1_560) / 256)).last,
                       .transition(from: .backup, to: .master, reason: "master down timer expired"))
    }

    /// The new master going away during the handover: this node takes over again, its
    /// addresses still on the interface, so it announces them without adding them.
    func testBackupStillHoldingTheAddressesTakesOverWithoutAddingThem() throws {
        var machine = try makeMaster(priority: 100)
        let now = t0.advanced(by: seconds(10))
        _ = machine.advertisementReceived(priority: 150, maxAdvertInterval: 100, sender: lowerPeer, now: now)
        XCTAssertEqual(machine.advertisementReceived(priority: 0, maxAdvertInterval: 100, sender: lowerPeer, now: now), [])
        XCTAssertEqual(machine.tick(now: machine.nextDeadline!), [
            .sendAdvertisement(priority: 100, interval: 100),
            .announce,
            .transition(from: .backup, to: .master, reason: "priority 0 from 192.0.2.0"),
        ])
        XCTAssertTrue(machine.holdsVirtualAddresses)
    }

    func testMasterYieldsToEqualPriorityFromHigherAddress() throws {
        var machine = try makeMaster(priority: 100)
        let now = t0.advanced(by: seconds(10))
        XCTAssertEqual(machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: now), [
            .sendAdvertisement(priority: 0, interval: 100),
            .transition(from: .master, to: .backup, reason: "equal priority 100 from higher address 192.0.2.2"),
        ])
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: cs(300)), "the handover bound, 3 intervals")
        XCTAssertEqual(machine.tick(now: now.advanced(by: cs(300))), [.removeVirtualAddresses])
    }

    /// A master hearing one that loses to it (a healed split brain) stays master, and answers at
    /// once with an advert and a new announcement, at most once an interval.
    func testMasterKeepsMastershipAgainstLowerPriorityAndEqualPriorityLowerAddress() throws {
        var machine = try makeMaster(priority: 100)
        let deadline = machine.nextDeadline
        let now = t0.advanced(by: cs(400))
        XCTAssertEqual(machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: ours, now: now), [],
                       "our own advert looped back")
        XCTAssertEqual(machine.nextDeadline, deadline)
        XCTAssertEqual(machine.advertisementReceived(priority: 99, maxAdvertInterval: 100, sender: higherPeer, now: now),
                       [.announce, .sendAdvertisement(priority: 100, interval: 100)])
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: seconds(1)), "the Adver_Timer starts again")
        XCTAssertEqual(machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: lowerPeer, now: now), [],
                       "answered already in this interval")
        let later = now.advanced(by: seconds(1))
        XCTAssertEqual(machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: lowerPeer, now: later),
                       [.announce, .sendAdvertisement(priority: 100, interval: 100)])
        XCTAssertEqual(machine.state, .master)
        XCTAssertEqual(machine.masterAddress, ours)
    }

    func testMasterAnswersPriorityZeroAtOnceAndResetsAdverTimer() throws {
        var machine = try makeMaster(priority: 100)
        let now = t0.advanced(by: cs(400))  // master since 3.6 s, next advert due at 4.6 s
        XCTAssertEqual(machine.advertisementReceived(priority: 0, maxAdvertInterval: 100, sender: higherPeer, now: now),
                       [.announce, .sendAdvertisement(priority: 100, interval: 100)],
                       "clients may have followed the router that resigned: announce, before the advert that ends its handover")
        XCTAssertEqual(machine.state, .master)
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: seconds(1)))
        XCTAssertEqual(machine.advertisementReceived(priority: 0, maxAdvertInterval: 100, sender: higherPeer, now: now),
                       [.sendAdvertisement(priority: 100, interval: 100)], "announced once an interval at most")
    }

    // MARK: Shutdown, fault

    /// RFC 5798 section 6.4.3 Shutdown, and the addresses kept and served until the new
    /// master has advertised twice: its gratuitous ARP follows its first advert.
    func testShutdownFromMasterResignsAndKeepsTheAddressesUntilTheNewMastersSecondAdvert() throws {
        var machine = try makeMaster(priority: 100)
        let now = t0.advanced(by: seconds(20))
        XCTAssertEqual(machine.shutdown(now: now), [.sendAdvertisement(priority: 0, interval: 100)])
        XCTAssertEqual(machine.state, .master, "still answering for the addresses")
        XCTAssertTrue(machine.holdsVirtualAddresses)
        XCTAssertEqual(machine.shutdown(now: now), [], "resigning already")
        XCTAssertEqual(machine.advertisementReceived(priority: 0, maxAdvertInterval: 100, sender: higherPeer, now: now), [],
                       "another router resigning is no new master")
        let first = now.advanced(by: cs(20))
        XCTAssertEqual(machine.advertisementReceived(priority: 50, maxAdvertInterval: 100, sender: higherPeer, now: first), [],
                       "whatever its priority: it is the new master")
        let second = first.advanced(by: cs(100))
        XCTAssertEqual(machine.advertisementReceived(priority: 50, maxAdvertInterval: 100, sender: higherPeer, now: second), [
            .removeVirtualAddresses,
            .transition(from: .master, to: .initialize, reason: "shutdown, handed over to 192.0.2.2"),
        ])
        XCTAssertEqual(machine.state, .initialize)
        XCTAssertNil(machine.nextDeadline)
        XCTAssertNil(machine.masterAddress)
        XCTAssertEqual(machine.tick(now: now.advanced(by: seconds(100))), [])
        XCTAssertEqual(machine.advertisementReceived(priority: 0, maxAdvertInterval: 100, sender: higherPeer, now: now), [])
        XCTAssertEqual(machine.shutdown(now: now), [])
        XCTAssertEqual(machine.interfaceDown(now: now), [], "a stopped instance ignores the link")
    }

    /// No backup answers: priority 0 again every interval (one may be lost), and the addresses
    /// go at the handover bound, 3 intervals (at most 2 s).
    func testResigningMasterRepeatsPriorityZeroAndStopsAtTheHandoverBound() throws {
        var machine = try makeMaster(priority: 100)
        let now = t0.advanced(by: seconds(20))
        _ = machine.shutdown(now: now)
        XCTAssertEqual(machine.nextDeadline, now.advanced(by: seconds(1)))
        XCTAssertEqual(machine.tick(now: now.advanced(by: seconds(1))), [.sendAdvertisement(priority: 0, interval: 100)])
        XCTAssertEqual(machine.tick(now: now.advanced(by: seconds(2) - 1)), [])
        XCTAssertEqual(machine.tick(now: now.advanced(by: seconds(2))), [
            .removeVirtualAddresses,
            .transition(from: .master, to: .initialize, reason: "shutdown"),
        ])
        XCTAssertNil(machine.nextDeadline)
        XCTAssertNil(machine.masterAddress)
    }

    func testInterfaceDownWhileResigningGivesUpAtOnce() throws {
        var machine = try makeMaster(priority: 100)
        _ = machine.shutdown(now: t0.advanced(by: seconds(20)))
        XCTAssertEqual(machine.interfaceDown(now: t0.advanced(by: seconds(20))), [
            .removeVirtualAddresses,
            .transition(from: .master, to: .fault, reason: "interface down"),
        ])
        XCTAssertFalse(machine.holdsVirtualAddresses)
    }

    /// The two nodes of a pair in virtual time, checked after every event: at every instant
    /// of a planned switchover one of them holds the addresses. A shutdown's handover is cut at
    /// 2 s (the process must exit), which covers advert intervals up to 1 s; a lowered priority's
    /// handover has no such cut.
    func testPlannedSwitchoversNeverLeaveTheAddressesUnheld() throws {
        for interval: UInt16 in [1, 10, 100, 4095] {
            func pair() throws -> Network {
                var network = Network(
                    try makeMachine(priority: 200, interval: interval, primary: ip("192.0.2.1")),
                    try makeMachine(priority: 100, interval: interval, primary: ip("192.0.2.2")))
                network.start(at: t0)
                network.run(until: t0.advanced(by: seconds(200)))
                XCTAssertEqual(network.machines.map(\.state), [.master, .backup])
                return network
            }
            let alwaysHeld: ([VRRPStateMachine]) -> Void = { machines in
                XCTAssertTrue(machines.contains(where: \.holdsVirtualAddresses), "interval \(interval): nobody holds them")
            }
            if interval <= 100 {
                var shutdown = try pair()
                shutdown.observe = alwaysHeld
                shutdown.perform(on: 0) { $0.shutdown(now: $1) }
                shutdown.run(until: t0.advanced(by: seconds(400)))
                XCTAssertEqual(shutdown.machines.map(\.state), [.initialize, .master], "interval \(interval)")
                XCTAssertFalse(shutdown.machines[0].holdsVirtualAddresses)
            }

            var lowered = try pair()
            lowered.observe = alwaysHeld
            try lowered.machines[0].reconfigure(priority: 50, advertisementInterval: interval, preempt: true, preemptDelay: nil)
            lowered.run(until: t0.advanced(by: seconds(400)))
            XCTAssertEqual(lowered.machines.map(\.state), [.backup, .master], "interval \(interval)")
            XCTAssertEqual(lowered.machines.map(\.holdsVirtualAddresses), [false, true], "interval \(interval)")
        }
    }

    func testReconfigureChangesPriorityAndIntervalInPlace() throws {
        var machine = try makeMaster(priority: 100)
        let before = machine.lastTransition
        try machine.reconfigure(priority: 150, advertisementInterval: 50, preempt: false, preemptDelay: 3)
        XCTAssertEqual(machine.state, .master)
        XCTAssertEqual(machine.lastTransition, before, "no transition of its own")
        XCTAssertEqual(machine.configuredPriority, 150)
        XCTAssertEqual(machine.effectivePriority, 150)
        XCTAssertEqual(machine.masterAdvertInterval, 50)
        XCTAssertFalse(machine.configuration.preempt)
        let due = machine.nextDeadline!
        XCTAssertEqual(machine.tick(now: due), [.sendAdvertisement(priority: 150, interval: 50)])
        XCTAssertEqual(machine.nextDeadline, due.advanced(by: cs(50)))
        XCTAssertThrowsError(try machine.reconfigure(priority: 0, advertisementInterval: 50, preempt: true, preemptDelay: nil))
        XCTAssertEqual(machine.configuredPriority, 150, "a refused change changes nothing")
    }

    func testShutdownFromBackupJustStopsAndCanRestart() throws {
        var machine = try makeMachine(priority: 100)
        _ = machine.start(now: t0)
        XCTAssertEqual(machine.shutdown(now: t0.advanced(by: seconds(1))),
                       [.transition(from: .backup, to: .initialize, reason: "shutdown")])
        XCTAssertNil(machine.nextDeadline)
        let again = t0.advanced(by: seconds(5))
        XCTAssertEqual(machine.start(now: again), [.removeVirtualAddresses, .transition(from: .initialize, to: .backup, reason: "startup")])
        XCTAssertEqual(machine.nextDeadline, again.advanced(by: masterDown100))
    }

    func testInterfaceDownFromMasterGoesToFaultAndUpRestarts() throws {
        var machine = try makeMaster(priority: 100)
        let down = t0.advanced(by: seconds(10))
        XCTAssertEqual(machine.interfaceDown(now: down), [
            .removeVirtualAddresses,
            .transition(from: .master, to: .fault, reason: "interface down"),
        ])
        XCTAssertEqual(machine.state, .fault)
        XCTAssertNil(machine.nextDeadline)
        XCTAssertNil(machine.masterAddress)
        XCTAssertEqual(machine.tick(now: down.advanced(by: seconds(100))), [])
        XCTAssertEqual(machine.advertisementReceived(priority: 150, maxAdvertInterval: 100, sender: higherPeer, now: down), [])
        XCTAssertEqual(machine.interfaceDown(now: down), [])
        XCTAssertEqual(machine.start(now: down), [], "start only leaves Initialize")

        let up = t0.advanced(by: seconds(20))
        XCTAssertEqual(machine.interfaceUp(now: up), [.removeVirtualAddresses, .transition(from: .fault, to: .backup, reason: "interface up")])
        XCTAssertEqual(machine.nextDeadline, up.advanced(by: masterDown100))
        XCTAssertEqual(machine.interfaceUp(now: up), [], "already up")
    }

    func testInterfaceDownFromBackupSendsNothing() throws {
        var machine = try makeMachine(priority: 100)
        _ = machine.start(now: t0)
        XCTAssertEqual(machine.interfaceDown(now: t0), [.transition(from: .backup, to: .fault, reason: "interface down")])
        XCTAssertEqual(machine.shutdown(now: t0), [.transition(from: .fault, to: .initialize, reason: "shutdown")])
    }

    func testOwnerReturnsStraightToMasterOnInterfaceUp() throws {
        var machine = try makeMachine(priority: 255)
        _ = machine.start(now: t0)
        _ = machine.interfaceDown(now: t0.advanced(by: seconds(1)))
        XCTAssertEqual(machine.interfaceUp(now: t0.advanced(by: seconds(2))), [
            .sendAdvertisement(priority: 255, interval: 100),
            .addVirtualAddresses,
            .announce,
            .transition(from: .fault, to: .master, reason: "interface up as address owner"),
        ])
    }

    // MARK: Effective priority (health coupling)

    func testEffectivePriorityIsClampedAndUsedInAdvertsAndSkew() throws {
        var machine = try makeMaster(priority: 100)
        machine.setEffectivePriority(0)
        XCTAssertEqual(machine.effectivePriority, 1)
        machine.setEffectivePriority(255)
        XCTAssertEqual(machine.effectivePriority, 254, "only a configured owner runs at 255")
        machine.setEffectivePriority(40)
        XCTAssertEqual(machine.configuredPriority, 100)
        XCTAssertEqual(machine.skewTime, 216 * cs(100) / 256)
        XCTAssertEqual(machine.tick(now: machine.nextDeadline!), [.sendAdvertisement(priority: 40, interval: 100)])

        var owner = try makeMachine(priority: 255)
        owner.setEffectivePriority(255)
        XCTAssertEqual(owner.effectivePriority, 255)
    }

    func testEffectivePriorityDropMakesPeerPreempt() throws {
        var network = Network(
            try makeMachine(priority: 200, primary: ip("192.0.2.1")),
            try makeMachine(priority: 100, primary: ip("192.0.2.2")))
        network.start(at: t0)
        network.run(until: t0.advanced(by: seconds(10)))
        XCTAssertEqual(network.machines.map(\.state), [.master, .backup])

        let drop = t0.advanced(by: cs(1050))
        network.run(until: drop)
        network.machines[0].setEffectivePriority(50)
        network.run(until: t0.advanced(by: seconds(20)))
        XCTAssertEqual(network.machines.map(\.state), [.backup, .master])
        // A became master at 3.21875 s and advertises every second; B last followed it at
        // 10.21875 s, discarded its priority-50 advert a second later and took over one
        // Master_Down_Interval after following it.
        let takeover = t0.advanced(by: masterDown200 + cs(700) + masterDown100)
        XCTAssertEqual(network.machines[1].lastTransition, VRRPTransition(
            from: .backup, to: .master, reason: "preempted lower priority 50 from 192.0.2.1", at: takeover))
        XCTAssertEqual(network.machines[0].lastTransition, VRRPTransition(
            from: .master, to: .backup, reason: "higher priority 100 from 192.0.2.2", at: takeover))
        XCTAssertEqual(network.machines[0].masterAddress, ip("192.0.2.2"))
    }

    func testBackupWhosePriorityRisesAboveMasterPreemptsOnItsDownTimer() throws {
        var machine = try makeMachine(priority: 200)
        machine.setEffectivePriority(50)
        _ = machine.start(now: t0)
        var now = t0
        for _ in 1...5 {
            now = now.advanced(by: seconds(1))
            _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: now)
        }
        XCTAssertEqual(machine.masterAddress, higherPeer)
        machine.setEffectivePriority(200)
        let lastFollowed = now
        for _ in 1...3 {
            now = now.advanced(by: seconds(1))
            XCTAssertEqual(machine.tick(now: now), [])
            _ = machine.advertisementReceived(priority: 100, maxAdvertInterval: 100, sender: higherPeer, now: now)
        }
        // The armed timer was computed at priority 50: 300 + (206 * 100) / 256 = 380.46875 cs.
        let downTimer = cs(300) + cs(20_600) / 256
        XCTAssertEqual(machine.nextDeadline, lastFollowed.advanced(by: downTimer))
        XCTAssertEqual(machine.tick(now: lastFollowed.advanced(by: downTimer)).last,
                       .transition(from: .backup, to: .master, reason: "preempted lower priority 100 from 192.0.2.2"))
    }

    // MARK: Configuration

    func testConfigurationValidation() throws {
        func check(_ version: VRRPConfiguration.Version, vrid: UInt8 = 1, priority: UInt8 = 100, interval: UInt16,
                   _ expected: VRRPConfigurationError?, line: UInt = #line) {
            do {
                _ = try VRRPConfiguration(version: version, vrid: vrid, priority: priority,
                                          advertisementInterval: interval, primaryAddress: ours)
                XCTAssertNil(expected, line: line)
            } catch {
                XCTAssertEqual(error as? VRRPConfigurationError, expected, line: line)
            }
        }
        check(.v3, vrid: 0, interval: 100, .vrid)
        check(.v3, priority: 0, interval: 100, .priority)
        check(.v3, interval: 0, .advertisementInterval(0))
        check(.v3, interval: 4096, .advertisementInterval(4096))
        check(.v3, interval: 1, nil)
        check(.v3, interval: 4095, nil)
        check(.v2, interval: 150, .advertisementInterval(150))
        check(.v2, interval: 0, .advertisementInterval(0))
        check(.v2, interval: 25600, .advertisementInterval(25600))
        check(.v2, interval: 25500, nil)
        check(.v2, priority: 255, interval: 100, nil)
    }

    // MARK: Invariants under arbitrary input

    /// Drives machines with a seeded pseudo-random sequence of every input and checks after each one
    /// that nextDeadline is the only (earliest) timer, that ticking before it is a no-op and at it is
    /// not, and that address bookkeeping and transitions stay consistent.
    func testInvariantsHoldUnderRandomInputs() throws {
        var random = SplitMix64(seed: 0x5EED)
        let senders = [lowerPeer, ours, higherPeer]
        var visited: Set<VRRPState> = []
        for run in 0..<40 {
            var machine = try makeMachine(
                version: run % 2 == 0 ? .v3 : .v2, priority: [1, 100, 200, 254, 255][run % 5],
                interval: run % 2 == 0 ? UInt16(1 + random.next() % 4095) : 100,
                preempt: run % 3 != 0, preemptDelay: run % 4 == 0 ? 5 : nil)
            var now = t0
            var addressesHeld = false
            for step in 0..<400 {
                // An event loop: a timer due before the next external event fires first.
                let eventTime = now.advanced(by: random.next() % seconds(2))
                let before = machine.state
                let actions: [VRRPAction]
                if let deadline = machine.nextDeadline, deadline <= eventTime {
                    now = deadline
                    actions = machine.tick(now: now)
                } else {
                    now = eventTime
                    switch random.next() % 8 {
                    case 0: actions = machine.start(now: now)
                    case 1: actions = machine.shutdown(now: now)
                    case 2: actions = machine.interfaceDown(now: now)
                    case 3: actions = machine.interfaceUp(now: now)
                    case 4:
                        machine.setEffectivePriority(UInt8(random.next() % 256))
                        actions = []
                    case 5:
                        actions = machine.tick(now: now)
                    case 6:
                        try? machine.reconfigure(
                            priority: UInt8(random.next() % 256), advertisementInterval: UInt16(1 + random.next() % 4095),
                            preempt: random.next() % 2 == 0, preemptDelay: nil)
                        actions = []
                    default:
                        actions = machine.advertisementReceived(
                            priority: UInt8(random.next() % 256), maxAdvertInterval: UInt16(1 + random.next() % 4095),
                            sender: senders[Int(random.next() % 3)], now: now)
                    }
                }
                let context = "run \(run) step \(step)"
                visited.insert(machine.state)

                for action in actions {
                    switch action {
                    case .addVirtualAddresses:
                        XCTAssertFalse(addressesHeld, context)
                        addressesHeld = true
                    case .removeVirtualAddresses:
                        // Entering Backup at start removes them too, held or not (left by a crashed run).
                        XCTAssertTrue(addressesHeld || machine.state == .backup, context)
                        addressesHeld = false
                    case .announce:
                        XCTAssertTrue(addressesHeld, "announce after adding, \(context)")
                    case .sendAdvertisement(let priority, _):
                        XCTAssertTrue(priority == 0 || priority == machine.effectivePriority, context)
                    case .transition(let from, let to, _):
                        if to == .initialize || to == .fault {
                            XCTAssertFalse(machine.holdsVirtualAddresses, "no address when stopped, \(context)")
                        }
                        XCTAssertEqual(from, before, context)
                        XCTAssertEqual(to, machine.state, context)
                        XCTAssertEqual(action, actions.last, "transition comes last, \(context)")
                    }
                }
                let transitions = actions.filter { if case .transition = $0 { return true } else { return false } }
                XCTAssertEqual(transitions.count, before == machine.state ? 0 : 1, context)
                XCTAssertEqual(addressesHeld, machine.holdsVirtualAddresses, context)
                if machine.state == .master { XCTAssertTrue(addressesHeld, context) }
                if machine.state == .master { XCTAssertEqual(machine.masterAddress, ours, context) }

                guard let deadline = machine.nextDeadline else {
                    XCTAssertTrue(machine.state == .initialize || machine.state == .fault, context)
                    continue
                }
                XCTAssertTrue(machine.state == .backup || machine.state == .master, context)
                XCTAssertGreaterThanOrEqual(deadline, now, context)
                var early = machine
                if deadline.nanoseconds > now.nanoseconds {
                    XCTAssertEqual(early.tick(now: VRRPInstant(nanoseconds: deadline.nanoseconds - 1)), [], context)
                    XCTAssertEqual(early.nextDeadline, deadline, context)
                }
                var due = machine
                XCTAssertFalse(due.tick(now: deadline).isEmpty, context)
                if let next = due.nextDeadline { XCTAssertGreaterThan(next, deadline, context) }
            }
        }
        XCTAssertEqual(visited, [.initialize, .backup, .master, .fault])
    }
}

/// Two machines on one segment with instant delivery, stepped timer by timer in virtual time.
private struct Network {
    var machines: [VRRPStateMachine]
    private var now = t0

    init(_ first: VRRPStateMachine, _ second: VRRPStateMachine) {
        machines = [first, second]
    }

    mutating func start(at instant: VRRPInstant) {
        now = instant
        for index in machines.indices { deliver(machines[index].start(now: now), from: index) }
    }

    /// Called after every event with the machines as they are then.
    var observe: ([VRRPStateMachine]) -> Void = { _ in }

    mutating func run(until end: VRRPInstant) {
        while let next = nextTimer(), next.deadline <= end {
            now = next.deadline
            let actions = machines[next.index].tick(now: now)
            // A timer that does not fire at its deadline would loop here forever.
            guard !actions.isEmpty else { return XCTFail("timer did not fire at its deadline") }
            deliver(actions, from: next.index)
            observe(machines)
        }
        now = end
    }

    /// An event from outside (shutdown, say) on one machine, now; its adverts are delivered.
    mutating func perform(on index: Int, _ event: (inout VRRPStateMachine, VRRPInstant) -> [VRRPAction]) {
        deliver(event(&machines[index], now), from: index)
        observe(machines)
    }

    private func nextTimer() -> (index: Int, deadline: VRRPInstant)? {
        machines.indices
            .compactMap { index in machines[index].nextDeadline.map { (index: index, deadline: $0) } }
            .min { $0.deadline < $1.deadline }
    }

    private mutating func deliver(_ actions: [VRRPAction], from sender: Int) {
        let receiver = 1 - sender
        for case .sendAdvertisement(let priority, let interval) in actions {
            let replies = machines[receiver].advertisementReceived(
                priority: priority, maxAdvertInterval: interval,
                sender: machines[sender].configuration.primaryAddress, now: now)
            deliver(replies, from: receiver)
        }
    }
}

