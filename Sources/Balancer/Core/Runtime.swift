import NIOCore
import VRRPCore

/// The running balancer as commands see it: its configuration and its state, changed
/// together on the balancer's event loop. Pure: time, resolved host names and facts about
/// the process come in as arguments; side effects (files, closing a connection, exit) go
/// out as `Effect`s for `BalancerService` to perform.
public struct Runtime: Sendable {
    public var state: BalancerState

    /// The configuration's one home is the state, which decides by it. Read and changed in
    /// place: a getter's copy would retain and release its strings and arrays, and a change
    /// would copy its arrays. The engine reads `state.configuration` itself: a method called on
    /// the configuration through this accessor copied it (a memcpy, ~100 instructions more per
    /// new connection in `bench/profile.sh`).
    public var configuration: Configuration {
        _read { yield state.configuration }
        _modify { yield &state.configuration }
    }

    /// `state` is the one `configuration` starts with (`makeState`): its server table has a
    /// running entry for each of the configuration's servers.
    public init(configuration: Configuration, state: BalancerState) {
        self.state = state
        self.state.configuration = configuration
    }

    public enum Effect: Equatable, Sendable {
        /// The connection log's file changed (or was turned off).
        case reopenLog
        case closeConnection(Int)
        case write(path: String, contents: String)
        case exit
        /// Read the `-F` file again and converge to it, as SIGHUP does.
        case reload
        /// The BGP announcement's settings or the operator's hold changed: the routes follow
        /// before the answer, so that `bgp withdraw` answers once the route is gone.
        case updateBGP
    }

    /// What a batch of commands answers and what it leaves to do.
    public struct Outcome: Equatable, Sendable {
        public var lines: [String] = []
        public var effects: [Effect] = []
        public init(lines: [String] = [], effects: [Effect] = []) {
            self.lines = lines
            self.effects = effects
        }
    }

    /// What the process knows beyond configuration and state.
    public struct Facts: Sendable {
        public var now: NIODeadline
        public var started: NIODeadline
        /// The VRRP instances' states; empty when penha runs standalone, and for commands that
        /// do not report them (gathering them asks the interfaces: not done for every command).
        public var vrrp: [StatusReport.VRRPInstance]
        /// The listen address actually bound.
        public var listen: String
        /// Where the control socket is; nil without one.
        public var control: Endpoint?
        public var pid: Int
        /// `-X`: the `exit` command is allowed.
        public var exitEnabled: Bool
        /// `-F`: where `write` without a file name writes.
        public var configFile: String?
        /// TLS handshakes completed and failed since start; nil when TLS is off.
        public var tlsHandshakes: (completed: UInt64, failed: UInt64)?
        /// The client-table sync's state; nil without `sync`.
        public var sync: StatusReport.Sync?
        /// While a stopping penha drains its connections.
        public var draining: StatusReport.Draining?
        /// The BGP announcement; nil without `bgp`.
        public var bgp: StatusReport.BGP?

        /// The state of the first VRRP instance, or STANDALONE.
        public var role: String { vrrp.first?.state.rawValue ?? "STANDALONE" }

        public init(now: NIODeadline, started: NIODeadline, vrrp: [StatusReport.VRRPInstance], listen: String, control: Endpoint?,
                    pid: Int, exitEnabled: Bool, configFile: String?,
                    tlsHandshakes: (completed: UInt64, failed: UInt64)? = nil) {
            self.now = now
            self.started = started
            self.vrrp = vrrp
            self.listen = listen
            self.control = control
            self.pid = pid
            self.exitEnabled = exitEnabled
            self.configFile = configFile
            self.tlsHandshakes = tlsHandshakes
        }
    }

    /// Runs the lines as one transaction: either all of them apply or, when one fails, none
    /// does and the error names the failing line. `resolved` holds the addresses of the
    /// hosts the lines name (`ConfigLine.hostsToResolve`), looked up before, off the event loop.
    public mutating func execute(_ lines: [ConfigLine], facts: Facts, resolved: [String: SocketAddress]) throws -> Outcome {
        var changed = self
        var outcome = Outcome()
        for line in lines {
            do {
                let result = try line.command.behaviour.execute(in: &changed, facts: facts, resolved: resolved)
                outcome.lines += result.lines
                outcome.effects += result.effects
            } catch let error as PenhaError where error.kind == .configuration {
                throw error.at(line.origin)
            }
        }
        try changed.configuration.checkChange(from: configuration)
        // A change may not open an off-loopback control port to everyone (an emptied list).
        try facts.control?.checkProtected(by: changed.configuration)
        try changed.configuration.metrics?.checkProtected(by: changed.configuration.accessLists)
        self = changed
        return outcome
    }

    /// SIGHUP with `-F`: the configuration becomes `target` (the command line with the file
    /// applied), as if penha had been started with it; what the file no longer says returns
    /// to its command-line or default value. Servers keep their counters; servers past the
    /// target's last are removed: they get no new clients and their connections finish.
    /// Returns what changed, a line each, for the log.
    public mutating func converge(to target: Configuration, facts: Facts, resolved: [String: SocketAddress]) throws -> [String] {
        guard target.metrics == configuration.metrics else { throw Self.metricsAreSetAtStart }
        guard target.listen == configuration.listen else { throw Self.listenIsSetAtStart }
        try target.checkChange(from: configuration)
        try facts.control?.checkProtected(by: target)
        try target.metrics?.checkProtected(by: target.accessLists)
        var changed = self
        changed.configuration = target
        changed.state.fitClientTable()
        changed.state.healthCheckChanged(from: configuration.healthCheck)
        for index in target.servers.indices {
            let before = configuration.servers.indices.contains(index) ? configuration.servers[index] : nil
            try changed.state.serverConfigured(index, before: before, resolved: resolved)
        }
        let kept = target.servers.count
        let removed = kept..<max(kept, state.servers.count)
        changed.state.servers.servers.removeLast(removed.count)
        let before = Set(configuration.commands.map(\.text))
        self = changed
        return target.commands.map(\.text).filter { !before.contains($0) }
            + removed.map { "server \($0) removed: no new clients, its connections finish" }
    }

    static let metricsAreSetAtStart = ConfigurationError("the metrics address is set at start; restart penha to change it")
    static let listenIsSetAtStart = ConfigurationError("the listen address is set at start; restart penha to change it")

    /// The configuration as a file `-F` reads back, its listen address included.
    public func configurationFile(listen: String) -> String {
        let header = ["# written by penha (listening on \(listen)); start it with: penha -F FILE"]
        return (header + configuration.commands.map(\.text)).joined(separator: "\n") + "\n"
    }

    /// pen's formats for `servers` and `mode`; `status` is penha's: one line per fact, words in
    /// name/value pairs, so that `penha status` can read it and a person too.
    func answer(_ query: Command.Query, facts: Facts) throws -> [String] {
        switch query {
        case .servers:
            return state.configuredServers.enumerated().map { index, pair in
                let (spec, server) = pair
                return "\(index) addr \(Self.ip(spec, server)) port \(spec.port) conn \(server.connections) max \(spec.maxConnections) "
                    + "hard \(spec.hardLimit) weight \(spec.weight) prio \(spec.priority) sx \(server.sent) rx \(server.received)"
            }
        case .mode:
            let selection = configuration.selection
            let flags = [("hash", selection.hash), ("roundrobin", selection.roundRobin), ("stubborn", selection.stubborn),
                         ("weight", selection.weight), ("prio", selection.priority)]
            return [flags.map { $1 ? $0 : "no \($0)" }.joined(separator: " ")]
        case .listen: return [facts.listen]
        case .control: return [facts.control?.description ?? "none"]
        case .pid: return ["\(facts.pid)"]
        case .status:
            return statusReport(facts: facts).lines
        case .statusJSON:
            return [try JSONText.encode(statusReport(facts: facts))]
        }
    }

    /// What `status`, `penha status` and SIGUSR1 report.
    public func statusReport(facts: Facts) -> StatusReport {
        StatusReport(
            role: facts.role, listen: facts.listen, uptimeSeconds: Int(Self.seconds(facts.now - facts.started)),
            connections: state.activeConnections, totalConnections: state.totalConnections,
            refusedClients: state.refusedClients,
            tlsHandshakes: facts.tlsHandshakes.map { StatusReport.TLSHandshakes(completed: $0.completed, failed: $0.failed) },
            servers: state.configuredServers.enumerated().map { index, pair in
                let (spec, server) = pair
                return StatusReport.Server(index: index, address: Self.ip(spec, server), port: spec.port,
                                           state: server.state(spec, now: facts.now),
                                           blacklistSecondsLeft: server.blacklistSecondsLeft(now: facts.now),
                                           connections: server.connections, totalConnections: server.totalConnections,
                                           maxConnections: spec.maxConnections, sent: server.sent, received: server.received,
                                           check: checkState(of: spec, server), checkResult: server.health.lastResult,
                                           checkSuccesses: server.health.successes, checkFailures: server.health.failures,
                                           checkChangedSecondsAgo: server.health.lastChange.map { Int(Self.seconds(facts.now - $0)) })
            },
            vrrp: facts.vrrp, sync: facts.sync, draining: facts.draining, bgp: facts.bgp)
    }

    private func checkState(of spec: ServerSpec, _ server: Server) -> StatusReport.CheckState {
        guard configuration.healthCheck != nil, spec.healthCheck else { return .disabled }
        return server.health.isDown ? .down : .up
    }

    func connection(_ number: Int) throws -> BalancerState.ConnectionRecord {
        guard let record = state.connections[number] else { throw PenhaError.command("no connection \(number)") }
        return record
    }

    private static func ip(_ spec: ServerSpec, _ server: Server) -> String { server.address.ipAddress ?? spec.host }

    static func name(_ target: Target) -> String {
        switch target {
        case .server(let index): return "\(index)"
        case .emergency: return "emergency"
        case .abuse: return "abuse"
        }
    }

    static func seconds(_ amount: TimeAmount) -> Int64 { amount.nanoseconds / 1_000_000_000 }
}
