import BalancerCore
import CEngine
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The balancer's configuration and state behind one lock: the control plane (commands,
/// reload, UDP, health checks, reports) and every engine thread share it, so `BalancerState`
/// stays the one source of truth. An engine thread takes it once per connection event
/// (accept and first target, each failover step, connected, finished) and for the byte
/// counters at most every `Engine.reportInterval`, never per read.
public final class SharedRuntime: Sendable {
    private let runtime: Mutex<Runtime>

    public init(_ runtime: Runtime) {
        self.runtime = Mutex(runtime)
    }

    public func withLock<Result>(_ body: (inout Runtime) throws -> Result) rethrows -> Result {
        try runtime.withLock { (runtime: inout Runtime) throws -> Result in try body(&runtime) }
    }
}

public enum EngineLogLevel: Sendable {
    case debug, info, warning
}

/// What the engine tells the service it runs in: log lines and the connection log. Called
/// from the engine's threads.
public protocol EngineEvents: AnyObject, Sendable {
    func isLogged(_ level: EngineLogLevel) -> Bool
    func log(_ level: EngineLogLevel, _ message: String, _ metadata: [String: String])
    /// Whether connections are logged (`-l`): asked once per connection, when it is connected.
    var logsConnections: Bool { get }
    /// The connection log's line for one connection: `request` as `PenLogLine.requestStart` makes it.
    func logConnection(client: ClientKey, server: SocketAddress?, request: [UInt8])
}

/// Where the engine listens.
public enum EngineListenAddress: Sendable {
    case inet(SocketAddress, freeBind: Bool)
    case unix(path: String)
    /// A listening socket another penha process handed over (`penha upgrade`): nothing is bound.
    case adopted(Int32)
}

/// penha's TCP data path: `threads` event loops over edge-triggered epoll, each with its own
/// connection slots and buffers, sharing one listener that wakes one of them per new client
/// (EPOLLEXCLUSIVE); placement asks `BalancerState` through `SharedRuntime`. See
/// `EngineThread` for one loop and `Connection` for one relay.
///
/// One listener rather than one per thread with SO_REUSEPORT: a second penha (the same
/// user) would bind the same port with SO_REUSEPORT and silently share its clients, where
/// the listen address in use must be refused at start.
public final class Engine: Sendable {
    /// How often a thread adds its connections' byte counts to the state.
    static let reportInterval: UInt64 = 250_000_000

    let shared: SharedRuntime
    let events: any EngineEvents
    let tls: TLSTermination?
    /// How many threads `start` makes.
    public let threadCount: Int
    /// The running threads: made by `start`, joined and dropped by `stop`.
    private let running = Mutex<[EngineThread]>([])
    /// Taken under the lock: the orders to all threads, and a thread's wake-up at the limit.
    var threads: [EngineThread] { running.withLock { $0 } }
    let listener = Atomic<Int32>(-1)
    /// `-x`: 0 for no limit; and the client connections open across all threads.
    let limit: Atomic<Int>
    let active = Atomic<Int>(0)
    /// `accept_proxy`: new clients start with a PROXY protocol header.
    let acceptsProxyHeader: Atomic<Bool>
    /// Clients refused by `client_acl`: a client can be refused at will, so their lines are
    /// throttled. One for all threads (a lock taken only for a refused client), so that
    /// the log gets at most one such line a second whatever the number of threads.
    let refusalLog = Mutex(LogThrottle())
    /// Clients refused for want of a valid PROXY protocol header (`accept_proxy`), likewise.
    let proxyRefusalLog = Mutex(LogThrottle())

    /// `threads` 0 means one per core.
    public init(shared: SharedRuntime, events: any EngineEvents, tls: TLSTermination?, threads: Int, limit: Int,
                acceptProxy: Bool) throws {
        self.shared = shared
        self.events = events
        self.tls = tls
        self.limit = Atomic(limit)
        acceptsProxyHeader = Atomic(acceptProxy)
        threadCount = threads > 0 ? threads : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Binds the listeners and starts the threads; returns the address bound (its port when 0 was asked).
    public func start(_ address: EngineListenAddress, backlog: Int, noDelay: Bool) throws -> SocketAddress? {
        let bound: Listener.Bound
        switch address {
        case .inet(let address, let freeBind):
            bound = try Listener.inet(address, backlog: backlog, freeBind: freeBind, noDelay: noDelay)
        case .unix(let path):
            bound = try Listener.unix(path, backlog: backlog)
        case .adopted(let descriptor):
            bound = Listener.Bound(descriptor: descriptor, address: Socket.localAddress(descriptor))
        }
        listener.store(bound.descriptor, ordering: .relaxed)
        do {
            for index in 0..<threadCount {
                let thread = try EngineThread(engine: self, listener: bound.descriptor, name: "penha-engine-\(index)")
                try thread.start()
                running.withLock { $0.append(thread) }
            }
        } catch {
            stop()
            throw error
        }
        return bound.address
    }

    /// Stops the engine: each thread closes its connections (their servers' counts given
    /// back as on `close N`), leaves its loop and is joined; then the listener is closed and
    /// the threads' epoll, eventfd, buffers and pipes are freed. Blocks for one loop turn of
    /// each thread: call it off the event loops. The engine does not start again.
    public func stop() {
        let stopping = running.withLock { threads in
            defer { threads.removeAll() }
            return threads
        }
        for thread in stopping { thread.post(.stop) }
        for thread in stopping { thread.join() }
        let descriptor = listener.exchange(-1, ordering: .relaxed)
        if descriptor >= 0 { Glibc.close(descriptor) }
    }

    /// Stops accepting (SIGTERM, `stop()`): each thread lets go of the listener, then it is
    /// closed; established connections are left as they are. Waits at most `wait`.
    public func stopAccepting(wait: Duration = .milliseconds(100)) {
        let done = Countdown(threads.count)
        for thread in threads { thread.post(.stopAccepting(done)) }
        done.wait(upTo: wait)
        let descriptor = listener.exchange(-1, ordering: .relaxed)
        if descriptor >= 0 { Glibc.close(descriptor) }
    }

    /// Client connections open now, on every thread (handshaking and connecting included).
    public var openConnections: Int { active.load(ordering: .relaxed) }

    /// Each thread's loop turns so far, by its name.
    public var threadTurns: [ProgressWatch.Turns] {
        threads.map { ProgressWatch.Turns(thread: $0.name, count: $0.turns) }
    }

    /// Makes every thread turn once, so that an idle one shows it is alive.
    public func nudgeThreads() {
        for thread in threads { thread.nudge() }
    }

    /// `close N`: on whichever thread relays it.
    public func close(connection number: Int) {
        for thread in threads { thread.post(.close(number)) }
    }

    /// A new `-x`, TCP_NODELAY or `accept_proxy`, for the connections accepted from now on.
    public func adopt(limit newLimit: Int, noDelay: Bool, acceptProxy: Bool) {
        limit.store(newLimit, ordering: .relaxed)
        acceptsProxyHeader.store(acceptProxy, ordering: .relaxed)
        let descriptor = listener.load(ordering: .relaxed)
        if descriptor >= 0 { Listener.setNoDelay(descriptor, noDelay) }
        for thread in threads { thread.post(.resumeAccepting) }
    }

    /// Has every thread add its byte counts to the state, so that an answer shows what was
    /// relayed up to now; waits at most `wait` (blocking: call it off the event loops).
    public func reportCounters(wait: Duration = .milliseconds(100)) {
        let done = Countdown(threads.count)
        for thread in threads { thread.post(.report(done)) }
        done.wait(upTo: wait)
    }

    /// Takes one of `-x`'s places before an accept; false at the limit.
    func reservePlace() -> Bool {
        let taken = active.wrappingAdd(1, ordering: .relaxed).oldValue
        let max = limit.load(ordering: .relaxed)
        guard max > 0, taken >= max else { return true }
        active.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    /// Gives a place back; wakes the threads that stopped at the limit.
    func releasePlace(from thread: EngineThread) {
        let before = active.wrappingSubtract(1, ordering: .relaxed).oldValue
        let max = limit.load(ordering: .relaxed)
        guard max > 0, before >= max else { return }
        for other in threads where other !== thread && other.isWaitingForPlace { other.post(.resumeAccepting) }
    }
}

/// The threads' answers to one order: counted down by each, waited for with a bound.
final class Countdown: Sendable {
    private let left: Atomic<Int>

    init(_ count: Int) {
        left = Atomic(count)
    }

    func countDown() {
        left.wrappingSubtract(1, ordering: .releasing)
    }

    /// Polls every 0.2 ms: an answer takes one loop turn of each thread.
    func wait(upTo bound: Duration) {
        let clock = ContinuousClock()
        let end = clock.now + bound
        while left.load(ordering: .acquiring) > 0 && clock.now < end { usleep(200) }
    }
}
