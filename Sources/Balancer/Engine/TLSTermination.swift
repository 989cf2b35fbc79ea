import BalancerCore
import Logging
import NIOCore
import NIOPosix

/// TLS for `BalancerService`'s clients: the context new connections get, replaced by a
/// reload only when the new one loaded, and the handshake counters `status` shows. Used on
/// the balancer's event loop only.
final class TLSTermination {
    private var context: TLSContext
    private(set) var completed: UInt64 = 0
    private(set) var failed: UInt64 = 0
    private var failureLog = LogThrottle()

    init(settings: TLSSettings) throws {
        context = try TLSContext(settings: settings)
    }

    /// Puts TLS in front of a new client's pipeline; `established` runs once its handshake
    /// succeeded. A failed handshake is counted and logged (at most one line a second), and
    /// the channel closed.
    func secure(_ channel: Channel, client: String, logger: Logger, established: @escaping () -> Void) throws {
        let handler = TLSHandler(connection: try context.makeConnection()) { result in
            switch result {
            case .success:
                self.completed += 1
                established()
            case .failure(let failure):
                self.failed += 1
                guard let heldBack = self.failureLog.admit(now: .now()) else { return }
                let more = heldBack > 0 ? " (and \(heldBack) more since the last one logged)" : ""
                logger.info("TLS handshake failed\(more)", metadata: ["client": "\(client)", "error": "\(failure)"])
            }
        }
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    /// Loads the files again off the event loop; on failure the running context stays.
    func reload(_ settings: TLSSettings, pool: NIOThreadPool, eventLoop: EventLoop) -> EventLoopFuture<Void> {
        pool.runIfActive(eventLoop: eventLoop) { try TLSContext(settings: settings) }.map { self.context = $0 }
    }
}
