import BalancerCore
import NIOCore

/// pen's HTML report (`-w`): rewritten on SIGUSR1 and, so that it stays fresh on its own,
/// every `interval`. Part of the service, on its event loop.
final class Reports {
    private unowned let service: BalancerService
    /// How often the `-w` report is rewritten.
    static let interval = TimeAmount.seconds(30)

    init(service: BalancerService) {
        self.service = service
    }

    func start() {
        service.eventLoop.scheduleRepeatedTask(initialDelay: Self.interval, delay: Self.interval) { _ in
            self.writeWebStats()
        }
    }

    /// Writes the `-w` report, if there is one: the VRRP states gathered and the file written
    /// on the thread pool, the page made on the event loop; a failure is logged. From any thread.
    func writeWebStats() {
        let service = self.service
        service.eventLoop.execute {
            guard let path = service.configuration.webStatsFile else { return }
            let pool = service.blockingPool
            pool.runIfActive(eventLoop: service.eventLoop) { service.vrrpReports() }.flatMap { vrrp in
                let facts = service.facts(vrrp: vrrp)
                let page = service.shared.withLock { $0.webStats(facts: facts) }
                return pool.runIfActive(eventLoop: service.eventLoop) { try FileAccess.replace(path, with: page) }
            }.whenFailure { error in service.logger.warning("cannot write the status report: \(error)") }
        }
    }
}
