import BalancerCore
import NIOCore

/// pen's HTML report (`-w`): rewritten on SIGUSR1 and, so that it stays fresh on its own,
/// every `webStatsInterval`. Part of the service, on its event loop.
extension BalancerService {
    /// How often the `-w` report is rewritten.
    static let webStatsInterval = TimeAmount.seconds(30)

    func startWebStatsTimer() {
        eventLoop.scheduleRepeatedTask(initialDelay: Self.webStatsInterval, delay: Self.webStatsInterval) { [weak self] _ in
            self?.writeWebStats()
        }
    }

    /// Writes the `-w` report, if there is one: the VRRP states gathered and the file written
    /// on the thread pool, the page made on the event loop; a failure is logged. From any thread.
    func writeWebStats() {
        eventLoop.execute {
            guard let path = self.configuration.webStatsFile else { return }
            self.blockingPool.runIfActive(eventLoop: self.eventLoop) { self.vrrpReports() }.flatMap { vrrp in
                let facts = self.facts(vrrp: vrrp)
                let page = self.shared.withLock { $0.webStats(facts: facts) }
                return self.blockingPool.runIfActive(eventLoop: self.eventLoop) { try FileAccess.replace(path, with: page) }
            }.whenFailure { error in self.logger.warning("cannot write the status report: \(error)") }
        }
    }
}
