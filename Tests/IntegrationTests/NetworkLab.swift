import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The namespace lab of deploy/lab/lab.sh, built for one test and always deleted: two
/// nodes (`a`, `b`) and a client (`c`) on one bridge, addresses only from 192.0.2.0/24
/// and 2001:db8::/32, a backend answering "node-a" / "node-b" on 127.0.0.1:8080 in each node.
final class NetworkLab {
    /// A backend on 127.0.0.1:8081 in a node that greets and then holds the connection until
    /// the client closes it (at most 60 s): a connection for penha to drain.
    static let holdingBackend = """
        import socket, threading
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 8081))
        server.listen(16)
        def hold(connection):
            connection.settimeout(60)
            try:
                connection.sendall(b"held\\n")
                while connection.recv(64):
                    pass
            except OSError:
                pass
            connection.close()
        while True:
            connection, _ = server.accept()
            threading.Thread(target=hold, args=(connection,), daemon=True).start()
        """

    static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("deploy/lab/lab.sh").path

    /// Unique per test process and lab; short, because interface names derive from it.
    let name: String

    /// Skips (or, with PENHA_REQUIRE_NETNS=1, fails) when not root.
    init() throws {
        try Self.requireRoot()
        name = "penha-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        do {
            try Self.run(["up", name])
        } catch {
            _ = try? Self.run(["down", name])
            throw error
        }
    }

    deinit {
        _ = try? Self.run(["down", name])
    }

    /// Skips (or, with PENHA_REQUIRE_NETNS=1, fails) a namespace test when not root.
    static func requireRoot() throws {
        guard geteuid() == 0 else {
            if ProcessInfo.processInfo.environment["PENHA_REQUIRE_NETNS"] == "1" {
                throw TestFailure("PENHA_REQUIRE_NETNS=1 but not running as root: network namespace tests cannot run")
            }
            throw XCTSkip("needs root for network namespaces; CI runs it with PENHA_REQUIRE_NETNS=1")
        }
    }

    func namespace(_ node: String) -> String { "\(name)-\(node)" }

    /// Which node's backend answers on ADDRESS:PORT as seen from the client, nil if none.
    func ask(_ address: String, port: Int = 80) throws -> String? {
        let answer = try Self.run(["ask", name, address, "\(port)"]).trimmingCharacters(in: .whitespacesAndNewlines)
        return answer == "none" ? nil : answer
    }

    /// Asks every 50 ms, at most `timeout` seconds, until `node` answers; returns the time it took.
    func waitUntil(_ address: String, answers node: String, timeout: Double) throws -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout {
            if try ask(address) == node { return Date().timeIntervalSince(start) }
            usleep(50_000)
        }
        return nil
    }

    /// What an operator does for `second_chance ADDRESS`: a permanent neighbour entry on
    /// `node`'s eth0 for `address`, the hardware address of `peer`'s eth0.
    func pinNeighbour(on node: String, _ address: String, to peer: String) throws {
        let hardware = try Self.command(["ip", "netns", "exec", namespace(peer), "cat", "/sys/class/net/eth0/address"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.command(["ip", "-n", namespace(node), "neigh", "replace", address, "lladdr", hardware,
                          "nud", "permanent", "dev", "eth0"])
    }

    /// The addresses on a node's eth0, as `ip` prints them (e.g. "192.0.2.10/24").
    func addresses(on node: String) throws -> [String] {
        try Self.command(["ip", "-n", namespace(node), "-o", "addr", "show", "dev", "eth0"])
            .split(separator: "\n").compactMap { line in
                let words = line.split(separator: " ")
                guard let index = words.firstIndex(where: { $0 == "inet" || $0 == "inet6" }), index + 1 < words.count else { return nil }
                return String(words[index + 1])
            }
    }

    /// Sends one VRRPv3 advertisement (RFC 5798 section 5) from the client `c` (192.0.2.100), or
    /// from `namespace` with `source`, to 224.0.0.18 on the lab's link, with any interval, 0
    /// included: the forger a node must resist.
    func forgeAdvertisement(vrid: Int, priority: Int, intervalCentiseconds: Int, virtualAddress: String,
                            from namespace: String? = nil, source: String = "192.0.2.100") throws {
        let program = """
            import socket, struct, sys
            source, group = sys.argv[5], "224.0.0.18"
            vrid, priority, interval = (int(word) for word in sys.argv[1:4])
            message = struct.pack("!BBBBHH", 0x31, vrid, priority, 1, interval, 0) + socket.inet_aton(sys.argv[4])
            # RFC 5798 section 5.2.8: the checksum covers the IPv4 pseudo-header.
            data = socket.inet_aton(source) + socket.inet_aton(group) + struct.pack("!BBH", 0, 112, len(message)) + message
            total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
            while total > 0xFFFF:
                total = (total & 0xFFFF) + (total >> 16)
            message = message[:6] + struct.pack("!H", ~total & 0xFFFF) + message[8:]
            sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
            sender.bind((source, 0))
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
            sender.sendto(message, (group, 0))
            """
        try Self.command(["ip", "netns", "exec", namespace ?? self.namespace("c"), "python3", "-c", program,
                          "\(vrid)", "\(priority)", "\(intervalCentiseconds)", virtualAddress, source])
    }

    /// Adds an address to a node's eth0 by hand, as a penha killed with SIGKILL leaves its VIP.
    func addAddress(_ address: String, on node: String) throws {
        try Self.command(["ip", "-n", namespace(node), "addr", "add", address, "dev", "eth0"])
    }

    func setLink(of node: String, up: Bool) throws {
        try Self.command(["ip", "-n", namespace(node), "link", "set", "eth0", up ? "up" : "down"])
    }

    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        try command(["bash", script] + arguments)
    }

    /// Runs a command to completion (bounded: 60 s) and returns its output. posix_spawn and
    /// waitpid rather than Foundation's Process, which did not notice a shell exit whose
    /// background children (the lab's backends) live on.
    @discardableResult
    static func command(_ arguments: [String]) throws -> String {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw TestFailure("pipe: errno \(errno)") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 2)
        // Only 1 and 2 may hold the pipe: the lab's background backends inherit every other
        // open descriptor, and a stray copy of the write end would keep the read from ending.
        posix_spawn_file_actions_addclose(&actions, ends[0])
        posix_spawn_file_actions_addclose(&actions, ends[1])
        var pid: pid_t = 0
        var argv = (["/usr/bin/env"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, "/usr/bin/env", &actions, nil, &argv, environ)
        close(ends[1])
        defer { close(ends[0]) }
        guard spawned == 0 else { throw TestFailure("cannot run \(arguments[0]): \(String(cString: strerror(spawned)))") }
        // Read until the command's own output closes: the lab's backends get /dev/null.
        let reader = FileHandle(fileDescriptor: ends[0], closeOnDealloc: false)
        let data = reader.readDataToEndOfFile()
        var status: Int32 = 0
        let deadline = Date() + 60
        while waitpid(pid, &status, WNOHANG) == 0 {
            guard Date() < deadline else {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw TestFailure("\(arguments.joined(separator: " ")) did not finish")
            }
            usleep(10_000)
        }
        let text = String(decoding: data, as: UTF8.self)
        // Exited normally with status 0: the low 7 bits hold a signal, the next 8 the status.
        guard status & 0x7F == 0, (status >> 8) & 0xFF == 0 else {
            throw TestFailure("\(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }
}
