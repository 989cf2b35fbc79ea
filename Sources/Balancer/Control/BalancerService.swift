import BalancerCore
import Engine
import Logging
import NIOCore
import NIOPosix
import Synchronization
import VRRP
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// A running balancer: its `Runtime` (configuration and state) behind one lock
/// (`SharedRuntime`), which the TCP engine's threads take once per connection event, and the
/// command executor that changes it on one event loop (`execute`, `reload`) after each
/// batch's blocking part (reading files, resolving host names, gathering VRRP states) ran on
/// a thread pool. UDP (`UDPRelay`), the health checks and the reports run on the same loop.
/// Sendable: what is shared is behind a lock, what the loop's work owns is bound to the loop
/// (`onLoop`), and the public methods hop to it.
public final class BalancerService: Sendable {
    public let eventLoop: EventLoop
    let shared: SharedRuntime
    /// The configuration now, copied out (the state is read and changed through `shared`:
    /// a copy of it held while an engine thread changes the original would copy its tables).
    var configuration: Configuration { shared.withLock { $0.configuration } }
    /// Its level follows `debug N` (set on the loop); read from the engine's start and the pool too.
    var logger: Logger {
        get { loggerNow.withLock { $0 } }
        set {
            loggerNow.withLock { $0 = newValue }
            events.adopt(newValue)
        }
    }
    private let loggerNow: Mutex<Logger>
    private let options: Options
    private let started = NIODeadline.now()
    let connectionLog = ConnectionLog()
    private let events: ServiceEvents
    /// Blocking work off the event loop: NIO's own threads, not libdispatch (see Signals).
    let blockingPool = NIOThreadPool(numberOfThreads: 1)
    /// The TCP data path. Set once it listens; read from the event loop and the thread pool
    /// (counters before an answer).
    private let engine = Mutex<Engine?>(nil)
    /// Set when a stopping penha drains its connections.
    private let drain = Mutex<Drain?>(nil)
    var tcp: Engine? { engine.withLock { $0 } }
    /// The old process's side of a handover to a new one (`penha upgrade`).
    let handover = HandoverGiver()
    /// Set once VRRP runs. Its statuses ask the interfaces, so they are gathered on the thread
    /// pool and only for a report that shows the instances.
    let vrrp = Mutex<(any VRRPControl)?>(nil)
    let tls: TLSTermination?
    /// The key `sync` starts with, read by `init` so that a bad one stops penha before it starts.
    private let startupSyncKey: ClientSyncKey?
    /// What only the event loop touches.
    let onLoop: NIOLoopBoundBox<LoopState>

    struct LoopState {
        /// With `-U`: the UDP relay and its listening socket.
        var udp: UDPRelay?
        var listener: Channel?
        var healthChecker: HealthChecker?
        var clientSync: ClientSync?
        /// With `bgp` (from the first configuration that has it on).
        var bgp: BGPAnnouncer?
        /// The listener is bound.
        var listening = false
        /// The listen address as `status` shows it (its port once bound, when 0 was asked).
        var boundListen: String
        var controlAddress: Endpoint?
        /// The last batch's commit: the next waits for it (`transaction`).
        var lastBatch: EventLoopFuture<Void>?
    }

    /// What the process was started with that commands need to know.
    public struct Options: Sendable {
        /// `-X`: the `exit` command is allowed.
        public var exitEnabled = false
        /// `-F`: what SIGHUP re-reads and `write` without a file name writes.
        public var configFile: String?
        /// The configuration the command line and `-O` give, before `-F`: a reload applies
        /// the file to it, so that what the file no longer says returns to it.
        public var commandLine: Configuration?
        public init(exitEnabled: Bool = false, configFile: String? = nil, commandLine: Configuration? = nil) {
            self.exitEnabled = exitEnabled
            self.configFile = configFile
            self.commandLine = commandLine
        }
    }

    /// Resolves the servers (exits early with a clear error if one cannot be resolved).
    public init(configuration: Configuration, eventLoop: EventLoop, logger: Logger, options: Options = Options()) throws {
        self.eventLoop = eventLoop
        self.shared = SharedRuntime(Runtime(configuration: configuration, state: try configuration.makeState()))
        self.loggerNow = Mutex(logger)
        self.events = ServiceEvents(logger: logger, connectionLog: connectionLog)
        self.options = options
        self.onLoop = .makeBoxSendingValue(LoopState(boundListen: configuration.listen.description), eventLoop: eventLoop)
        self.tls = configuration.tls.isEnabled ? TLSTermination(context: try TLSContext(settings: configuration.tls)) : nil
        connectionLog.file = try LogFile.open(configuration.logFile)
        if let report = configuration.webStatsFile { try FileAccess.checkReplaceable(report) }
        startupSyncKey = try configuration.sync.map { try ClientSyncKey.read($0.keyFile) }
        blockingPool.start()
    }

    deinit {
        blockingPool.shutdownGracefully { _ in }
    }

    /// pen's `-d` levels as log levels.
    public static func logLevel(debug: Int) -> Logger.Level {
        debug >= 2 ? .trace : debug == 1 ? .debug : .info
    }

    /// Binds the listening socket; returns the address actually bound (useful with port 0).
    public func start(adoptingListener adopted: Int32? = nil) -> EventLoopFuture<SocketAddress?> {
        let configuration = configuration
        // A backup listens on the virtual address before it is on the interface, so it
        // serves the moment it becomes master; `freebind` does the same for a penha beside the
        // one that runs VRRP (another port of the same VIP).
        let freeBindWanted = !configuration.vrrpInstances.isEmpty || configuration.freeBind
        let bound: EventLoopFuture<SocketAddress?>
        if configuration.udp {
            bound = eventLoop.flatSubmit { self.startUDP(configuration, freeBind: freeBindWanted) }
        } else {
            bound = eventLoop.makeCompletedFuture { try self.startEngine(configuration, freeBind: freeBindWanted, adopting: adopted) }
        }
        startWebStatsTimer()
        eventLoop.execute {
            let checker = HealthChecker(service: self)
            var sync: ClientSync?
            if let settings = configuration.sync, let key = self.startupSyncKey {
                sync = ClientSync(settings: settings, key: key, service: self)
            }
            self.onLoop.withValue {
                $0.healthChecker = checker
                $0.clientSync = sync
            }
            checker.schedule()
            sync?.start()
            self.adoptBGP(awaitingHandover: adopted != nil)
        }
        return bound.map { address in
            self.onLoop.value.boundListen = configuration.listen.withPort(address?.port).description
            self.onLoop.value.listening = true
            self.onLoop.value.bgp?.listen()
            return address
        }
    }

    /// `-U`: the UDP relay, on the event loop.
    private func startUDP(_ configuration: Configuration, freeBind freeBindWanted: Bool) -> EventLoopFuture<SocketAddress?> {
        let relay = UDPRelay(service: self)
        onLoop.value.udp = relay
        var freeBind: ChannelOptions.Types.SocketOption?
        if case .inet = configuration.listen, freeBindWanted {
            // IP level: Linux applies it to IPv6 sockets too.
            freeBind = ChannelOptions.socket(SocketOptionLevel(IPPROTO_IP), SocketOptionName(IP_FREEBIND))
        }
        return relay.bind(configuration.listen, freeBind: freeBind).map { channel in
            self.onLoop.value.listener = channel
            return channel.localAddress
        }
    }

    /// The TCP data path's threads and listeners; `adopting`: the listening socket another
    /// penha process handed over (nothing is bound).
    private func startEngine(_ configuration: Configuration, freeBind: Bool, adopting: Int32?) throws -> SocketAddress? {
        let engine = try Engine(shared: shared, events: events, tls: tls, threads: configuration.threads,
                                limit: configuration.connectionsMax, acceptProxy: configuration.acceptProxy)
        let address: EngineListenAddress
        if let adopting {
            try Self.check(adopted: adopting, against: configuration.listen)
            address = .adopted(adopting)
        } else {
            switch configuration.listen {
            case .inet(let host, let port):
                address = .inet(try SocketAddress.makeAddressResolvingHost(host, port: port), freeBind: freeBind)
            case .unix(let path):
                // As the control socket: a stale socket is replaced, a live one or a file is not.
                try ControlServer.claim(path)
                address = .unix(path: path)
            }
        }
        let bound = try engine.start(address, backlog: configuration.backlog, noDelay: configuration.tcpNoDelay)
        self.engine.withLock { $0 = engine }
        logger.debug("TCP engine started", metadata: ["threads": "\(engine.threadCount)"])
        return bound
    }

    /// The listener a takeover brings must be the one this configuration listens on: one
    /// whose `listen` changed would otherwise serve the old address while saying the new one.
    private static func check(adopted descriptor: Int32, against listen: Endpoint) throws {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { throw HandoverFailure("the listener handed over: \(SystemErrorText.describe(errno: errno))") }
        let matches: Bool
        switch listen {
        case .inet(let host, let port):
            let wanted = try SocketAddress.makeAddressResolvingHost(host, port: port)
            let given: SocketAddress? = switch Int32(storage.ss_family) {
            case AF_INET: withUnsafeBytes(of: storage) { SocketAddress($0.load(as: sockaddr_in.self), host: "") }
            case AF_INET6: withUnsafeBytes(of: storage) { SocketAddress($0.load(as: sockaddr_in6.self), host: "") }
            default: nil
            }
            matches = given?.port == wanted.port && given?.ipAddress == wanted.ipAddress
        case .unix(let path):
            let given = withUnsafeBytes(of: storage) { bytes -> String in
                let name = bytes.dropFirst(MemoryLayout<sa_family_t>.size).prefix(Int(length) - MemoryLayout<sa_family_t>.size)
                return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
            }
            matches = Int32(storage.ss_family) == AF_UNIX && given == path
        }
        guard matches else {
            throw HandoverFailure("the running penha listens elsewhere than listen \(listen) (restart to move the listener)")
        }
    }

    /// Stops accepting; established connections are left to the caller (exit closes them).
    /// The BGP routes are withdrawn first, so that the routers send new clients to other
    /// nodes before this one refuses them.
    public func stop() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            // Handed off: the routes are the new process's, and nothing is withdrawn to wait for.
            guard let bgp = self.onLoop.value.bgp, !bgp.isHandedOff else { return self.eventLoop.makeSucceededVoidFuture() }
            // The routers take a moment to follow the withdraw: the clients they still send
            // here meanwhile are served, not refused, and drained with the rest.
            return bgp.stop().flatMap {
                self.eventLoop.scheduleTask(in: Self.withdrawGrace) {}.futureResult
            }
        }.flatMap {
            self.onLoop.value.clientSync?.stop()
            self.tcp?.stopAccepting()
            return self.onLoop.value.listener?.close() ?? self.eventLoop.makeSucceededVoidFuture()
        }
    }

    /// The drain is over (or there was none): what stays only for it goes (the ECMP second
    /// chance's filter). The future ends once it has.
    public func drainEnded() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { self.onLoop.value.bgp?.drainEnded() ?? self.eventLoop.makeSucceededVoidFuture() }
    }

    /// How long a stopping node announced by BGP keeps its listener after the withdraw: the
    /// routers of the lab followed within 50 ms; a second covers a busier router.
    static let withdrawGrace = TimeAmount.seconds(1)

    /// Starts draining: from now on `drainDecision` says when to exit (`Drain`), and the
    /// status shows it. Call once the listener is closed.
    public func startDraining() {
        let seconds = drainSeconds
        drain.withLock { $0 = Drain(seconds: seconds, now: .now()) }
    }

    /// How long a drain may last, as configured now.
    private var drainSeconds: Int {
        let configuration = configuration
        // With VRRP the VIP has moved by now: the packets of its connections reach the new
        // master, which resets them unless every instance has a second chance (the new master
        // passes them back here), so without one a wait would only delay the exit.
        let secondChance = configuration.vrrpInstances.allSatisfy { $0.secondChance != nil }
        return secondChance ? configuration.drainSeconds : 0
    }

    /// The drain as `status` shows it, nil before it starts; never blocks (no event loop, no
    /// thread pool), so the stopping main thread can always read it.
    public func drainReport() -> StatusReport.Draining? {
        let open = tcp?.openConnections ?? 0
        let seconds = drainSeconds
        return drain.withLock { drain in
            drain?.bound(seconds: seconds)
            return drain?.report(now: .now(), connections: open)
        }
    }

    /// `drain N` as set now, by the command line, a command or a reload: the VRRP second
    /// chance's window (VRRP reads it every second).
    public var drainBound: Int { shared.withLock { $0.configuration.drainSeconds } }

    /// A second SIGTERM: exit at once.
    public func interruptDrain() {
        drain.withLock { $0?.interrupt() }
    }

    /// Whether to relay on or exit, from the connections open now; never blocks (no event loop).
    public func drainDecision() -> Drain.Decision {
        let open = tcp?.openConnections ?? 0
        let seconds = drainSeconds
        return drain.withLock { drain in
            // `drain N` over the control socket while it runs applies at once.
            drain?.bound(seconds: seconds)
            return drain?.decide(now: .now(), connections: open)
        } ?? .exit(closing: open)
    }

    /// The TCP engine's threads and their loop turns, for the watchdog (none before it starts).
    public var engineThreadTurns: [ProgressWatch.Turns] { tcp?.threadTurns ?? [] }

    /// Makes every engine thread turn once, so that an idle one shows it is alive.
    public func nudgeEngineThreads() { tcp?.nudgeThreads() }

    /// Runs `body` on the balancer's event loop with its state, for the control socket and stats.
    public func withState<Result: Sendable>(_ body: @escaping @Sendable (inout BalancerState) -> Result) -> EventLoopFuture<Result> {
        eventLoop.submit { self.shared.withLock { body(&$0.state) } }
    }

    /// What runs the VRRP instances: where `status` gets their states (and so the role)
    /// from, and what a runtime `vrrp` change is applied to.
    public func attachVRRP(_ control: any VRRPControl) {
        vrrp.withLock { $0 = control }
    }

    /// Whether a control connection from `address` passes `control_acl`; called on the event
    /// loop, where the control socket runs. A refusal is logged through `refusals`: a peer
    /// can be refused at will.
    func admitsControlConnection(from address: SocketAddress?, refusals: inout LogThrottle) -> Bool {
        eventLoop.assertInEventLoop()
        let configuration = configuration
        guard configuration.accessLists.permits(ClientKey(address), list: configuration.controlACL) else {
            if let note = refusals.admitNote(now: .now()) {
                logger.warning("control connection refused by control_acl \(configuration.controlACL)\(note)",
                               metadata: ["client": "\(Endpoint.describe(address))"])
            }
            return false
        }
        return true
    }

    /// What the `control` command answers.
    public func setControlAddress(_ address: Endpoint) {
        eventLoop.execute { self.onLoop.value.controlAddress = address }
    }

    /// One command line from the control socket: its answer, or one `error: ...` line.
    /// `overTCP`: it came to a TCP control port, which refuses the commands that name a file
    /// unless `control_tcp_files` is on; checked before anything is read or opened.
    public func execute(_ text: String, overTCP: Bool = false) -> EventLoopFuture<Reply> {
        let allowingFiles = !overTCP || configuration.controlTCPFiles
        return run(reading: { try ConfigFile.expandIncludes([ConfigLine(try Command.parse(text, allowingFiles: allowingFiles))]) })
            .recover { error in Reply(refusing: error) }
    }

    /// SIGHUP and `reload`. With `-F`: the file is read again and applied to the command line's
    /// configuration as one transaction (`Runtime.converge`), so the running configuration is
    /// what the command line and the file say. The log is reopened (rotation) and the TLS files
    /// are read again. A file with an error, or TLS files that do not load, change nothing and
    /// fail the future. Established connections are not touched. The outcome is logged here,
    /// for both callers.
    public func reload() -> EventLoopFuture<Void> {
        reloadFile().map {
            self.logger.notice("\(self.reloaded)")
        }.flatMapErrorThrowing { error in
            self.logger.error("\(Self.reloadRefused(error))")
            throw error
        }
    }

    /// What a reload that applied says, in the log and in the `reload` command's answer.
    private var reloaded: String { "reloaded\(options.configFile.map { " \($0)" } ?? ""), log reopened" }

    /// What a refused reload says, in the log and in the `reload` command's answer.
    static func reloadRefused(_ error: Error) -> String {
        "reload failed, configuration unchanged: \(SystemErrorText.describe(error))"
    }

    private func reloadFile() -> EventLoopFuture<Void> {
        guard let path = options.configFile else {
            return blockingPool.runIfActive(eventLoop: eventLoop) { [configuration = configuration] in
                try Prepared(lines: [], logPath: configuration.logFile)
            }.flatMap { prepared in
                // Rotation: the log is reopened even when the certificates are refused.
                self.connectionLog.file = prepared.log
                return self.transaction(reloadingTLS: true) { _ in }
            }
        }
        let commandLine = options.commandLine ?? configuration
        return blockingPool.runIfActive(eventLoop: eventLoop) { () -> (Configuration, Prepared) in
            let lines = try ConfigFile.read(path)
            let target = try commandLine.applying(lines)
            if let sync = target.sync { _ = try ClientSyncKey.read(sync.keyFile) }
            return (target, try Prepared(lines: lines, hosts: Set(target.servers.map(\.host)), logPath: target.logFile))
        }.flatMap { target, prepared in
            let facts = self.facts()
            return self.transaction(reloadingTLS: true) { runtime in
                try runtime.converge(to: target, facts: facts, resolved: prepared.resolved)
            }.map { changes in
                self.connectionLog.file = prepared.log
                for change in changes { self.logger.notice("reload: \(change)") }
            }
        }
    }

    /// SIGUSR1: the statistics as `status` shows them; the HTML report is written too.
    public func statistics() -> EventLoopFuture<[String]> {
        writeWebStats()
        return execute("status").map(\.wireLines)
    }

    /// The VRRP instances as reports show them; blocking (it asks the interfaces).
    func vrrpReports() -> [StatusReport.VRRPInstance] {
        let now = time(nil)
        return (vrrp.withLock { $0 }?.statuses ?? []).map { StatusReport.VRRPInstance($0, now: now) }
    }

    /// Reads and prepares on the thread pool, then applies on the event loop.
    private func run(reading: @escaping @Sendable () throws -> [ConfigLine]) -> EventLoopFuture<Reply> {
        blockingPool.runIfActive(eventLoop: eventLoop) { () -> Prepared in
            let lines = try reading()
            // What the connections have relayed so far shows in the answer (counters while a connection lasts).
            self.tcp?.reportCounters()
            let reportsVRRP = lines.contains { $0.command.preparation.contains(.vrrpReports) }
            return try Prepared(lines: lines, hosts: lines.hostsToResolve, logPath: lines.lastLogFile,
                                vrrp: reportsVRRP ? self.vrrpReports() : [])
        }.flatMap { prepared in
            let facts = self.facts(vrrp: prepared.vrrp)
            return self.transaction(reloadingTLS: false) { runtime in
                try runtime.execute(prepared.lines, facts: facts, resolved: prepared.resolved)
            }.flatMap { outcome in self.perform(outcome, prepared) }
        }
    }

    /// One batch, all or nothing, TLS and VRRP included: `change` runs first on a copy of the
    /// runtime; what the result needs that can fail outside it (a TLS context from its files,
    /// its VRRP instances started) is made on the thread pool; only when all of that succeeded
    /// does `change` run on the runtime itself, and the context is put in place. A VRRP change
    /// made for a batch that then fails is undone. Batches commit one at a time, so the
    /// configuration a context was made for is the one committed.
    private func transaction<Result: Sendable>(reloadingTLS: Bool,
                                               _ change: @escaping @Sendable (inout Runtime) throws -> Result) -> EventLoopFuture<Result> {
        eventLoop.assertInEventLoop()
        let previous = onLoop.value.lastBatch ?? eventLoop.makeSucceededVoidFuture()
        let committed = previous.flatMap { () -> EventLoopFuture<Result> in
            let before = self.configuration
            var trial = self.shared.withLock { $0 }
            do {
                _ = try change(&trial)
            } catch {
                return self.eventLoop.makeFailedFuture(error)
            }
            let target = trial.configuration
            return self.stage(from: before, to: target, reloadingTLS: reloadingTLS).flatMapThrowing { context in
                let result: Result
                do {
                    result = try self.shared.withLock { try change(&$0) }
                } catch {
                    self.undoVRRP(from: target, to: before)
                    throw error
                }
                if let context { self.tls?.replace(context) }
                self.adoptRuntime()
                return result
            }
        }
        onLoop.value.lastBatch = committed.map { _ in }.recover { _ in }
        return committed
    }

    /// On the thread pool, for a batch that would make `before` into `target`: its TLS context
    /// (nil when the settings stay and the files are not read again) and its VRRP instances.
    /// A failure of either fails the batch with nothing changed.
    private func stage(from before: Configuration, to target: Configuration, reloadingTLS: Bool) -> EventLoopFuture<(any TLSServerContext)?> {
        let loadsTLS = tls != nil && (reloadingTLS || target.tls != before.tls)
        let control = target.vrrpInstances == before.vrrpInstances ? nil : vrrp.withLock { $0 }
        guard loadsTLS || control != nil else { return eventLoop.makeSucceededFuture(nil) }
        return blockingPool.runIfActive(eventLoop: eventLoop) { () -> (any TLSServerContext)? in
            let context: (any TLSServerContext)?
            do {
                context = loadsTLS ? try TLSContext(settings: target.tls) : nil
            } catch {
                throw ConfigurationError("TLS not reloaded, keeping the previous certificates: \(SystemErrorText.describe(error))")
            }
            do {
                // A resigning master waits here for its handover (bounded, 2 s).
                try control?.apply(target.vrrpInstances)
            } catch {
                throw ConfigurationError("vrrp not changed: \(SystemErrorText.describe(error))")
            }
            return context
        }
    }

    /// A batch whose VRRP instances had started failed after all: the instances go back.
    private func undoVRRP(from target: Configuration, to before: Configuration) {
        guard target.vrrpInstances != before.vrrpInstances, let control = vrrp.withLock({ $0 }) else { return }
        let logger = logger
        _ = blockingPool.runIfActive(eventLoop: eventLoop) { try control.apply(before.vrrpInstances) }.recover { error in
            logger.error("vrrp: the instances of a refused batch could not be undone: \(error)")
        }
    }

    /// A batch's blocking part, done on the thread pool before it runs: its host names
    /// looked up, the log file it ends with opened, the report files it names checked, so
    /// that a path that cannot be used is refused with the command and never stalls the loop.
    private struct Prepared: Sendable {
        let lines: [ConfigLine]
        let resolved: [String: SocketAddress]
        /// The connection log the batch leaves open; nil for none. `logPath` nil: no log.
        let log: LogFile?
        /// The VRRP instances, when the batch reports them.
        let vrrp: [StatusReport.VRRPInstance]

        init(lines: [ConfigLine], hosts: Set<String> = [], logPath: String?, vrrp: [StatusReport.VRRPInstance] = []) throws {
            self.lines = lines
            self.vrrp = vrrp
            var resolved: [String: SocketAddress] = [:]
            for host in hosts {
                resolved[host] = try? SocketAddress.makeAddressResolvingHost(host, port: 0)
            }
            self.resolved = resolved
            log = try LogFile.open(logPath)
            for need in lines.flatMap(\.command.preparation) {
                switch need {
                case .replaceable(let path): try FileAccess.checkReplaceable(path)
                case .syncKey(let path): _ = try ClientSyncKey.read(path)
                case .resolve, .include, .log, .vrrpReports: continue
                }
            }
        }
    }

    /// On the event loop.
    func facts(vrrp: [StatusReport.VRRPInstance] = []) -> Runtime.Facts {
        let loop = onLoop.value
        var facts = Runtime.Facts(now: .now(), started: started, vrrp: vrrp, listen: loop.boundListen,
                                  control: loop.controlAddress, pid: Int(getpid()), exitEnabled: options.exitEnabled,
                                  configFile: options.configFile, tlsHandshakes: tls.map { ($0.completed, $0.failed) })
        facts.sync = loop.clientSync?.report(now: facts.now)
        facts.bgp = loop.bgp?.report
        let open = tcp?.openConnections ?? 0
        facts.draining = drain.withLock { $0?.report(now: facts.now, connections: open) }
        return facts
    }

    /// Settings that live outside `Runtime`: the log level and the data path's own.
    private func adoptRuntime() {
        let configuration = configuration
        logger.logLevel = Self.logLevel(debug: configuration.debugLevel)
        tcp?.adopt(limit: configuration.connectionsMax, noDelay: configuration.tcpNoDelay, acceptProxy: configuration.acceptProxy)
        let loop = onLoop.value
        loop.udp?.adopt(configuration)
        loop.healthChecker?.schedule()
        adoptSync()
        adoptBGP()
    }

    /// Starts the announcer once a configuration has `bgp` (it then stays, to withdraw after
    /// `no bgp`), or has it follow a change at once. On the event loop.
    private func adoptBGP(awaitingHandover: Bool = false) {
        let configuration = configuration
        if let announcer = onLoop.value.bgp {
            announcer.update()
            return
        }
        guard configuration.bgp != nil else { return }
        let announcer = BGPAnnouncer(service: self, settings: configuration.bgp, listening: onLoop.value.listening,
                                     awaitingHandover: awaitingHandover)
        onLoop.value.bgp = announcer
        announcer.start()
    }

    private func perform(_ outcome: Runtime.Outcome, _ prepared: Prepared) -> EventLoopFuture<Reply> {
        var reply = Reply(lines: outcome.lines)
        var writes: [EventLoopFuture<Void>] = []
        var reloads = false
        for effect in outcome.effects {
            switch effect {
            case .reopenLog:
                connectionLog.file = prepared.log
            case .closeConnection(let number):
                tcp?.close(connection: number)
                onLoop.value.udp?.close(connection: number)
            case .write(let path, let contents):
                writes.append(blockingPool.runIfActive(eventLoop: eventLoop) { try FileAccess.replace(path, with: contents) })
            case .exit:
                reply.exitRequested = true
            case .reload:
                reloads = true
            case .updateBGP:
                writes.append(onLoop.value.bgp?.update() ?? eventLoop.makeSucceededVoidFuture())
            }
        }
        let written = EventLoopFuture.andAllSucceed(writes, on: eventLoop).map { [reply] in reply }
        guard reloads else { return written }
        // Answered once the reload is done: `penha ctl reload` (systemd's ExecReload) exits 1 when refused.
        return written.flatMap { reply in
            self.reload().map {
                Reply(lines: reply.lines + [self.reloaded], errors: reply.errors, exitRequested: reply.exitRequested)
            }.recover { error in
                Reply(lines: reply.lines, errors: reply.errors + [Self.reloadRefused(error)], exitRequested: reply.exitRequested)
            }
        }
    }
}

/// The VRRP instances of a running penha, as the executor changes them (penha's `VRRPNode`).
public protocol VRRPControl: Sendable {
    /// Blocking: asks the interfaces.
    var statuses: [VRRPInstanceStatus] { get }
    /// The `vrrp` commands that run.
    var running: [VRRPInstanceConfiguration] { get }
    /// Blocking: makes the running instances these; an instance that cannot start is an error,
    /// and what ran before runs on.
    func apply(_ instances: [VRRPInstanceConfiguration]) throws
    /// Cheap (no interface asked): no instance runs, or one is master.
    var holdsVirtualAddresses: Bool { get }
    /// The instances whose second chance has a window open (none moves meanwhile).
    var openSecondChanceWindows: [OpenSecondChanceWindow] { get }
    /// Blocking (at most a second): the instances stop as they are for another penha process
    /// to go on with (`penha upgrade`); where each stood.
    func handOff() -> [VRRPResumption]
}

extension BalancerService {
    /// Whether this node sends its client table: standalone, or master of an instance.
    var holdsVirtualAddresses: Bool { vrrp.withLock { $0 }?.holdsVirtualAddresses ?? true }
}
