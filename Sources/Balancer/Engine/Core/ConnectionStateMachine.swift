import BalancerCore
import NIOCore

/// One relayed connection's life, from accept to the freed slot, as a value: events in, the
/// action to take out (swift-nio-ssh's connection state machine; NIO's channel lifecycle).
/// No sockets and no clock: `EngineThread` makes the system calls an action names and
/// passes the time in. Each stage carries what it needs (the placement exists only once the
/// core placed the client, the number only once connected), so nothing is a sentinel.
///
/// The end-once guarantee lives here: the first event that ends the connection returns
/// `.close` (with the count its server is owed) and the machine is `closed`; every event
/// after that returns `.none`, so a slot is freed once and a server's count given back once.
///
/// The counters, the last activity and the ends of both directions are fields beside the
/// stage rather than in it: they change on every read and write, and copying a stage out of
/// its enum and back would cost copies on the data path. The placement and the attempt ride
/// in one `Lease` reference for the same reason: a stage or an action moves a pointer, not
/// 200 bytes (as values, their memcpy and retains cost about 3k instructions per connection).
public struct ConnectionStateMachine: Sendable {
    /// How long an upstream balancer may take to send its PROXY protocol header (it sends it at once).
    public static let proxyHeaderTimeout: UInt64 = 5_000_000_000
    /// How long a client has for its TLS handshake.
    public static let handshakeTimeout: UInt64 = 30_000_000_000
    /// How long queued bytes may wait for a reader once both sides have ended (60 s, as with the NIO relay).
    public static let drainBound: UInt64 = 60_000_000_000

    public enum Direction: Sendable {
        case toServer, toClient
    }

    /// The connection's timeouts as configured when it was placed (nanoseconds); an idle
    /// timeout of nil: none (`-T 0`).
    public struct Timeouts: Sendable, Equatable {
        public var connect: UInt64
        public var idle: UInt64?

        public init(connectSeconds: Int, idleSeconds: Int) {
            connect = UInt64(max(0, connectSeconds)) * 1_000_000_000
            idle = idleSeconds > 0 ? UInt64(idleSeconds) * 1_000_000_000 : nil
        }
    }

    /// Bytes read from one side and not yet added to the state's counters.
    public struct Report: Sendable {
        public let lease: Lease
        public let toServer: UInt64
        public let toClient: UInt64
        public var placement: BalancerState.Placement { lease.placement }
        public var target: Target { lease.target }
    }

    /// What the state is owed when the connection ends.
    public enum Release: Sendable {
        /// No server holds a count for it (before placement, or between attempts).
        case nothing
        /// A connect was in progress: its target's count goes back, its standing stays.
        case abandonedConnect(Lease)
        /// A relayed connection: its last counters, then its number and its server's count.
        /// `requestUnlogged`: `-l` still waits for its first request (the log gets none).
        case finished(Report, number: Int, requestUnlogged: Bool)
    }

    /// Why a connection ends, for the engine's log line and the TLS counters.
    public enum EndReason: Sendable, Equatable {
        /// Both directions passed their end on.
        case finished
        /// A read or write failed, or a socket reported an error (a reset).
        case failed
        /// `close N`, or the client left before anything was relayed.
        case closed
        case idleTimeout
        case drainBound
        /// `accept_proxy`: no valid header (logged as a refusal).
        case proxyHeaderRefused(String)
        /// Counted as a failed handshake and logged.
        case handshakeFailed(String)
        /// The client's TLS connection could not be set up (logged by the engine).
        case setupFailed
        /// The failover plan ran out.
        case noServer
        /// A connect failed for a reason of this host's (logged by the engine).
        case localFailure
        /// Handed over to another penha process, its sockets open (`handedOver`).
        case handedOver
    }

    public struct Close: Sendable {
        /// Reset both sides (SO_LINGER 0) instead of a FIN: one side failed, so the other must
        /// not see a cut-off stream as complete.
        public let reset: Bool
        public let release: Release
        public let reason: EndReason
    }

    public enum Action: Sendable {
        case none
        /// Set up the client's TLS connection (then `handshakeCompleted`, `handshakeFailed` or `setupFailed`).
        case startHandshake
        /// Ask the state where the client goes, then `placed`.
        case place
        /// Connect to the lease's attempt (then `connected` or `connectFailed`).
        case connect(Lease)
        /// The lease's connect failed for the server's reason: tell the state (it blacklists
        /// the server and takes its count back), ask it for the next target, then `failedOver`.
        case failover(Lease, ConnectError)
        /// Pass the direction's end on (shutdown(SHUT_WR) of its destination).
        case shutdownWrite(Direction)
        /// Close both sockets, give the state what `release` says, free the slot.
        case close(Close)
    }

    public enum ConnectError: Sendable, Equatable {
        case timedOut
        case system(Int32)
    }

    /// One direction's end: the source sent its FIN (or close_notify), and the end was passed on.
    public struct Flow: Sendable, Equatable {
        public fileprivate(set) var sourceEnded = false
        public fileprivate(set) var shutDown = false
        /// The source has ended but its end is not passed on yet.
        @inlinable
        public var isEndPending: Bool { sourceEnded && !shutDown }
    }

    /// Where a connection is, for the engine's loop (which steps to run).
    public enum Stage: Sendable, Equatable {
        case awaitingProxyHeader, handshaking, placing, connecting, relaying, closed
    }

    // Usable from inlinable code, for `lease` and `number`: a getter across the module takes
    // the whole machine by value, a copy (90 instructions) per connection.
    @usableFromInline
    struct Connecting: Sendable {
        @usableFromInline let lease: Lease
        let deadline: UInt64
    }

    @usableFromInline
    struct Relaying: Sendable {
        @usableFromInline let lease: Lease
        @usableFromInline let number: Int
        /// Set when both sources have ended while bytes still wait.
        var drainDeadline: UInt64?
    }

    @usableFromInline
    enum State: Sendable {
        case awaitingProxyHeader(deadline: UInt64)
        case handshaking(deadline: UInt64)
        /// Accepted (its header read, its handshake done): no server holds a count for it,
        /// between attempts too.
        case placing
        case connecting(Connecting)
        case relaying(Relaying)
        case closed
    }

    @usableFromInline
    private(set) var state: State {
        didSet { stage = Self.stage(of: state) }
    }

    private static func stage(of state: State) -> Stage {
        switch state {
        case .awaitingProxyHeader: return .awaitingProxyHeader
        case .handshaking: return .handshaking
        case .placing: return .placing
        case .connecting: return .connecting
        case .relaying: return .relaying
        case .closed: return .closed
        }
    }
    private var timeouts = Timeouts(connectSeconds: 0, idleSeconds: 0)
    public private(set) var toServer = Flow()
    public private(set) var toClient = Flow()
    /// `-l`: the first bytes written to the server are still to be logged.
    public private(set) var logsRequest = false

    /// What every read and write changes. Inlinable, with `read` and `wrote`: they run per
    /// read and write, where a call into another module cost 40 instructions a request.
    @usableFromInline
    struct Activity: Sendable {
        @usableFromInline var toServer: UInt64 = 0
        @usableFromInline var toClient: UInt64 = 0
        /// Bytes moved since the last report: the connection is in the engine's list to report.
        @usableFromInline var isReportPending = false
        /// When it last moved a byte (monotonic nanoseconds).
        @usableFromInline var lastActive: UInt64

        @usableFromInline
        init(lastActive: UInt64) {
            self.lastActive = lastActive
        }
    }

    @usableFromInline var activity: Activity

    /// Read and not yet added to the state's counters.
    public var unreportedToServer: UInt64 { activity.toServer }
    public var unreportedToClient: UInt64 { activity.toClient }
    public var isReportPending: Bool { activity.isReportPending }

    /// A slot's machine before its first client: closed, so no event does anything.
    public init() {
        state = .closed
        stage = .closed
        activity = Activity(lastActive: 0)
    }

    /// A client just accepted: its PROXY protocol header is awaited, or it is admitted at once
    /// (`admitted` tells what to do first).
    public init(acceptedAt now: UInt64, expectsProxyHeader: Bool) {
        state = expectsProxyHeader ? .awaitingProxyHeader(deadline: now + Self.proxyHeaderTimeout) : .placing
        stage = Self.stage(of: state)
        activity = Activity(lastActive: now)
    }

    /// A relaying connection another penha process handed over (`penha upgrade`): connected
    /// as `number` of this process's state, its directions as far as they had got there.
    public init(adopted lease: Lease, number: Int, timeouts: Timeouts, toServer: HandedOverFlow, toClient: HandedOverFlow,
                logsRequest: Bool, now: UInt64) {
        var relaying = Relaying(lease: lease, number: number)
        if toServer.sourceEnded && toClient.sourceEnded { relaying.drainDeadline = now + Self.drainBound }
        state = .relaying(relaying)
        stage = .relaying
        activity = Activity(lastActive: now)
        self.timeouts = timeouts
        self.toServer = Flow(sourceEnded: toServer.sourceEnded, shutDown: toServer.shutDown)
        self.toClient = Flow(sourceEnded: toClient.sourceEnded, shutDown: toClient.shutDown)
        self.logsRequest = logsRequest
    }

    /// Kept beside `state` (set with it) rather than computed from it: the data path asks on
    /// every round, and a getter of another module takes the whole machine by value, a copy
    /// that cost about 1k instructions per keep-alive request (bench/RESULTS.md).
    public private(set) var stage: Stage

    @inlinable
    public var isClosed: Bool { stage == .closed }

    /// `connection N`, while relaying.
    @inlinable
    public var number: Int? {
        if case .relaying(let relaying) = state { return relaying.number }
        return nil
    }

    /// The attempt in progress or connected (a server holds a count for it): its placement,
    /// its server for log lines and the PROXY protocol header.
    @inlinable
    public var lease: Lease? {
        switch state {
        case .connecting(let connecting): return connecting.lease
        case .relaying(let relaying): return relaying.lease
        default: return nil
        }
    }

    @inlinable
    public func flow(_ direction: Direction) -> Flow {
        direction == .toServer ? toServer : toClient
    }

    // MARK: admission

    /// The client as it is (its header read, or none expected): its handshake, or its placement.
    public mutating func admitted(terminatesTLS: Bool, now: UInt64) -> Action {
        switch state {
        case .awaitingProxyHeader, .placing:
            if terminatesTLS {
                state = .handshaking(deadline: now + Self.handshakeTimeout)
                return .startHandshake
            }
            state = .placing
            return .place
        default:
            return .none
        }
    }

    /// `accept_proxy`: the header is missing, incomplete at the client's FIN, or invalid.
    public mutating func proxyHeaderRefused(_ reason: String) -> Action {
        guard case .awaitingProxyHeader = state else { return .none }
        return ending(reset: false, .proxyHeaderRefused(reason))
    }

    public mutating func setupFailed() -> Action {
        guard case .handshaking = state else { return .none }
        return ending(reset: false, .setupFailed)
    }

    public mutating func handshakeCompleted() -> Action {
        guard case .handshaking = state else { return .none }
        state = .placing
        return .place
    }

    public mutating func handshakeFailed(_ reason: String) -> Action {
        guard case .handshaking = state else { return .none }
        return ending(reset: false, .handshakeFailed(reason))
    }

    // MARK: placing and connecting

    /// The state placed the client: `lease` is its first attempt (counted against its
    /// target), nil when no server takes it.
    public mutating func placed(_ lease: Lease?, timeouts: Timeouts, now: UInt64) -> Action {
        guard case .placing = state else { return .none }
        self.timeouts = timeouts
        return attemptNext(lease, now: now)
    }

    /// After `.failover`: the next attempt the state chose (counted against its target), or nil.
    public mutating func failedOver(_ lease: Lease?, now: UInt64) -> Action {
        guard case .placing = state else { return .none }
        return attemptNext(lease, now: now)
    }

    private mutating func attemptNext(_ lease: Lease?, now: UInt64) -> Action {
        guard let lease else { return ending(reset: false, .noServer) }
        state = .connecting(Connecting(lease: lease, deadline: now + timeouts.connect))
        return .connect(lease)
    }

    /// The connect failed: a local cause (`FailureCause.isLocal`) closes the client, as any
    /// other server would fail alike, and leaves the server's standing; any other fails over,
    /// keeping what the client sent so far.
    public mutating func connectFailed(_ error: ConnectError, cause: FailureCause) -> Action {
        guard case .connecting(let connecting) = state else { return .none }
        if cause.isLocal {
            return ending(reset: false, .localFailure)
        }
        state = .placing
        return .failover(connecting.lease, error)
    }

    /// Connected: `number` is the state's `connection N`; `logsRequest`: `-l` logs its first
    /// request. Bytes the client sent meanwhile are reported from now on.
    public mutating func connected(number: Int, logsRequest: Bool, now: UInt64) -> Action {
        guard case .connecting(let connecting) = state else { return .none }
        state = .relaying(Relaying(lease: connecting.lease, number: number))
        self.logsRequest = logsRequest
        activity.lastActive = now
        return .none
    }

    // MARK: relaying

    /// Bytes read from the direction's source (0: none, only activity). True when the
    /// connection has just become due for a report: the engine lists it for the next.
    @inlinable
    public mutating func read(_ count: Int, _ direction: Direction, now: UInt64) -> Bool {
        guard !isClosed else { return false }
        activity.lastActive = now
        switch direction {
        case .toServer: activity.toServer &+= UInt64(count)
        case .toClient: activity.toClient &+= UInt64(count)
        }
        guard count > 0, !activity.isReportPending, stage == .relaying else { return false }
        activity.isReportPending = true
        return true
    }

    /// Bytes written to a side: the connection is active.
    @inlinable
    public mutating func wrote(now: UInt64) {
        guard !isClosed else { return }
        activity.lastActive = now
    }

    /// `-l`: the first request was logged.
    public mutating func requestLogged() {
        logsRequest = false
    }

    /// The counters to add to the state now (the report interval, or `status` asking); nil
    /// when nothing is due or the connection is not relaying.
    public mutating func takeReport() -> Report? {
        guard activity.isReportPending, case .relaying(let relaying) = state else { return nil }
        activity.isReportPending = false
        defer { activity.toServer = 0; activity.toClient = 0 }
        return Report(lease: relaying.lease, toServer: activity.toServer, toClient: activity.toClient)
    }

    /// The direction's source sent its end (FIN, or TLS close_notify): nothing more comes.
    /// Both ended while bytes still wait: the drain bound starts.
    public mutating func sourceEnded(_ direction: Direction, now: UInt64) {
        guard !isClosed else { return }
        switch direction {
        case .toServer: toServer.sourceEnded = true
        case .toClient: toClient.sourceEnded = true
        }
        if toServer.sourceEnded && toClient.sourceEnded, case .relaying(var relaying) = state, relaying.drainDeadline == nil {
            relaying.drainDeadline = now + Self.drainBound
            state = .relaying(relaying)
        }
    }

    /// The direction's pipe is empty after its source ended: its end is passed on, with a
    /// shutdown of the destination's writing while the other direction still flows; when
    /// that one is done too the connection closes, and the close sends the FIN.
    public mutating func outputFlushed(_ direction: Direction) -> Action {
        guard stage == .relaying, flow(direction).isEndPending else { return .none }
        switch direction {
        case .toServer: toServer.shutDown = true
        case .toClient: toClient.shutDown = true
        }
        guard toServer.shutDown && toClient.shutDown else { return .shutdownWrite(direction) }
        return ending(reset: false, .finished)
    }

    // MARK: ends

    /// The connection goes to another penha process (`penha upgrade`): closed here with what
    /// the state is owed, its sockets left open for the engine to hand over. Only a relaying one.
    public mutating func handedOver() -> Action {
        guard stage == .relaying else { return .none }
        return ending(reset: false, .handedOver)
    }

    /// A read or write failed, or epoll reported a socket error: both sides are reset. During
    /// a connect that is the client's doing, so the server keeps its standing.
    public mutating func failed() -> Action {
        guard !isClosed else { return .none }
        return ending(reset: true, .failed)
    }

    /// `close N`, or the client is gone before there is anything to relay: closed normally.
    public mutating func closeRequested() -> Action {
        guard !isClosed else { return .none }
        return ending(reset: false, .closed)
    }

    /// The deadlines, checked at each sweep: the PROXY protocol header's, the handshake's, the
    /// connect's (a timeout fails over like a refusal), the idle timeout and the drain bound.
    public mutating func tick(now: UInt64) -> Action {
        switch state {
        case .awaitingProxyHeader(let deadline) where now >= deadline:
            return ending(reset: false, .proxyHeaderRefused("no PROXY protocol header within \(Self.proxyHeaderTimeout / 1_000_000_000) seconds"))
        case .handshaking(let deadline) where now >= deadline:
            return ending(reset: false, .handshakeFailed("no handshake within \(Self.handshakeTimeout / 1_000_000_000) seconds"))
        case .connecting(let connecting) where now >= connecting.deadline:
            return connectFailed(.timedOut, cause: .server)
        case .relaying(let relaying):
            if let idle = timeouts.idle, now >= activity.lastActive + idle { return ending(reset: false, .idleTimeout) }
            if let drainDeadline = relaying.drainDeadline, now >= drainDeadline { return ending(reset: false, .drainBound) }
            return .none
        default:
            return .none
        }
    }

    /// The one way to `closed`: what the state is owed comes from the stage left.
    private mutating func ending(reset: Bool, _ reason: EndReason) -> Action {
        let release: Release
        var reason = reason
        switch state {
        case .connecting(let connecting):
            release = .abandonedConnect(connecting.lease)
        case .relaying(let relaying):
            let report = Report(lease: relaying.lease, toServer: activity.toServer, toClient: activity.toClient)
            release = .finished(report, number: relaying.number, requestUnlogged: logsRequest)
        case .handshaking:
            // Any end before the handshake completed counts as a failed handshake.
            if reason == .failed { reason = .handshakeFailed("the connection failed during the handshake") }
            if reason == .closed { reason = .handshakeFailed("the connection closed during the handshake") }
            release = .nothing
        case .awaitingProxyHeader, .placing:
            release = .nothing
        case .closed:
            return .none
        }
        state = .closed
        activity.toServer = 0
        activity.toClient = 0
        activity.isReportPending = false
        return .close(Close(reset: reset, release: release, reason: reason))
    }
}

/// One attempt the state chose, from the connect to the end: where it placed the client
/// (the placement, counted against `target`) and how to reach the server. Immutable, one
/// per attempt; a reference, so that a stage or an action moves a pointer, not 200 bytes.
public final class Lease: Sendable {
    public let placement: BalancerState.Placement
    public let target: Target
    public let address: SocketAddress
    public let source: SocketAddress?
    /// The server as configured, for log lines (made into text only when one is written).
    public let host: String
    public let port: Int
    public let noDelay: Bool
    public let proxyProtocol: ProxyProtocol

    public init(placement: BalancerState.Placement, target: Target, address: SocketAddress, source: SocketAddress?,
                host: String, port: Int, noDelay: Bool, proxyProtocol: ProxyProtocol) {
        self.placement = placement
        self.target = target
        self.address = address
        self.source = source
        self.host = host
        self.port = port
        self.noDelay = noDelay
        self.proxyProtocol = proxyProtocol
    }

    public var serverText: String { Endpoint.describe(host: host, port: port) }
}
