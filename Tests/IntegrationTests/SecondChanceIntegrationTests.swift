import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The second chance between the nodes (issue 20, part 2) in the namespace lab (root only;
/// see NetworkLab): 20 long-lived connections through the VIP carry byte-checked lines both
/// ways at a low rate while the master is stopped; the backup takes the VIP, the old master
/// drains, and every connection must go on, every byte checked, none reset.
final class SecondChanceIntegrationTests: XCTestCase {
    static let vrrp = "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 100ms"
    static let streams = 20
    static let streamSeconds = 6.0

    /// An echo server on 127.0.0.1:9000 in a node: the servers behind the VIP.
    static let echoProgram = """
        import socket, threading
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 9000))
        server.listen(128)
        def serve(connection):
            with connection:
                while True:
                    data = connection.recv(65536)
                    if not data:
                        return
                    connection.sendall(data)
        while True:
            connection, _ = server.accept()
            threading.Thread(target=serve, args=(connection,), daemon=True).start()
        """

    /// From the client: COUNT connections to the VIP, each sending a line (a counter and a
    /// digest of it) every 100 ms for SECONDS and reading it back byte for byte. Prints
    /// "alive N bytes B" and one line per broken connection, with why and when. With a fifth
    /// argument A.B.C.D, connection I comes from A.B.C.(D+I).
    static let streamProgram = """
        import hashlib, socket, sys, time
        address, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        def source(index):
            if len(sys.argv) < 6:
                return None
            first = sys.argv[5].split(".")
            return (".".join(first[:3] + [str(int(first[3]) + index)]), 0)
        connections = [socket.create_connection((address, port), 2, source(index)) for index in range(count)]
        for connection in connections:
            connection.settimeout(3)
        print("connected", flush=True)
        alive, checked, broken = [True] * count, 0, []
        start, number = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            for index, connection in enumerate(connections):
                if not alive[index]:
                    continue
                line = b"%d %d " % (index, number) + hashlib.sha256(b"%d-%d" % (index, number)).hexdigest().encode() + b"\\n"
                try:
                    connection.sendall(line)
                    echoed = b""
                    while len(echoed) < len(line):
                        chunk = connection.recv(len(line) - len(echoed))
                        if not chunk:
                            raise OSError("closed by the other end")
                        echoed += chunk
                    if echoed != line:
                        raise OSError("bytes differ")
                    checked += len(line)
                except OSError as error:
                    alive[index] = False
                    broken.append("broken %d after %.2f s: %s" % (index, time.monotonic() - start, error))
            number += 1
            time.sleep(0.1)
        print("alive %d bytes %d" % (sum(alive), checked))
        print("\\n".join(broken), flush=True)
        """

    /// On the forger's eth0: how many TCP segments for the VIP were sent to its hardware
    /// address (none is, unless a node passes the VIP's traffic to it).
    static let captureProgram = """
        import socket, sys, time
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        sniffer.bind(("eth0", 0))
        sniffer.settimeout(0.1)
        own = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
        vip, end, count = socket.inet_aton(sys.argv[1]), time.monotonic() + float(sys.argv[2]), 0
        while time.monotonic() < end:
            try:
                frame, where = sniffer.recvfrom(65535)
            except socket.timeout:
                continue
            if where[2] != socket.PACKET_OUTGOING and frame[0:6] == own and frame[12:14] == b"\\x08\\x00" \\
                    and frame[23] == 6 and frame[30:34] == vip:
                count += 1
        print(count, flush=True)
        """

    /// A fourth host on the lab's link, 192.0.2.200 (not the client, whose segments a node
    /// never passes back to it), deleted when the test ends.
    private final class Forger {
        let namespace: String
        init(_ lab: NetworkLab) throws {
            namespace = lab.namespace("f")
            let (inner, outer) = ("vf\(getpid() % 100000)", "vf\(getpid() % 100000)x")
            do {
                for command in [["ip", "netns", "add", namespace],
                                ["ip", "link", "add", inner, "type", "veth", "peer", "name", outer],
                                ["ip", "link", "set", inner, "netns", namespace],
                                ["ip", "link", "set", outer, "netns", lab.namespace("c")],
                                ["ip", "-n", namespace, "link", "set", inner, "name", "eth0"],
                                ["ip", "-n", namespace, "addr", "add", "192.0.2.200/24", "dev", "eth0"],
                                ["ip", "-n", namespace, "link", "set", "eth0", "up"],
                                ["ip", "-n", lab.namespace("c"), "link", "set", outer, "master", "br0"],
                                ["ip", "-n", lab.namespace("c"), "link", "set", outer, "up"]] {
                    try NetworkLab.command(command)
                }
            } catch {
                _ = try? NetworkLab.command(["ip", "link", "del", inner])
                _ = try? NetworkLab.command(["ip", "netns", "del", namespace])
                throw error
            }
        }
        deinit { _ = try? NetworkLab.command(["ip", "netns", "del", namespace]) }
    }


    private func node(_ lab: NetworkLab, _ node: String, priority: Int, secondChanceTo peer: String?, drain: Int = 20,
                      options: [String] = []) throws -> Penha {
        let word = peer.map { " second_chance \($0)" } ?? ""
        return try Penha(["-O", "drain \(drain)", "-O", "\(Self.vrrp) priority \(priority)\(word)"] + options, listen: "192.0.2.10:80",
                         servers: ["127.0.0.1:9000"], namespace: lab.namespace(node))
    }

    private func echoServers(_ lab: NetworkLab) throws -> [BackgroundCommand] {
        let servers = try ["a", "b"].map { node in
            try BackgroundCommand(["ip", "netns", "exec", lab.namespace(node), "python3", "-c", Self.echoProgram], seconds: 60)
        }
        for node in ["a", "b"] {
            let ready = waitFor(timeout: 5) {
                (try? NetworkLab.command(["ip", "netns", "exec", lab.namespace(node), "python3", "-c",
                                          "import socket; socket.create_connection(('127.0.0.1', 9000), 1)"])) != nil
            }
            XCTAssertTrue(ready, "the echo server in \(node) listens")
        }
        return servers
    }

    /// Node a master, node b backup, the streams running through a; SIGTERM on a, while
    /// `during` runs; the streams' outcome once they end.
    /// With `upgrade`, node a (its drain 2 s at first, so that its window as new master
    /// closes soon) is upgraded under the streams before the SIGTERM, which the new process
    /// (drain 20) then takes; it is the `a` returned.
    private func switchOver(_ lab: NetworkLab, secondChance: Bool, upgrade: Bool = false,
                            during: (_ a: Penha, _ b: Penha) throws -> Void = { _, _ in }) throws -> (StreamOutcome, Penha, Penha) {
        let servers = try echoServers(lab)
        defer { servers.forEach { $0.interrupt() } }
        if secondChance {
            try lab.pinNeighbour(on: "a", "192.0.2.2", to: "b")
            try lab.pinNeighbour(on: "b", "192.0.2.1", to: "a")
        }
        var a = try node(lab, "a", priority: 200, secondChanceTo: secondChance ? "192.0.2.2" : nil, drain: upgrade ? 2 : 20)
        let b = try node(lab, "b", priority: 100, secondChanceTo: secondChance ? "192.0.2.1" : nil)
        XCTAssertTrue(waitFor(timeout: 5) { a.stderr.contains("-> MASTER") && b.stderr.contains("-> BACKUP") }, a.stderr + b.stderr)
        let seconds = Self.streamSeconds + (upgrade ? 5 : 0)
        let streams = try BackgroundCommand(["ip", "netns", "exec", lab.namespace("c"), "python3", "-c", Self.streamProgram,
                                             "192.0.2.10", "80", "\(Self.streams)", "\(seconds)"],
                                            seconds: seconds + 10)
        // With `upgrade`: past a's window (2 s from its takeover).
        usleep(upgrade ? 3_000_000 : 2_000_000)
        if upgrade { a = try self.upgrade(lab, a, b) }
        kill(a.process.processIdentifier, SIGTERM)
        XCTAssertTrue(waitFor(timeout: 3) { b.stderr.contains("BACKUP -> MASTER") }, b.stderr)
        try during(a, b)
        let outcome = try StreamOutcome(try streams.finish())
        print("second chance \(secondChance ? "on" : "off"): \(outcome.alive) of \(Self.streams) connections alive, "
              + "\(outcome.bytes) bytes checked, \(outcome.resets) reset; \(outcome.broken.prefix(3))")
        return (outcome, a, b)
    }

    /// Node a's penha, master with its second chance, handed over to a new process under the
    /// link's watch (`HandoverVRRPIntegrationTests.watcher`); returns the new process.
    private func upgrade(_ lab: NetworkLab, _ old: Penha, _ b: Penha) throws -> Penha {
        let watched = Mutex<String?>(nil)
        let client = lab.namespace("c")
        let watcher = Thread {
            let outcome = try? runProgram("/usr/bin/env", ["ip", "netns", "exec", client, "python3", "-c",
                                                           HandoverVRRPIntegrationTests.watcher, "2"])
            watched.withLock { $0 = outcome?.stdout ?? "" }
        }
        watcher.start()
        usleep(500_000)
        let new = try node(lab, "a", priority: 200, secondChanceTo: "192.0.2.2", options: ["-C", old.control, "--takeover", old.control])
        XCTAssertEqual(old.waitForExit(timeout: 2), 0, old.stderr)
        XCTAssertTrue(waitFor(timeout: 5) { new.stderr.contains("INIT -> MASTER (taken over from another process)") }, new.stderr)
        while !watcher.isFinished { usleep(20_000) }
        let numbers = (watched.withLock { $0 } ?? "").split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(numbers.count, 4, "the watcher's output: \(watched.withLock { $0 } ?? "none")")
        if numbers.count == 4 {
            XCTAssertLessThan(numbers[1], 180, "the longest gap between two adverts, in ms")
            XCTAssertEqual(numbers[2], 0, "no resignation (priority 0)")
            XCTAssertEqual(numbers[3], 0, "no new gratuitous ARP for the VIP")
        }
        XCTAssertFalse(b.stderr.contains("-> MASTER"), "the backup stayed backup: \(b.stderr)")
        XCTAssertFalse(try tcFilters(lab, "a").contains("penha"), "nothing of the second chance installed")
        return new
    }

    private func tcFilters(_ lab: NetworkLab, _ node: String) throws -> String {
        try NetworkLab.command(["tc", "-n", lab.namespace(node), "filter", "show", "dev", "eth0", "ingress"])
    }

    private func loopbackAddresses(_ lab: NetworkLab, _ node: String) throws -> String {
        try NetworkLab.command(["ip", "-n", lab.namespace(node), "-o", "addr", "show", "dev", "lo"])
    }

    func testEveryConnectionSurvivesTheSwitchoverByteForByteAndTheOldMasterCleansUpWhenItsDrainEnds() throws {
        let lab = try NetworkLab()
        let (outcome, a, b) = try switchOver(lab, secondChance: true) { a, _ in
            // While the old master drains: the VIP on its lo, its ARP silence at tc ingress
            // (with the redirect: it knows the peer from its permanent neighbour entry); the
            // new master's redirect at tc ingress.
            let draining = waitFor(timeout: 2) { (try? self.loopbackAddresses(lab, "a"))?.contains("192.0.2.10/32") == true }
            XCTAssertTrue(draining, a.stderr)
            let (filtersA, filtersB) = (try self.tcFilters(lab, "a"), try self.tcFilters(lab, "b"))
            XCTAssertTrue(filtersA.contains("penha_drain"), filtersA)
            XCTAssertTrue(filtersB.contains("penha_redirect"), filtersB)
            XCTAssertFalse(try lab.addresses(on: "a").contains("192.0.2.10/24"), "the VIP has left a's eth0")
        }
        XCTAssertEqual(outcome.alive, Self.streams, "\(outcome.broken)")
        XCTAssertEqual(outcome.resets, 0)
        XCTAssertGreaterThan(outcome.bytes, Self.streams * 50 * 70, "every line of every stream came back")
        XCTAssertEqual(a.waitForExit(timeout: 5), 0, "the old master exits once its last connection has ended: \(a.stderr)")
        XCTAssertTrue(a.stderr.contains("draining \(Self.streams) connections"), a.stderr)
        XCTAssertFalse(a.stderr.contains("still open"), a.stderr)
        XCTAssertFalse(try tcFilters(lab, "a").contains("penha"), "no filter left behind")
        XCTAssertFalse(try loopbackAddresses(lab, "a").contains("192.0.2.10"), "no VIP left on lo")
        XCTAssertTrue(b.stderr.contains("passing strays for 192.0.2.10 on to "), b.stderr)
    }

    /// `penha upgrade` of the master between two switchovers (issue 20): refused while its
    /// window as new master is open (the redirect is kernel state), then handed over with
    /// every stream; the new process's SIGTERM switchover keeps them all as the old one's would.
    func testAnUpgradedMasterKeepsItsStreamsAndItsSecondChance() throws {
        let lab = try NetworkLab()
        let (outcome, a, b) = try switchOver(lab, secondChance: true, upgrade: true)
        XCTAssertEqual(outcome.alive, Self.streams, "\(outcome.broken)")
        XCTAssertEqual(outcome.resets, 0)
        XCTAssertEqual(a.waitForExit(timeout: 5), 0, "the new process drains its connections and exits: \(a.stderr)")
        XCTAssertTrue(a.stderr.contains("draining \(Self.streams) connections"), a.stderr)
        XCTAssertTrue(b.stderr.contains("passing strays for 192.0.2.10 on to "), b.stderr)
        XCTAssertFalse(try loopbackAddresses(lab, "a").contains("192.0.2.10"), "no VIP left on lo")
    }

    func testAnUpgradeIsRefusedWhileTheWindowIsOpen() throws {
        let lab = try NetworkLab()
        try lab.pinNeighbour(on: "a", "192.0.2.2", to: "b")
        let a = try node(lab, "a", priority: 200, secondChanceTo: "192.0.2.2")
        XCTAssertTrue(waitFor(timeout: 5) { a.stderr.contains("-> MASTER") }, a.stderr)
        let refused = try runProgram("/usr/bin/env", ["ip", "netns", "exec", lab.namespace("a"), penhaBinary.path, "-f", "-C", a.control,
                                                      "--takeover", a.control, "-O", "\(Self.vrrp) priority 200 second_chance 192.0.2.2",
                                                      "192.0.2.10:80", "127.0.0.1:9000"], timeout: 20)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("the second_chance window of vrrp vrid 51 on eth0 is open"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("it closes in 2") || refused.stderr.contains("it closes in 19"),
                      "the redirect's 20 s, less the time since a became master: \(refused.stderr)")
        XCTAssertNil(a.waitForExit(timeout: 0.5), "the old process serves on: \(a.stderr)")
        XCTAssertTrue(try tcFilters(lab, "a").contains("penha_redirect"))
    }

    /// The same without `second_chance`: the connections through the old master break.
    func testWithoutTheSecondChanceTheConnectionsBreak() throws {
        let lab = try NetworkLab()
        let (outcome, a, _) = try switchOver(lab, secondChance: false)
        XCTAssertLessThan(outcome.alive, Self.streams, "\(outcome)")
        XCTAssertEqual(a.waitForExit(timeout: 5), 0, a.stderr)
    }

    /// Adverts forged from another host on the link (192.0.2.200) while the VIP moves, some
    /// of them preempting the new master for a while (VRRPv3 has no authentication), change
    /// where the strays go no more than anything else in a packet: only to the configured peer.
    func testAForgedAdvertDoesNotMakeANodePassTrafficElsewhere() throws {
        let lab = try NetworkLab()
        let forger = try Forger(lab)
        var captured = ""
        let (outcome, _, b) = try switchOver(lab, secondChance: true) { _, _ in
            // b talks to the forger, so that its neighbour table knows it.
            try NetworkLab.command(["ip", "netns", "exec", lab.namespace("b"), "python3", "-c",
                                    "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'', ('192.0.2.200', 9))"])
            let capture = try BackgroundCommand(["ip", "netns", "exec", forger.namespace, "python3", "-c", Self.captureProgram,
                                                 "192.0.2.10", "3"], seconds: 3)
            usleep(200_000)
            // Low ones, then a takeover held long enough that b lets the VIP go, then silence: b
            // takes the VIP back.
            for priority in [0, 1, 0, 1, 254, 254, 254, 254, 254] {
                try lab.forgeAdvertisement(vrid: 51, priority: priority, intervalCentiseconds: 10, virtualAddress: "192.0.2.10",
                                           from: forger.namespace, source: "192.0.2.200")
                usleep(100_000)
            }
            captured = try capture.finish().trimmingCharacters(in: .whitespacesAndNewlines)
        }
        XCTAssertEqual(captured, "0", "TCP segments for the VIP sent to the forger's hardware address")
        XCTAssertFalse(b.stderr.contains("on to \(try hardwareAddress(forger.namespace, "eth0"))"), b.stderr)
        XCTAssertEqual(outcome.resets, 0, "\(outcome.broken)")
    }

    private func hardwareAddress(_ namespace: String, _ interface: String) throws -> String {
        try NetworkLab.command(["ip", "netns", "exec", namespace, "cat", "/sys/class/net/\(interface)/address"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// What `SecondChanceIntegrationTests.streamProgram` printed.
struct StreamOutcome {
    let alive: Int
    let bytes: Int
    /// "broken I after S s: WHY", one per connection that broke.
    let broken: [String]
    var resets: Int { broken.filter { $0.contains("reset") }.count }

    init(_ output: String) throws {
        let lines = output.split(separator: "\n").map(String.init)
        guard lines.first == "connected", let summary = lines.first(where: { $0.hasPrefix("alive ") }) else {
            throw TestFailure("the streams did not run: \(lines)")
        }
        let words = summary.split(separator: " ")
        alive = Int(words[1]) ?? -1
        bytes = Int(words[3]) ?? -1
        broken = lines.filter { $0.hasPrefix("broken") }
    }

    /// The resets within `seconds` of the streams' start, and after.
    func resets(splitAt seconds: Double) -> (before: Int, after: Int) {
        let times = broken.filter { $0.contains("reset") }.compactMap { Double($0.split(separator: " ")[3]) }
        return (times.filter { $0 < seconds }.count, times.filter { $0 >= seconds }.count)
    }
}
