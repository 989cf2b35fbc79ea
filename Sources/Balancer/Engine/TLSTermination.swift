import BalancerCore
import NIOCore
import Synchronization

/// TLS for the engine's clients: the context new connections get, replaced by a reload only
/// when the new one loaded, and the handshake counters `status` shows. Shared by the threads.
public final class TLSTermination: Sendable {
    private let context: Mutex<any TLSServerContext>
    private let completedCount = Atomic<UInt64>(0)
    private let failedCount = Atomic<UInt64>(0)
    private let failureLog = Mutex(LogThrottle())

    public init(context: any TLSServerContext) {
        self.context = Mutex(context)
    }

    public var completed: UInt64 { completedCount.load(ordering: .relaxed) }
    public var failed: UInt64 { failedCount.load(ordering: .relaxed) }

    /// A context loaded again (a reload): new connections get it; running ones keep theirs.
    public func replace(_ loaded: any TLSServerContext) {
        context.withLock { $0 = loaded }
    }

    func makeConnection() throws -> TLSConnection {
        try TLSConnection(context: context.withLock { $0 })
    }

    func handshakeCompleted() {
        completedCount.wrappingAdd(1, ordering: .relaxed)
    }

    /// Counts a failed handshake; returns the log line's note when this one is to be logged
    /// (at most one a second), nil when it is held back.
    func handshakeFailed(now: NIODeadline) -> String? {
        failedCount.wrappingAdd(1, ordering: .relaxed)
        return failureLog.withLock { throttle in
            throttle.admitNote(now: now)
        }
    }
}
