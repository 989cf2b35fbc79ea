import XCTest
@testable import VRRPCore

/// A VRRP instance handed to a new penha process on the same host (`penha upgrade`): the
/// old machine says when its next advert is due, and the new one goes on as master from there,
/// with no address added and no announcement (virtual time only).
final class ResumptionTests: XCTestCase {
    private let t0 = VRRPInstant(nanoseconds: 5_000_000_000)
    private let interval: UInt64 = 100_000_000

    private func machine(priority: UInt8 = 200) throws -> VRRPStateMachine {
        VRRPStateMachine(configuration: try VRRPConfiguration(version: .v3, vrid: 51, priority: priority, advertisementInterval: 10,
                                                              primaryAddress: IPAddress("192.0.2.1")!))
    }

    func testOnlyAMasterHasANextAdvertisementToHandOver() throws {
        var old = try machine()
        XCTAssertNil(old.nextAdvertisement, "initialize")
        _ = old.start(now: t0)
        XCTAssertEqual(old.state, .backup)
        XCTAssertNil(old.nextAdvertisement, "a backup sends none")
        _ = old.tick(now: old.nextDeadline!)
        XCTAssertEqual(old.state, .master)
        let became = old.lastTransition!.at
        XCTAssertEqual(old.nextAdvertisement, became.advanced(by: interval))
        _ = old.shutdown(now: became.advanced(by: 1))
        XCTAssertNil(old.nextAdvertisement, "a resigning master is stopping, not handed over")
    }

    func testTheNewMachineAdvertisesWhenTheOldOnesNextAdvertWasDueAndAddsAndAnnouncesNothing() throws {
        var new = try machine()
        let due = t0.advanced(by: 40_000_000)
        let actions = new.resumeAsMaster(advertisingAt: due, now: t0)
        XCTAssertEqual(actions, [.transition(from: .initialize, to: .master, reason: "taken over from another process")])
        XCTAssertEqual(new.state, .master)
        XCTAssertEqual(new.masterAddress, IPAddress("192.0.2.1"))
        XCTAssertTrue(new.holdsVirtualAddresses, "they are on the interface: a backup's down timer never added them")
        XCTAssertEqual(new.nextDeadline, due)
        XCTAssertEqual(new.tick(now: VRRPInstant(nanoseconds: due.nanoseconds - 1)), [], "not before it was due")
        XCTAssertEqual(new.tick(now: due), [.sendAdvertisement(priority: 200, interval: 10)])
        XCTAssertEqual(new.nextDeadline, due.advanced(by: interval), "then every interval, as the old one did")
        // A stop after it resigns as any master does.
        XCTAssertEqual(new.shutdown(now: due.advanced(by: 1)), [.sendAdvertisement(priority: 0, interval: 10)])
    }

    func testAnAdvertAlreadyOverdueGoesAtOnceAndOnlyAnInitialMachineResumes() throws {
        var late = try machine()
        _ = late.resumeAsMaster(advertisingAt: t0, now: t0.advanced(by: 30_000_000))
        XCTAssertEqual(late.nextDeadline, t0.advanced(by: 30_000_000), "now, not in the past")
        var running = try machine()
        _ = running.start(now: t0)
        XCTAssertEqual(running.resumeAsMaster(advertisingAt: t0, now: t0), [], "a running machine is not resumed")
        XCTAssertEqual(running.state, .backup)
    }

    func testAResumptionNamesItsInstance() throws {
        let resumption = VRRPResumption(interface: "eth0", vrid: 51, family: .v4, nextAdvertisement: t0)
        XCTAssertTrue(resumption.isMaster)
        var configuration = try VRRPInstanceConfiguration.parse(["interface", "eth0", "vrid", "51", "priority", "200", "vip", "192.0.2.10/24"])
        XCTAssertTrue(resumption.resumes(configuration))
        configuration.vrid = 52
        XCTAssertFalse(resumption.resumes(configuration))
    }
}
