import VRRPCore

/// What a running penha reports about itself: the one model that the control socket's
/// `status` lines, `penha status` and its `--json`, the `-w` page and SIGUSR1 all render from.
/// `lines` and `init(lines:)` are the control socket's wire format, one the inverse of the
/// other: lines of name/value word pairs that a person can read too.
public struct StatusReport: Codable, Equatable, Sendable {
    public var role: String
    public var listen: String
    public var uptimeSeconds: Int
    public var connections: Int
    public var totalConnections: UInt64
    /// Clients refused by client_acl.
    public var refusedClients: UInt64
    /// nil without TLS.
    public var tlsHandshakes: TLSHandshakes?
    public var servers: [Server]
    public var vrrp: [VRRPInstance]
    /// nil without `sync`.
    public var sync: Sync?
    /// Set while a stopping penha drains its connections (`drain`); nil otherwise.
    public var draining: Draining?
    /// nil without `bgp`.
    public var bgp: BGP?

    /// `bgp`: what penha has in the kernel table the BGP daemon announces from, and why.
    public struct BGP: Codable, Equatable, Sendable {
        public var table: Int
        /// The routes are in the table: the daemon announces them.
        public var announced: Bool
        /// Why they are there or not (`BGPDecision.Reason`, as `status` spells it).
        public var reason: BGPDecision.Reason
        public var availableServers: Int
        public var minimumServers: Int
        /// The routes in the kernel now (`PREFIX table N`), the announced prefixes.
        public var routes: [String]
        /// The last route change that failed, in words; nil when the last ones succeeded.
        public var error: String?
        /// With `second_chance`: the peers its filter passes strays on to now (0: none known
        /// yet, no filter); nil without it.
        public var secondChancePeers: Int?

        public init(table: Int, announced: Bool, reason: BGPDecision.Reason, availableServers: Int, minimumServers: Int,
                    routes: [String], error: String?, secondChancePeers: Int? = nil) {
            self.table = table
            self.announced = announced
            self.reason = reason
            self.availableServers = availableServers
            self.minimumServers = minimumServers
            self.routes = routes
            self.error = error
            self.secondChancePeers = secondChancePeers
        }

        /// As `penha status` and the log say it.
        public var text: String {
            let state = announced ? "announced" : "withdrawn"
            let servers = "\(availableServers) servers available, track_servers \(minimumServers)"
            let secondChance = secondChancePeers.map { "; second chance to \($0) peers" } ?? ""
            return "bgp \(state) (\(reason.rawValue); \(servers)\(secondChance))" + (routes.isEmpty ? "" : ": " + routes.joined(separator: ", "))
        }

        var lines: [String] {
            ["bgp \(table) announced \(announced ? "yes" : "no") reason \(reason.rawValue) "
                + "available \(availableServers) track_servers \(minimumServers)"
                + (secondChancePeers.map { " second_chance_peers \($0)" } ?? "")]
                + routes.map { "bgp_route \($0)" } + (error.map { ["bgp_error \($0)"] } ?? [])
        }
    }

    public struct Draining: Codable, Equatable, Sendable {
        /// Connections still open.
        public var connections: Int
        /// Seconds until what is left is closed.
        public var secondsLeft: Int

        public init(connections: Int, secondsLeft: Int) {
            self.connections = connections
            self.secondsLeft = secondsLeft
        }

        /// As `penha status` and systemd's STATUS= say it.
        public var text: String { "draining \(connections) connections, \(secondsLeft) s left" }
    }

    public struct TLSHandshakes: Codable, Equatable, Sendable {
        public var completed: UInt64
        public var failed: UInt64
    }

    public struct Server: Codable, Equatable, Sendable {
        public var index: Int
        public var address: String
        public var port: Int
        public var state: ServerState
        public var blacklistSecondsLeft: Int
        public var connections: Int
        public var totalConnections: UInt64
        public var maxConnections: Int
        public var sent: UInt64
        public var received: UInt64
        /// The health checks' view of it.
        public var check: CheckState
        /// The last check's result in words (`HTTP 503`, `timeout after 1s`); nil before the first.
        public var checkResult: String?
        /// Consecutive passed and failed checks.
        public var checkSuccesses: Int
        public var checkFailures: Int
        /// Seconds since it last went down or came up; nil if it never did.
        public var checkChangedSecondsAgo: Int?
    }

    /// A server's state as `status` spells it.
    public enum ServerState: String, Codable, Sendable {
        case up
        /// At its soft limit: only returning clients get in, up to the hard limit.
        case full
        case blacklisted
        /// Its health checks failed `fall` times in a row.
        case down
    }

    /// A server's health-check state: `disabled` without `healthcheck` or with `server N healthcheck off`.
    public enum CheckState: String, Codable, Sendable {
        case up, down, disabled
    }

    public struct VRRPInstance: Codable, Equatable, Sendable {
        public var vrid: Int
        /// RFC 5798's states (and penha's FAULT), by the names `status` shows: INIT, BACKUP, MASTER, FAULT.
        public var state: VRRPState
        public var interface: String
        public var version: Int
        public var priority: Int
        public var effectivePriority: Int
        public var advertMilliseconds: Int
        /// The current master's address, nil when unknown.
        public var master: String?
        /// Seconds since 1970; 0 before the first transition. It names the transition, so two
        /// reports tell whether another happened in between.
        public var lastChange: Int
        /// Seconds since the last transition by the reporting penha's clock, like the other
        /// `...SecondsAgo`; nil before the first transition.
        public var lastChangeSecondsAgo: Int?
        /// Empty before the first transition.
        public var lastChangeReason: String
        public var sent: UInt64
        public var received: UInt64
        public var malformed: UInt64
        /// Received adverts dropped, by reason (RFC 5798 section 7.1); `status` and `--json`
        /// name each by its `statusName`.
        public var dropped: [VRRPDropReason: UInt64]
        public var virtualAddresses: [VirtualAddress]

        public struct VirtualAddress: Codable, Equatable, Sendable {
            public var address: String
            public var onInterface: Bool
        }
    }

    /// `sync`: the client table's replication.
    public struct Sync: Codable, Equatable, Sendable {
        public var listen: String
        /// This node holds the VIP (or runs standalone), so it sends its table.
        public var sending: Bool
        /// Connections refused (not from a peer) and messages rejected (failed authentication,
        /// replayed, malformed): each drops its connection.
        public var rejected: UInt64
        public var peers: [Peer]

        public struct Peer: Codable, Equatable, Sendable {
            public var address: String
            /// This node's connection to the peer is up and authenticated.
            public var connected: Bool
            /// Entries sent to it and taken from it.
            public var sent: UInt64
            public var received: UInt64
            public var fullCopies: UInt64
            /// Seconds since the last full copy to it ended; nil if none did.
            public var lastFullCopySecondsAgo: Int?
            /// Changes dropped because the peer fell behind (it then gets a full copy).
            public var dropped: UInt64

            public init(address: String, connected: Bool, sent: UInt64, received: UInt64, fullCopies: UInt64,
                        lastFullCopySecondsAgo: Int?, dropped: UInt64) {
                self.address = address
                self.connected = connected
                self.sent = sent
                self.received = received
                self.fullCopies = fullCopies
                self.lastFullCopySecondsAgo = lastFullCopySecondsAgo
                self.dropped = dropped
            }
        }

        public init(listen: String, sending: Bool, rejected: UInt64, peers: [Peer]) {
            self.listen = listen
            self.sending = sending
            self.rejected = rejected
            self.peers = peers
        }

        var lines: [String] {
            ["sync \(listen) sending \(sending ? "yes" : "no") rejected \(rejected)"] + peers.map { peer in
                "sync_peer \(peer.address) connected \(peer.connected ? "yes" : "no") sent \(peer.sent) "
                    + "received \(peer.received) full_copies \(peer.fullCopies) "
                    + "last_full_copy \(peer.lastFullCopySecondsAgo.map(String.init) ?? "-") dropped \(peer.dropped)"
            }
        }
    }

    /// The `status` answer.
    public var lines: [String] {
        ["role \(role)", "listen \(listen)", "uptime \(uptimeSeconds)",
         "connections \(connections) total \(totalConnections) refused \(refusedClients)"]
            + servers.flatMap(Self.lines)
            + (tlsHandshakes.map { ["tls handshakes \($0.completed) failed \($0.failed)"] } ?? [])
            + vrrp.flatMap(Self.lines)
            + (sync?.lines ?? [])
            + (draining.map { ["draining \($0.connections) seconds_left \($0.secondsLeft)"] } ?? [])
            + (bgp?.lines ?? [])
    }

    /// One server: name/value pairs, then its last check's result (free text, so on a line of its own).
    private static func lines(_ server: Server) -> [String] {
        let changed = server.checkChangedSecondsAgo.map(String.init) ?? "-"
        let summary = "server \(server.index) address \(server.address) port \(server.port) state \(server.state.rawValue) "
            + "blacklist_left \(server.blacklistSecondsLeft) connections \(server.connections) "
            + "total \(server.totalConnections) max \(server.maxConnections) sent \(server.sent) received \(server.received) "
            + "check \(server.check.rawValue) check_successes \(server.checkSuccesses) "
            + "check_failures \(server.checkFailures) check_changed \(changed)"
        return [summary] + (server.checkResult.map { ["check_result \(server.index) \($0)"] } ?? [])
    }

    /// One VRRP instance: name/value pairs, then its VIPs, then the reason of its last
    /// transition (free text, so last and on a line of its own).
    private static func lines(_ instance: VRRPInstance) -> [String] {
        let vrid = instance.vrid
        let summary = "vrrp \(vrid) state \(instance.state.rawValue) interface \(instance.interface) version \(instance.version) "
            + "priority \(instance.priority) effective \(instance.effectivePriority) "
            + "advert_ms \(instance.advertMilliseconds) master \(instance.master ?? "-") "
            + "last_change \(instance.lastChange) last_change_ago \(instance.lastChangeSecondsAgo.map(String.init) ?? "-") "
            + "sent \(instance.sent) "
            + "received \(instance.received) malformed \(instance.malformed)"
            + VRRPDropReason.allCases.map { " drop_\($0.statusName) \(instance.dropped[$0, default: 0])" }.joined()
        return [summary]
            + instance.virtualAddresses.map { "vip \(vrid) address \($0.address) on_interface \($0.onInterface ? "yes" : "no")" }
            + (instance.lastChangeReason.isEmpty ? [] : ["vrrp_reason \(vrid) \(instance.lastChangeReason)"])
    }

    /// A status line this penha cannot read: a field missing or not a number.
    public struct FormatError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// One line's words, with the pairs after the first two (`server 0 address A port P ...`).
    private struct Fields {
        let line: String
        let words: [String]
        let pairs: [String: String]

        init(line: String, words: [String]) {
            self.line = line
            self.words = words
            var pairs: [String: String] = [:]
            for index in stride(from: 2, to: words.count - 1, by: 2) { pairs[words[index]] = words[index + 1] }
            self.pairs = pairs
        }

        func text(_ name: String) throws -> String {
            guard let value = pairs[name] else { throw FormatError(description: "no '\(name)' in status line '\(line)'") }
            return value
        }

        func int(_ name: String) throws -> Int { try parsed(try text(name), name) }
        func count(_ name: String) throws -> UInt64 { try parsed(try text(name), name) }
        /// A value of one of the words `Word` has (`state up`).
        func word<Word: RawRepresentable<String>>(_ name: String) throws -> Word {
            guard let value = Word(rawValue: try text(name)) else { throw FormatError(description: "unknown \(name) in '\(line)'") }
            return value
        }
        /// The word at `position`, a number (`server 3 ...`, `uptime 42`).
        func number(_ position: Int) throws -> Int { try parsed(words[position], "word \(position + 1)") }

        private func parsed<Number: FixedWidthInteger>(_ text: String, _ name: String) throws -> Number {
            guard let value = Number(text) else { throw FormatError(description: "'\(name)' is not a number in '\(line)'") }
            return value
        }
    }
}

extension StatusReport {
    /// The line after its first `count` words and the one space `lines` writes after each:
    /// free text as it was written, its own spaces kept.
    private static func text(of line: String, after count: Int) -> String {
        var rest = Substring(line)
        for _ in 0..<count { rest = rest.drop { $0 == " " }.drop { $0 != " " } }
        return String(rest.dropFirst())
    }

    /// Reads `lines` back. Lines of a kind this penha does not know are skipped (a newer penha
    /// may report more); a known line without its fields is an error, never a silent zero.
    public init(lines: [String]) throws {
        var fields: [String: Fields] = [:]
        var servers: [Server] = []
        var vrrp: [VRRPInstance] = []
        var tlsHandshakes: TLSHandshakes?
        var sync: Sync?
        var draining: Draining?
        var bgp: BGP?
        // An instance's `vip` and `vrrp_reason` lines follow its `vrrp` line.
        func instanceIndex(_ vrid: Int, for line: String) throws -> Int {
            guard let index = vrrp.lastIndex(where: { $0.vrid == vrid }) else {
                throw FormatError(description: "'\(line)' comes before its vrrp line")
            }
            return index
        }
        for line in lines {
            let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard let kind = words.first, words.count >= 2 else { continue }
            let entry = Fields(line: line, words: words)
            switch kind {
            case "role", "listen", "uptime", "connections": fields[kind] = entry
            case "tls":
                // "tls handshakes N failed M"
                guard words.count == 5, let completed = UInt64(words[2]), let failed = UInt64(words[4]) else {
                    throw FormatError(description: "unreadable status line '\(line)'")
                }
                tlsHandshakes = TLSHandshakes(completed: completed, failed: failed)
            case "server":
                servers.append(Server(index: try entry.number(1), address: try entry.text("address"), port: try entry.int("port"),
                                      state: try entry.word("state"), blacklistSecondsLeft: try entry.int("blacklist_left"),
                                      connections: try entry.int("connections"), totalConnections: try entry.count("total"),
                                      maxConnections: try entry.int("max"), sent: try entry.count("sent"),
                                      received: try entry.count("received"), check: try entry.word("check"), checkResult: nil,
                                      checkSuccesses: try entry.int("check_successes"), checkFailures: try entry.int("check_failures"),
                                      checkChangedSecondsAgo: try entry.text("check_changed") == "-" ? nil : try entry.int("check_changed")))
            case "check_result":
                let index = try entry.number(1)
                guard let position = servers.lastIndex(where: { $0.index == index }) else {
                    throw FormatError(description: "'\(line)' comes before its server line")
                }
                servers[position].checkResult = Self.text(of: line, after: 2)
            case "vrrp":
                let master = try entry.text("master")
                // An older penha writes no last_change_ago: its answer reads as if it were "-".
                let ago = entry.pairs["last_change_ago", default: "-"] == "-" ? nil : try entry.int("last_change_ago")
                // A reason an older penha did not count reads as 0.
                let dropped = try Dictionary(uniqueKeysWithValues: VRRPDropReason.allCases.map { reason in
                    let name = "drop_\(reason.statusName)"
                    return (reason, entry.pairs[name] == nil ? 0 : try entry.count(name))
                })
                vrrp.append(VRRPInstance(
                    vrid: try entry.number(1), state: try entry.word("state"), interface: try entry.text("interface"),
                    version: try entry.int("version"), priority: try entry.int("priority"),
                    effectivePriority: try entry.int("effective"), advertMilliseconds: try entry.int("advert_ms"),
                    master: master == "-" ? nil : master, lastChange: try entry.int("last_change"),
                    lastChangeSecondsAgo: ago, lastChangeReason: "",
                    sent: try entry.count("sent"), received: try entry.count("received"), malformed: try entry.count("malformed"),
                    dropped: dropped, virtualAddresses: []))
            case "vip":
                let address = VRRPInstance.VirtualAddress(address: try entry.text("address"),
                                                          onInterface: try entry.text("on_interface") == "yes")
                vrrp[try instanceIndex(try entry.number(1), for: line)].virtualAddresses.append(address)
            case "sync":
                sync = Sync(listen: words[1], sending: try entry.text("sending") == "yes", rejected: try entry.count("rejected"), peers: [])
            case "sync_peer":
                guard sync != nil else { throw FormatError(description: "'\(line)' comes before its sync line") }
                let last = try entry.text("last_full_copy")
                sync?.peers.append(Sync.Peer(
                    address: words[1], connected: try entry.text("connected") == "yes", sent: try entry.count("sent"),
                    received: try entry.count("received"), fullCopies: try entry.count("full_copies"),
                    lastFullCopySecondsAgo: last == "-" ? nil : try entry.int("last_full_copy"), dropped: try entry.count("dropped")))
            case "draining":
                draining = Draining(connections: try entry.number(1), secondsLeft: try entry.int("seconds_left"))
            case "bgp":
                bgp = BGP(table: try entry.number(1), announced: try entry.text("announced") == "yes", reason: try entry.word("reason"),
                          availableServers: try entry.int("available"), minimumServers: try entry.int("track_servers"),
                          routes: [], error: nil,
                          secondChancePeers: entry.pairs["second_chance_peers"] == nil ? nil : try entry.int("second_chance_peers"))
            case "bgp_route", "bgp_error":
                guard bgp != nil else { throw FormatError(description: "'\(line)' comes before its bgp line") }
                let text = Self.text(of: line, after: 1)
                if kind == "bgp_route" { bgp?.routes.append(text) } else { bgp?.error = text }
            case "vrrp_reason":
                vrrp[try instanceIndex(try entry.number(1), for: line)].lastChangeReason = Self.text(of: line, after: 2)
            default:
                continue
            }
        }
        func required(_ kind: String) throws -> Fields {
            guard let entry = fields[kind] else { throw FormatError(description: "no '\(kind)' line in the status") }
            return entry
        }
        self.servers = servers
        self.vrrp = vrrp
        self.tlsHandshakes = tlsHandshakes
        self.sync = sync
        self.draining = draining
        self.bgp = bgp
        role = try required("role").words[1]
        // A Unix socket's path may have spaces: the rest of the line.
        listen = Self.text(of: try required("listen").line, after: 1)
        uptimeSeconds = try required("uptime").number(1)
        let connectionLine = try required("connections")
        connections = try connectionLine.number(1)
        totalConnections = try connectionLine.count("total")
        refusedClients = try connectionLine.count("refused")
    }
}
