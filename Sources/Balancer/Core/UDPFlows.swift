import NIOCore

/// UDP mode's flows (`-U`): one per client address and port, relayed through a socket of its
/// own connected to the server chosen for it. Pure: every choice goes through `BalancerState`,
/// so the client table, the algorithms, blacklisting and the counters are TCP's, and a flow
/// is a connection there (`connection N`, `close N`, `status`). Time comes in as an argument;
/// the sockets are `UDPRelay`'s.
public struct UDPFlows: Sendable {
    public struct Flow: Sendable {
        public let client: SocketAddress
        public fileprivate(set) var target: Target
        /// The number `BalancerState` gave the flow as a connection.
        public fileprivate(set) var connection: Int
        /// New with each socket the table asks for, so that events from a replaced one are told apart.
        public fileprivate(set) var attempt: Int
        public fileprivate(set) var lastActive: NIODeadline
        public fileprivate(set) var toServer: UInt64 = 0
        public fileprivate(set) var toClient: UInt64 = 0
        fileprivate var placement: BalancerState.Placement
    }

    /// What to do with a datagram from a client.
    public enum Arrival: Sendable {
        /// Send it on the flow's socket.
        case forward(Flow)
        /// Open a socket to `flow.target` and send it there; `replacing` has ended (its
        /// server was blacklisted) and its socket is to be closed.
        case open(Flow, replacing: Flow?)
        /// Drop it: the table holds `capacity` flows.
        case full
        /// Drop it: no server can take the client. `ended` is as for `open`.
        case noServer(ended: Flow?)
    }

    /// What follows when a flow's server turned out not to be there.
    public enum Failure: Sendable {
        /// The event came from a socket the flow no longer uses.
        case stale
        /// Open a socket to `flow.target`, the next server of the failover plan.
        case moved(Flow)
        /// The plan is exhausted: the flow is gone.
        case closed(Flow)
    }

    /// UDP has no close, so a flow ends after this long without a datagram either way.
    public static let defaultIdleTime = TimeAmount.seconds(60)

    public private(set) var flows: [SocketAddress: Flow] = [:]
    public var capacity: Int
    public var idleTime: TimeAmount
    private var attempts = 0

    public init(capacity: Int, idleTime: TimeAmount) {
        self.capacity = capacity
        self.idleTime = idleTime
    }

    /// Flows end after `idle_timeout` seconds (60 when it is 0: a flow cannot live forever);
    /// at most `-x` of them at once, or `-c` when `-x` is 0 (each holds a socket).
    public init(configuration: Configuration) {
        self.init(capacity: 0, idleTime: .zero)
        adopt(configuration)
    }

    public mutating func adopt(_ configuration: Configuration) {
        capacity = configuration.connectionsMax > 0 ? configuration.connectionsMax : configuration.clientsMax
        idleTime = configuration.idleTimeoutSeconds > 0 ? .seconds(Int64(configuration.idleTimeoutSeconds)) : Self.defaultIdleTime
    }

    /// A datagram of `bytes` bytes from `client`. A flow whose server has been blacklisted
    /// since it began is placed again, so a blacklisted server is skipped by flows too.
    public mutating func arrived(from client: SocketAddress, bytes: Int, now: NIODeadline,
                                 state: inout BalancerState) -> Arrival {
        let replacing: Flow?
        if var flow = flows[client] {
            guard state.servers[flow.target]?.isBlacklisted(now: now) == true else {
                flow.lastActive = now
                Self.count(&flow, toServer: bytes, state: &state)
                flows[client] = flow
                return .forward(flow)
            }
            replacing = remove(client, state: &state)
        } else {
            guard flows.count < capacity else { return .full }
            replacing = nil
        }
        guard var placed = place(client, now: now, state: &state) else { return .noServer(ended: replacing) }
        Self.count(&placed, toServer: bytes, state: &state)
        flows[client] = placed
        return .open(placed, replacing: replacing)
    }

    /// A reply of `bytes` bytes on the socket of `attempt`; the flow, when it is still current.
    public mutating func answered(_ client: SocketAddress, attempt: Int, bytes: Int, now: NIODeadline,
                                  state: inout BalancerState) -> Flow? {
        guard var flow = flows[client], flow.attempt == attempt else { return nil }
        flow.lastActive = now
        flow.toClient &+= UInt64(bytes)
        state.relayed(flow.placement, target: flow.target, toServer: 0, toClient: UInt64(bytes))
        flows[client] = flow
        return flow
    }

    /// The flow's server refused (ICMP port unreachable) or its socket could not be opened:
    /// as a failed TCP connect, the server is blacklisted and the flow moves on by its plan.
    public mutating func failed(_ client: SocketAddress, attempt: Int, now: NIODeadline,
                                state: inout BalancerState) -> Failure {
        guard var flow = flows[client], flow.attempt == attempt else { return .stale }
        state.finished(flow.placement, connection: flow.connection, target: flow.target)
        state.servers.blacklist(flow.target, until: now + state.blacklistTime)
        guard let target = state.nextTarget(&flow.placement, now: now) else {
            flows[client] = nil
            return .closed(flow)
        }
        flow.target = target
        flow.connection = state.connected(flow.placement, to: target, client: Endpoint.describe(client), now: now)
        flow.attempt = nextAttempt()
        flows[client] = flow
        return .moved(flow)
    }

    /// Ends the flow of `client` (its socket closed, or `close N`); the flow, if there was one.
    @discardableResult
    public mutating func remove(_ client: SocketAddress, state: inout BalancerState) -> Flow? {
        guard let flow = flows.removeValue(forKey: client) else { return nil }
        state.finished(flow.placement, connection: flow.connection, target: flow.target)
        return flow
    }

    /// Ends the flows idle for `idleTime` or longer; the ones ended.
    public mutating func expire(now: NIODeadline, state: inout BalancerState) -> [Flow] {
        flows.values.filter { now - $0.lastActive >= idleTime }.compactMap { remove($0.client, state: &state) }
    }

    /// The client of connection `number`, when it is a flow.
    public func client(ofConnection number: Int) -> SocketAddress? {
        flows.values.first { $0.connection == number }?.client
    }

    private mutating func place(_ client: SocketAddress, now: NIODeadline, state: inout BalancerState) -> Flow? {
        var placement = state.accept(client: ClientKey(client), now: now)
        guard let target = state.nextTarget(&placement, now: now) else { return nil }
        let connection = state.connected(placement, to: target, client: Endpoint.describe(client), now: now)
        return Flow(client: client, target: target, connection: connection, attempt: nextAttempt(), lastActive: now,
                    placement: placement)
    }

    private mutating func nextAttempt() -> Int {
        attempts += 1
        return attempts
    }

    private static func count(_ flow: inout Flow, toServer bytes: Int, state: inout BalancerState) {
        flow.toServer &+= UInt64(bytes)
        state.relayed(flow.placement, target: flow.target, toServer: UInt64(bytes), toClient: 0)
    }
}
