import Balancer
import BalancerCore
import Logging
import NIOCore
import VRRP
import VRRPCore

/// The VRRP instances of one penha, next to its balancer: started after the listener is
/// bound, told every second how many servers the balancer could use (health coupling),
/// and stopped before exit so that a master resigns and no virtual address stays behind.
final class VRRPNode {
    let instances: [VRRPInstance]
    private let healthCheck: RepeatedTask?

    /// Starts nothing when the configuration has no `vrrp` command: penha runs standalone.
    init(configuration: Configuration, service: BalancerService, logger: Logger) throws {
        let log: @Sendable (String) -> Void = { logger.notice("\($0)") }
        instances = try configuration.vrrpInstances.map { try VRRPInstance(configuration: $0, log: log) }
        guard !instances.isEmpty else {
            healthCheck = nil
            return
        }
        let instances = self.instances
        let report: @Sendable () -> Void = {
            service.withState { $0.availableServerCount(now: .now()) }.whenSuccess { count in
                for instance in instances { instance.setAvailableServers(count) }
            }
        }
        report()
        healthCheck = service.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in report() }
        for instance in instances { try instance.start() }
    }

    /// What `penha status` shows of each instance.
    var statuses: [VRRPInstanceStatus] { instances.map(\.status) }

    func stop() {
        healthCheck?.cancel()
        for instance in instances { instance.stop() }
    }
}
