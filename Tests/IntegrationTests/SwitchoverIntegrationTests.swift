import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Planned switchovers and active-active in the namespace lab (root only; see NetworkLab):
/// the probe opens a new connection to the VIP every 20 ms, and none may fail.
final class SwitchoverIntegrationTests: XCTestCase {
    static let vrrp = "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 100ms"

    private func node(_ lab: NetworkLab, _ node: String, priority: Int, options: [String] = []) throws -> Penha {
        try Penha(["-O", "\(Self.vrrp) priority \(priority)"] + options, listen: "192.0.2.10:80",
                  servers: ["127.0.0.1:8080"], namespace: lab.namespace(node))
    }

    /// Waits (bounded) until a node's log shows it reached `state` `times` times.
    private func waitForState(_ penha: Penha, _ state: String, times: Int = 1, timeout: Double = 5) -> Bool {
        waitFor(timeout: timeout) { penha.stderr.components(separatedBy: "-> \(state)").count > times }
    }

    private func transitions(_ penha: Penha) -> Int { penha.stderr.components(separatedBy: " -> ").count - 1 }

    /// Node a master (200), node b backup (100), the VIP answering from a.
    private func startPair(_ lab: NetworkLab, optionsA: [String] = []) throws -> (Penha, Penha) {
        let a = optionsA.isEmpty ? try node(lab, "a", priority: 200)
            : try Penha(optionsA, listen: "192.0.2.10:80", servers: ["127.0.0.1:8080"], namespace: lab.namespace("a"))
        let b = try node(lab, "b", priority: 100)
        XCTAssertTrue(waitForState(a, "MASTER"), a.stderr)
        XCTAssertTrue(waitForState(b, "BACKUP"), b.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5))
        return (a, b)
    }

    /// The leaving master keeps the VIP and serves until the new master has advertised twice.
    func testTerminatedMasterHandsTheVIPOverWithoutAFailedConnection() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        let probe = try Probe(lab, address: "192.0.2.10", seconds: 2)
        usleep(600_000)
        kill(a.process.processIdentifier, SIGTERM)
        XCTAssertEqual(a.waitForExit(timeout: 5), 0, a.stderr)
        let attempts = try probe.finish()
        print("SIGTERM switchover: \(attempts.summary)")
        XCTAssertEqual(attempts.failures, 0, attempts.summary)
        XCTAssertEqual(attempts.answerSequence, ["node-a", "node-b"], attempts.summary)
        XCTAssertTrue(b.stderr.contains("priority 0 from 192.0.2.1"), b.stderr)
        XCTAssertTrue(a.stderr.contains("MASTER -> INIT (shutdown, handed over to 192.0.2.2)"), a.stderr)
        XCTAssertFalse(try lab.addresses(on: "a").contains("192.0.2.10/24"), "no VIP left behind on exit")
    }

    /// `vrrp ... priority 50` on the control socket: the instance changes in place, b preempts,
    /// and a serves until b's second advert.
    func testPriorityLoweredOnTheControlSocketHandsTheVIPOverWithoutAFailedConnection() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        let probe = try Probe(lab, address: "192.0.2.10", seconds: 2)
        usleep(600_000)
        XCTAssertEqual(try a.command("\(Self.vrrp) priority 50"), [])
        XCTAssertTrue(waitForState(b, "MASTER", timeout: 3), b.stderr)
        let attempts = try probe.finish()
        print("priority change switchover: \(attempts.summary)")
        XCTAssertEqual(attempts.failures, 0, attempts.summary)
        XCTAssertEqual(attempts.answerSequence, ["node-a", "node-b"], attempts.summary)
        XCTAssertTrue(a.stderr.contains("MASTER -> BACKUP (higher priority 100 from 192.0.2.2)"), a.stderr)
        XCTAssertFalse(a.stderr.contains("-> INIT"), "changed in place, not restarted: \(a.stderr)")
        XCTAssertFalse(try lab.addresses(on: "a").contains("192.0.2.10/24"), "the old master let the VIP go")
        let status = try vrrpInstances(of: a)
        XCTAssertEqual(status.first?["priority"] as? Int, 50)
        XCTAssertEqual(status.first?["state"] as? String, "BACKUP")
    }

    /// keepalived#754: a reload with a small advert interval failed over. Reloads whose vrrp
    /// lines are the same change nothing of the instance, not even its advert rhythm; one
    /// whose priority changed applies it.
    func testReloadWithUnchangedVRRPLinesCausesNoTransitionAndAChangedOneApplies() throws {
        let lab = try NetworkLab()
        let file = temporaryPath("node-a.conf")
        defer { unlink(file) }
        func writeFile(priority: Int, blacklist: Int) throws {
            try "\(Self.vrrp) priority \(priority)\nblacklist \(blacklist)\n".write(toFile: file, atomically: true, encoding: .utf8)
        }
        try writeFile(priority: 200, blacklist: 30)
        let (a, b) = try startPair(lab, optionsA: ["-F", file])
        usleep(500_000)
        let (transitionsA, transitionsB) = (transitions(a), transitions(b))
        let lastChange = try vrrpInstances(of: a).first?["lastChange"] as? Int
        let receivedBefore = try vrrpInstances(of: b).first?["received"] as? Int ?? 0
        let start = Date()
        for round in 0..<5 {
            try writeFile(priority: 200, blacklist: 10 + round)
            try a.signal(SIGHUP, thenLogs: "reloaded")
            usleep(200_000)
        }
        let elapsed = Date().timeIntervalSince(start)
        let received = (try vrrpInstances(of: b).first?["received"] as? Int ?? 0) - receivedBefore
        XCTAssertEqual(transitions(a), transitionsA, a.stderr)
        XCTAssertEqual(transitions(b), transitionsB, b.stderr)
        XCTAssertNotNil(lastChange)
        XCTAssertEqual(try vrrpInstances(of: a).first?["lastChange"] as? Int, lastChange, "the last change is still the startup one")
        // One advert per 100 ms kept coming: a gap would show as missing adverts (and a takeover).
        XCTAssertGreaterThanOrEqual(received, Int(elapsed * 10) - 2, "adverts during \(elapsed) s: \(received)")
        XCTAssertTrue(a.stderr.contains("reload: blacklist 14"), a.stderr)

        try writeFile(priority: 50, blacklist: 14)
        try a.signal(SIGHUP, thenLogs: "reloaded")
        XCTAssertTrue(waitForState(b, "MASTER", timeout: 3), "the lowered priority applies: \(b.stderr)")
        XCTAssertTrue(waitForState(a, "BACKUP", times: 2), a.stderr)
        XCTAssertEqual(try vrrpInstances(of: a).first?["priority"] as? Int, 50)
    }

    /// deploy/examples' active-active pair (advert 100 ms here): each node the master of one
    /// VIP, penha listening on all addresses; one dies and the other holds both.
    func testActiveActivePairServesBothVIPsAndTheSurvivorHoldsBoth() throws {
        let lab = try NetworkLab()
        func start(_ node: String) throws -> Penha {
            let (instances, _) = try ExampleFiles.vrrpLines(in: "active-active-\(node).conf")
            let options = instances.flatMap { ["-O", $0.replacingOccurrences(of: "advert 1s", with: "advert 100ms")] }
            return try Penha(options, listen: "80", servers: ["127.0.0.1:8080"], namespace: lab.namespace(node))
        }
        let a = try start("a")
        let b = try start("b")
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 5), a.stderr)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.11", answers: "node-b", timeout: 5), b.stderr)
        XCTAssertEqual(try lab.addresses(on: "a").filter { $0.hasPrefix("192.0.2.1") }.sorted(), ["192.0.2.1/24", "192.0.2.10/24"])
        XCTAssertEqual(try lab.addresses(on: "b").filter { $0.hasPrefix("192.0.2.1") }.sorted(), ["192.0.2.11/24"])
        kill(a.process.processIdentifier, SIGKILL)
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 5), b.stderr)
        XCTAssertEqual(try lab.ask("192.0.2.11"), "node-b")
        XCTAssertEqual(try vrrpInstances(of: b).map { $0["state"] as? String }, ["MASTER", "MASTER"])
        XCTAssertEqual(try lab.addresses(on: "b").filter { $0.hasPrefix("192.0.2.1") }.sorted(), ["192.0.2.10/24", "192.0.2.11/24"])
    }

    /// Both nodes master while the link between them is cut (the client still reaches both, and
    /// follows b's announcement); once it heals, b yields within an advert interval, a announces
    /// again so the client comes back to it, and the VIP ends up on a only.
    func testHealedSplitBrainLeavesOneMasterAndTheVIPOnOneNode() throws {
        let lab = try NetworkLab()
        let (a, b) = try startPair(lab)
        usleep(1_200_000)  // a's own announcements at startup are over
        try isolateNodes(lab, true)
        XCTAssertTrue(waitForState(b, "MASTER", timeout: 3), "b hears a no more: \(b.stderr)")
        // a's last announcements may still come after b's first: b's later ones win.
        XCTAssertNotNil(try lab.waitUntil("192.0.2.10", answers: "node-b", timeout: 3), "the client follows b's announcement")
        XCTAssertTrue(try lab.addresses(on: "a").contains("192.0.2.10/24"), "split brain: both hold the VIP")
        usleep(1_100_000)  // b's announcements as new master are over too
        let announcements = try BackgroundCommand(
            ["ip", "netns", "exec", lab.namespace("c"), "python3", "-c", Self.gratuitousARPListener, "192.0.2.10", "1.5"], seconds: 1.5)
        usleep(200_000)  // listening
        let healed = Date()
        try isolateNodes(lab, false)
        XCTAssertTrue(waitFor(timeout: 2) { b.stderr.contains("MASTER -> BACKUP (higher priority 200 from 192.0.2.1)") }, b.stderr)
        let yielded = Date().timeIntervalSince(healed)
        let reached = try lab.waitUntil("192.0.2.10", answers: "node-a", timeout: 2)
        XCTAssertNotNil(reached, "the client is pointed back at a")
        XCTAssertTrue(waitFor(timeout: 2) { (try? lab.addresses(on: "b").contains("192.0.2.10/24")) == false }, "b let the VIP go")
        XCTAssertTrue(try lab.addresses(on: "a").contains("192.0.2.10/24"))
        XCTAssertFalse(a.stderr.contains("MASTER -> "), "a stayed master: \(a.stderr)")
        let announcers = Set(try announcements.finish().split(separator: "\n").map(String.init))
        XCTAssertEqual(announcers, [try hardwareAddress(lab, "a")], "after the heal, a announced the VIP again (and b no more)")
        print(String(format: "split brain healed: b yielded after %.0f ms, the client reached a after %.0f ms", yielded * 1000, (reached ?? 0) * 1000))
        // One advert interval (100 ms), and what the test's polling and process starts add on a loaded machine.
        XCTAssertLessThan(yielded, 0.1 + 0.4)
        XCTAssertEqual(try lab.ask("192.0.2.10"), "node-a")
    }

    /// Prints the sender's hardware address of every gratuitous ARP for ADDRESS (sender and
    /// target address both ADDRESS) heard on the client's bridge for SECONDS.
    static let gratuitousARPListener = """
        import socket, struct, sys, time
        address, seconds = socket.inet_aton(sys.argv[1]), float(sys.argv[2])
        listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
        listener.bind(("br0", 0))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            listener.settimeout(max(0.01, end - time.monotonic()))
            try:
                frame = listener.recv(128)
            except socket.timeout:
                break
            arp = frame[14:42]
            if len(arp) == 28 and arp[14:18] == address and arp[24:28] == address:
                print(":".join("%02x" % byte for byte in arp[8:14]), flush=True)
        """

    private func hardwareAddress(_ lab: NetworkLab, _ node: String) throws -> String {
        let link = try NetworkLab.command(["ip", "-n", lab.namespace(node), "-o", "link", "show", "eth0"])
        let words = link.split(separator: " ")
        guard let index = words.firstIndex(of: "link/ether"), index + 1 < words.count else { throw TestFailure("no MAC: \(link)") }
        return String(words[index + 1])
    }

    /// Cuts (or restores) the link between the nodes and leaves the client's to each: the
    /// bridge's ports isolated from one another (the bridge itself, the client, is not).
    private func isolateNodes(_ lab: NetworkLab, _ isolated: Bool) throws {
        let links = try NetworkLab.command(["ip", "-n", lab.namespace("c"), "-o", "link", "show", "master", "br0"])
        let ports = links.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ")  // "5: v123ax@if4: <BROADCAST,...> ..."
            guard words.count > 1 else { return nil }
            return words[1].split(separator: "@").first.map { String($0.filter { $0 != ":" }) }
        }
        XCTAssertEqual(ports.count, 2, links)
        for port in ports {
            try NetworkLab.command(["ip", "netns", "exec", lab.namespace("c"), "bridge", "link", "set", "dev", port,
                                    "isolated", isolated ? "on" : "off"])
        }
    }

    /// `penha status --json` of a node: its VRRP instances.
    private func vrrpInstances(of penha: Penha) throws -> [[String: Any]] {
        let result = try runPenha(["status", "-C", penha.control, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return object?["vrrp"] as? [[String: Any]] ?? []
    }
}

/// The `vrrp` lines of a file in deploy/examples, as text.
enum ExampleFiles {
    static func vrrpLines(in file: String) throws -> ([String], String) {
        let path = URL(fileURLWithPath: NetworkLab.script).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/\(file)").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return (text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("vrrp ") }, path)
    }
}
