import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Two penha nodes sharing a VIP in network namespaces (root only; see NetworkLab).
final class VRRPIntegrationTests: XCTestCase {
    /// advert 100 ms: a backup of priority 100 declares the master down after
    /// 3 x 100 ms + (256 - 100) x 100 ms / 256 = 360 ms (RFC 5798 section 6.1).
    static let masterDownInterval = 0.36
    static let margin = 1.5

    private func startNode(_ lab: NetworkLab, _ node: String, priority: Int, vip: String = "192.0.2.10/24",
                           listen: String = "192.0.2.10:80", extra: String = "") throws -> Penha {
        let vrrp = "vrrp interface eth0 vrid 51 priority \(priority) vip \(vip) advert 100ms \(extra)"
        return try Penha(["-O", vrrp], listen: listen, servers: ["127.0.0.1:8080"], namespace: lab.namespace(node))
    }

    /// Node a at priority 200 and node b at 100, once a is MASTER and b BACKUP.
    private func startPair(_ lab: NetworkLab, extra: String = "", extraA: String = "", extraB: String = "") throws -> (Penha, Penha) {
        let a = try startNode(lab, "a", priority: 200, extra: "\(extra) \(extraA)")
        let b = try startNode(lab, "b", priority: 100, extra: "\(extra) \(extraB)")
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        XCTAssertTrue(waitForState(b, "BACKUP"), b.stderr)
        return (a, b)
    }

    /// Waits (bounded) until a node's log shows it reached `state`.
    private func waitForState(_ penha: Penha, _ state: String, timeout: Double = 5) -> Bool {
        waitFor(timeout: timeout) { penha.stderr.contains("-> \(state)") }
    }

    func testHigherPriorityBecomesMasterAndTheVIPAnswers() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        XCTAssertTrue(try lab.addresses(on: "a").contains("192.0.2.10/24"))
        XCTAssertFalse(try lab.addresses(on: "b").contains("192.0.2.10/24"), "only the master holds the VIP")
        XCTAssertFalse(b.stderr.contains("-> MASTER"), b.stderr)
        XCTAssertEqual(a.stderr.components(separatedBy: "-> MASTER").count, 2, "a became master once: \(a.stderr)")
    }

    func testBackupServesWithinMasterDownIntervalAfterTheMasterIsKilled() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        kill(a.process.processIdentifier, SIGKILL)
        let took = try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 10)
        XCTAssertNotNil(took, b.stderr)
        XCTAssertLessThan(took ?? 99, Self.masterDownInterval + Self.margin)
        XCTAssertTrue(b.stderr.contains("master down timer expired"), b.stderr)
    }

    func testTerminatedMasterResignsAndTheBackupTakesOverAtOnce() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        kill(a.process.processIdentifier, SIGTERM)
        XCTAssertEqual(a.waitForExit(timeout: 5), 0)
        XCTAssertTrue(waitForState(b, "MASTER", timeout: 2), b.stderr)
        XCTAssertTrue(b.stderr.contains("priority 0 from 192.0.2.1"), "took over on the resignation, not the timer: \(b.stderr)")
        XCTAssertFalse(try lab.addresses(on: "a").contains("192.0.2.10/24"), "no VIP left behind on exit")
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 2))
    }

    func testHigherPriorityNodePreemptsWhenItComesBack() throws {
        let lab = try NetworkLab()
        let b = try startNode(lab, "b", priority: 100)
        XCTAssertTrue(waitForState(b, "MASTER"), b.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 5))
        let a = try startNode(lab, "a", priority: 200)
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        XCTAssertTrue(waitForState(b, "BACKUP"), "b yields to the higher priority: \(b.stderr)")
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        XCTAssertFalse(try lab.addresses(on: "b").contains("192.0.2.10/24"), "the old master removed the VIP")
    }

    func testPreemptOffKeepsTheCurrentMaster() throws {
        let lab = try NetworkLab()
        let b = try startNode(lab, "b", priority: 100)
        XCTAssertTrue(waitForState(b, "MASTER"), b.stderr)
        let a = try startNode(lab, "a", priority: 200, extra: "preempt off")
        XCTAssertTrue(waitForState(a, "BACKUP"), a.stderr)
        XCTAssertFalse(waitForState(a, "MASTER", timeout: 2), "preempt off: a stays backup: \(a.stderr)")
        XCTAssertEqual(try lab.ask("192.0.2.10"), "node-b")
    }

    func testInterfaceDownPutsTheMasterInFaultAndTheBackupTakesOver() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        try lab.setLink(of: "a", up: false)
        XCTAssertTrue(waitForState(a, "FAULT"), a.stderr)
        XCTAssertTrue(waitForState(b, "MASTER"), b.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 5))
        try lab.setLink(of: "a", up: true)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5), "back up, a preempts again")
    }

    func testNodeWithoutServersHandsTheVIPToAHealthyPeer() throws {
        let lab = try NetworkLab()
        // a's only server is a closed port: it is blacklisted after the first client, and with
        // track_servers 1 its priority drops below b's.
        let vrrp = "vrrp interface eth0 vrid 51 priority 200 vip 192.0.2.10/24 advert 100ms track_servers 1 weight 150"
        let a = try Penha(["-O", vrrp, "-b", "30"], listen: "192.0.2.10:80", servers: ["127.0.0.1:9"], namespace: lab.namespace("a"))
        let b = try startNode(lab, "b", priority: 100)
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        _ = try lab.ask("192.0.2.10")  // fails on a, which blacklists its server
        XCTAssertTrue(waitForState(b, "MASTER", timeout: 5), "b preempts the unhealthy master: \(b.stderr)")
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 5))
    }

    func testIPv6PairServesTheVIP() throws {
        let lab = try NetworkLab()
        let a = try startNode(lab, "a", priority: 200, vip: "2001:db8::10/64", listen: "[2001:db8::10]:80")
        let b = try startNode(lab, "b", priority: 100, vip: "2001:db8::10/64", listen: "[2001:db8::10]:80")
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        XCTAssertNotNil(try lab.waitUntil("2001:db8::10", answers: "node-a", timeout: 5))
        kill(a.process.processIdentifier, SIGKILL)
        XCTAssertNotNil(try lab.waitUntil("2001:db8::10", answers: "node-b", timeout: 5), b.stderr)
    }

    func testVersion2PairWithAuthentication() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab, extra: "version 2 advert 1s auth secret")
        kill(a.process.processIdentifier, SIGTERM)
        XCTAssertTrue(waitForState(b, "MASTER", timeout: 3), b.stderr)
    }

    func testStatusShowsEachNodesInstance() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        let master = try vrrpStatus(of: a)
        XCTAssertEqual(master.role, "MASTER")
        XCTAssertEqual(master.instance["state"] as? String, "MASTER")
        XCTAssertEqual(master.instance["interface"] as? String, "eth0")
        XCTAssertEqual(master.instance["vrid"] as? Int, 51)
        XCTAssertEqual(master.instance["priority"] as? Int, 200)
        XCTAssertEqual(master.instance["advertMilliseconds"] as? Int, 100)
        XCTAssertEqual(master.instance["master"] as? String, "192.0.2.1")
        XCTAssertGreaterThan(master.instance["sent"] as? Int ?? 0, 0)
        XCTAssertEqual(master.instance["lastChangeReason"] as? String, "master down timer expired")
        // It became master since the pair started: seconds ago by penha's clock, beside the epoch time.
        XCTAssertTrue((0...30).contains(master.instance["lastChangeSecondsAgo"] as? Int ?? -1), "\(master.instance)")
        XCTAssertGreaterThan(master.instance["lastChange"] as? Int ?? 0, 0)
        let masterVIPs = master.instance["virtualAddresses"] as? [[String: Any]]
        XCTAssertEqual(masterVIPs?.first?["address"] as? String, "192.0.2.10/24")
        XCTAssertEqual(masterVIPs?.first?["onInterface"] as? Bool, true)

        let backup = try vrrpStatus(of: b)
        XCTAssertEqual(backup.role, "BACKUP")
        XCTAssertEqual(backup.instance["master"] as? String, "192.0.2.1", "the backup knows who the master is")
        XCTAssertGreaterThan(backup.instance["received"] as? Int ?? 0, 0)
        XCTAssertEqual((backup.instance["virtualAddresses"] as? [[String: Any]])?.first?["onInterface"] as? Bool, false)
        let text = try runPenha(["status", "-C", b.control])
        XCTAssertTrue(text.stdout.contains("VRRP vrid 51 on eth0: BACKUP, priority 100"), text.stdout)
    }

    func testUnicastPeersElectAndFailOver() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab, extraA: "peer 192.0.2.2", extraB: "peer 192.0.2.1")
        XCTAssertGreaterThan(try vrrpStatus(of: b).instance["received"] as? Int ?? 0, 0, "unicast adverts arrive")
        kill(a.process.processIdentifier, SIGKILL)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 5), b.stderr)
    }

    func testNotifyRunsOnEveryTransitionWithTheNewState() throws {
        let lab = try NetworkLab()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("penha-notify-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("notify").path
        let record = directory.appendingPathComponent("states").path
        try "#!/bin/sh\necho \"$1\" >> \(record)\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let a = try startNode(lab, "a", priority: 100, extra: "notify \(script)")
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        kill(a.process.processIdentifier, SIGTERM)
        XCTAssertEqual(a.waitForExit(timeout: 5), 0)
        let deadline = Date() + 5
        var states: [String] = []
        while Date() < deadline {
            states = ((try? String(contentsOfFile: record, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            if states.count >= 3 { break }
            usleep(50_000)
        }
        XCTAssertEqual(states, ["BACKUP", "MASTER", "INIT"])
    }

    func testAuthenticationMismatchIsDroppedAndCounted() throws {
        let lab = try NetworkLab()
        let a = try startNode(lab, "a", priority: 200, extra: "version 2 advert 1s auth secret")
        let b = try startNode(lab, "b", priority: 100, extra: "version 2 advert 1s auth other")
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        // b hears nothing it accepts, so it declares the master down and takes over too.
        XCTAssertTrue(waitForState(b, "MASTER", timeout: 6), b.stderr)
        let dropped = try vrrpStatus(of: b).instance["dropped"] as? [String: Int]
        XCTAssertGreaterThan(dropped?["authentication"] ?? 0, 0, "\(String(describing: dropped))")
        XCTAssertEqual(try vrrpStatus(of: b).instance["received"] as? Int, 0)
    }

    /// One forged advert with interval 0 and a priority above both nodes: accepted, it made the
    /// master yield and the backup's Master_Down_Interval 0, so both took the VIP (issue 16).
    func testForgedAdvertWithZeroIntervalIsDroppedAndChangesNothing() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        try lab.forgeAdvertisement(vrid: 51, priority: 254, intervalCentiseconds: 0, virtualAddress: "192.0.2.10")
        for node in [a, b] {
            XCTAssertTrue(waitFor(timeout: 5) { self.droppedZeroIntervals(of: node) > 0 }, "not counted: \(node.stderr)")
        }
        // Accepted, it would have acted at once: give the nodes many advert intervals to show it.
        usleep(1_000_000)
        XCTAssertFalse(b.stderr.contains("-> MASTER"), "the backup stayed backup: \(b.stderr)")
        XCTAssertFalse(a.stderr.contains("MASTER -> BACKUP"), "the master stayed master: \(a.stderr)")
        XCTAssertTrue(try lab.addresses(on: "a").contains("192.0.2.10/24"))
        XCTAssertFalse(try lab.addresses(on: "b").contains("192.0.2.10/24"), "the VIP is on the master only")
    }

    /// kill -9 leaves a master's VIP on its interface; restarted as backup, the node removes it.
    func testRestartedBackupRemovesTheVIPItsKilledRunLeftBehind() throws {
        let lab = try NetworkLab()
        let a = try startNode(lab, "a", priority: 200)
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        try lab.addAddress("192.0.2.10/24", on: "b")
        let b = try startNode(lab, "b", priority: 100)
        XCTAssertTrue(waitForState(b, "BACKUP"), b.stderr)
        XCTAssertTrue(waitFor(timeout: 3) { (try? lab.addresses(on: "b").contains("192.0.2.10/24")) == false },
                      "the backup still holds the VIP: \((try? lab.addresses(on: "b")) ?? [])")
        XCTAssertTrue(try lab.addresses(on: "a").contains("192.0.2.10/24"), "the master keeps it")
        XCTAssertFalse(b.stderr.contains("-> MASTER"), b.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
    }

    /// The node's drop_zeroInterval counter; 0 when its status cannot be read.
    private func droppedZeroIntervals(of penha: Penha) -> Int {
        ((try? vrrpStatus(of: penha))?.instance["dropped"] as? [String: Int])?["zeroInterval"] ?? 0
    }

    /// `penha status --json` of a node: the top-level role and its first VRRP instance.
    private func vrrpStatus(of penha: Penha) throws -> (role: String?, instance: [String: Any]) {
        let result = try runPenha(["status", "-C", penha.control, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let instance = (object?["vrrp"] as? [[String: Any]])?.first ?? [:]
        return (object?["role"] as? String, instance)
    }
}
