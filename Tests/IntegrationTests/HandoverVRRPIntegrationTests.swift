import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// An upgrade keeps a VRRP master master (issue 20): the new process goes on advertising
/// where the old one stopped, with no gap, no resignation, no new gratuitous ARP, and the
/// backup never notices (root only; see NetworkLab).
final class HandoverVRRPIntegrationTests: XCTestCase {
    /// Watches the lab's link from the client's namespace (its bridge sees every node's
    /// multicast and broadcast) for `seconds`: node a's adverts (how many, the longest gap
    /// between two, how many with priority 0) and gratuitous ARP for the VIP.
    static let watcher = """
        import socket, struct, sys, time
        link = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        link.bind(("br0", 0))
        link.settimeout(0.05)
        end = time.monotonic() + float(sys.argv[1])
        node, vip = socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.10")
        last, gap, adverts, resignations, announcements = None, 0.0, 0, 0, 0
        while time.monotonic() < end:
            try:
                frame = link.recv(2048)
            except socket.timeout:
                continue
            now = time.monotonic()
            kind = struct.unpack("!H", frame[12:14])[0]
            if kind == 0x0800 and frame[23] == 112 and frame[26:30] == node:
                if frame[14 + (frame[14] & 15) * 4 + 2] == 0:
                    resignations += 1
                    continue
                if last is not None:
                    gap = max(gap, now - last)
                last = now
                adverts += 1
            elif kind == 0x0806 and frame[28:32] == vip:
                announcements += 1
        print(adverts, round(gap * 1000), resignations, announcements)
        """

    func testAMasterStaysMasterWithNoAdvertGapNoResignationAndNoNewAnnouncement() throws {
        let lab = try NetworkLab()
        let vrrp = "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 100ms priority"
        let old = try Penha(["-O", "\(vrrp) 200"], listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("a"))
        let b = try Penha(["-O", "\(vrrp) 100"], listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("b"))
        XCTAssertTrue(waitFor(timeout: 5) { old.stderr.contains("-> MASTER") }, old.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { b.stderr.contains("-> BACKUP") }, b.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        // Its three announcements (500 ms apart) are over before the watch starts.
        usleep(2_000_000)
        let watched = Mutex<String?>(nil)
        let client = lab.namespace("c")
        let watcher = Thread {
            let outcome = try? runProgram("/usr/bin/env", ["ip", "netns", "exec", client, "python3", "-c", Self.watcher, "3"])
            watched.withLock { $0 = outcome?.stdout ?? "" }
        }
        watcher.start()
        usleep(800_000)
        let new = try Penha(["-O", "\(vrrp) 200", "-C", old.control, "--takeover", old.control], listen: "192.0.2.10:80",
                            servers: ["127.0.0.1:8080"], namespace: lab.namespace("a"))
        defer { new.stop() }
        XCTAssertEqual(old.waitForExit(timeout: 1), 0, old.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { new.stderr.contains("INIT -> MASTER (taken over from another process)") }, new.stderr)
        while !watcher.isFinished { usleep(20_000) }
        let numbers = (watched.withLock { $0 } ?? "").split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(numbers.count, 4, "the watcher's output: \(watched.withLock { $0 } ?? "none")")
        if numbers.count == 4 {
            XCTAssertGreaterThan(numbers[0], 20, "node a advertised throughout")
            // An advert every 100 ms; a debug build's wake-ups and the capture add a little.
            XCTAssertLessThan(numbers[1], 180, "the longest gap between two adverts, in ms")
            XCTAssertEqual(numbers[2], 0, "no resignation (priority 0)")
            XCTAssertEqual(numbers[3], 0, "no new gratuitous ARP for the VIP")
        }
        XCTAssertFalse(b.stderr.contains("-> MASTER"), "the backup stayed backup: \(b.stderr)")
        XCTAssertTrue(try lab.addresses(on: "a").contains("192.0.2.10/24"), "the VIP stayed")
        XCTAssertEqual(try lab.ask("192.0.2.10"), "node-a")
        print("vrrp takeover: adverts \(numbers)")
    }

    func testABackupStaysBackupAndTheMasterNeverNotices() throws {
        let lab = try NetworkLab()
        let vrrp = "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 100ms priority"
        let a = try Penha(["-O", "\(vrrp) 200"], listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("a"))
        let old = try Penha(["-O", "\(vrrp) 100"], listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("b"))
        XCTAssertTrue(waitFor(timeout: 5) { a.stderr.contains("-> MASTER") }, a.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { old.stderr.contains("-> BACKUP") }, old.stderr)
        let before = a.stderr
        let new = try Penha(["-O", "\(vrrp) 100", "-C", old.control, "--takeover", old.control], listen: "192.0.2.10:80",
                            servers: ["127.0.0.1:8080"], namespace: lab.namespace("b"))
        defer { new.stop() }
        XCTAssertEqual(old.waitForExit(timeout: 1), 0, old.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { new.stderr.contains("INIT -> BACKUP") }, new.stderr)
        usleep(1_000_000)
        XCTAssertFalse(new.stderr.contains("-> MASTER"), new.stderr)
        XCTAssertFalse(old.stderr.contains("-> MASTER"), old.stderr)
        XCTAssertEqual(a.stderr, before, "the master saw nothing: \(a.stderr)")
        XCTAssertFalse(try lab.addresses(on: "b").contains("192.0.2.10/24"))
        XCTAssertEqual(try lab.ask("192.0.2.10"), "node-a")
    }
}
