import BalancerCore
import NIOCore

extension BalancerService {
    /// The status model now, VRRP included: what systemd's STATUS= and the metrics render.
    /// The instances are asked on the thread pool (they read the interfaces).
    public func statusReport() -> EventLoopFuture<StatusReport> {
        blockingPool.runIfActive(eventLoop: eventLoop) { self.vrrpReports() }.map { vrrp in
            self.runtime.statusReport(facts: self.facts(vrrp: vrrp))
        }
    }
}
