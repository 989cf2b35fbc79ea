import BalancerCore
import NIOCore
import NIOPosix
import Synchronization
import VRRP

/// `bgp`: keeps penha's routes in the kernel table the host's BGP daemon announces from, as
/// `BGPDecision` says: once a second (the pace of vrrp's health coupling), after a command
/// that changes `bgp` or the operator's hold, and when penha stops. Every step runs on one
/// thread of its own, in order, so the routes are planned from what the previous step did
/// (`BGPRouteTable`) and a netlink call never waits on the event loop or behind a slow
/// host-name lookup on the service's pool. With `second_chance`, each step also keeps the tc
/// filter that passes strays on to the peers (`ECMPSecondChanceTraffic`), from the start until
/// the drain ends: under ECMP a stray can come at any time, and while the node drains its
/// connections' segments come back to it from the peers.
final class BGPAnnouncer: Sendable {
    private unowned let service: BalancerService
    private let thread = NIOThreadPool(numberOfThreads: 1)
    private let work: Mutex<Work>
    /// What `status` shows, read from the event loop while a step may run.
    private let reported = Mutex<StatusReport.BGP?>(nil)
    private let tick = Mutex<RepeatedTask?>(nil)

    private struct Work {
        /// Made on the first step, and again after one that could not be made.
        var routes: KernelRoutes?
        var table: BGPRouteTable
        var listening: Bool
        var stopping = false
        /// The drain is over: the second chance's filter goes.
        var drained = false
        /// This process takes over from another (`penha upgrade`): no step until the handover
        /// is over, so that the routes the old process announced (or withdrew) stay as they are
        /// until everything the decision reads has come.
        var awaitingHandover: Bool
        /// Another penha process announces from now on (`penha upgrade`): the routes and the
        /// filter stay as they are, for it.
        var handedOff = false
        let secondChance: ECMPSecondChanceTraffic
        /// The last step's outcome, to log a change once.
        var last: (installed: Set<BGPRoute>, reason: BGPDecision.Reason?, error: String?) = ([], nil, nil)
    }

    /// `settings`' routes may be left from a penha that died: the first step deletes them
    /// unless it announces.
    init(service: BalancerService, settings: BGPSettings?, listening: Bool, awaitingHandover: Bool) {
        self.service = service
        let secondChance = ECMPSecondChanceTraffic { [weak service] line, failed in
            if failed { service?.logger.error("\(line)") } else { service?.logger.notice("\(line)") }
        }
        work = Mutex(Work(table: BGPRouteTable(unknown: settings?.routes ?? []), listening: listening,
                          awaitingHandover: awaitingHandover, secondChance: secondChance))
        thread.start()
    }

    deinit {
        thread.shutdownGracefully { _ in }
    }

    /// Steps once a second from now on.
    func start() {
        let task = service.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { [weak self] _ in
            _ = self?.update()
        }
        tick.withLock { $0 = task }
    }

    var report: StatusReport.BGP? { reported.withLock { $0 } }

    /// The listener is bound: the node can serve.
    func listen() {
        work.withLock { $0.listening = true }
        update()
    }

    /// Withdraws for good: penha is stopping. The future ends once the routes are deleted.
    func stop() -> EventLoopFuture<Void> {
        tick.withLock { $0?.cancel() }
        work.withLock { $0.stopping = true }
        return update()
    }

    /// Another penha process took over: no step changes the kernel from now on, so the routes
    /// stay announced and the filter in place, now the new process's. The future ends once a
    /// step that was running has ended.
    func handOff() -> EventLoopFuture<Void> {
        tick.withLock { $0?.cancel() }
        return thread.runIfActive(eventLoop: service.eventLoop) { self.work.withLock { $0.handedOff = true } }
    }

    /// The handover this process took over with is over: steps from now on.
    func handoverReceived() -> EventLoopFuture<Void> {
        work.withLock { $0.awaitingHandover = false }
        return update()
    }

    var isHandedOff: Bool { work.withLock { $0.handedOff } }

    /// penha's drain is over: the second chance's filter goes. The future ends once it has.
    func drainEnded() -> EventLoopFuture<Void> {
        work.withLock { $0.drained = true }
        return update()
    }

    /// One step, on the announcer's thread: decide, then bring the kernel's routes to it.
    @discardableResult
    func update() -> EventLoopFuture<Void> {
        thread.runIfActive(eventLoop: service.eventLoop) { self.step() }
    }

    private func step() {
        let (settings, withdrawn, available) = service.shared.withLock {
            ($0.configuration.bgp, $0.state.bgpWithdrawnByOperator, $0.state.availableServerCount(now: .now()))
        }
        work.withLock { work in
            guard !work.handedOff, !work.awaitingHandover else { return }
            let decision = BGPDecision.decide(stopping: work.stopping, listening: work.listening, withdrawnByOperator: withdrawn,
                                              availableServers: available, minimumServers: settings?.minimumServers ?? 1)
            var failure: String?
            do {
                let routes = try work.routes ?? KernelRoutes()
                work.routes = routes
                for change in work.table.changes(toward: decision.announces ? settings?.routes ?? [] : []) {
                    do {
                        switch change {
                        case .add(let route): try routes.add(route.prefix, table: route.table)
                        case .remove(let route): try routes.remove(route.prefix, table: route.table)
                        }
                        work.table.record(change)
                    } catch {
                        failure = "\(error)"
                    }
                }
            } catch {
                failure = "\(error)"
            }
            work.secondChance.update(work.drained ? nil : settings?.secondChance, prefixes: settings?.prefixes ?? [])
            let report = settings.map { settings in
                StatusReport.BGP(table: settings.table, announced: !work.table.installed.isEmpty, reason: decision.reason,
                                 availableServers: available, minimumServers: settings.minimumServers,
                                 routes: work.table.installed.sorted(by: BGPRouteTable.order).map(\.description), error: failure,
                                 secondChancePeers: settings.secondChance == nil ? nil : work.secondChance.peerCount)
            }
            reported.withLock { $0 = report }
            log(report, installed: work.table.installed, work: &work.last)
        }
    }

    /// A line when the routes, the reason or the error change; not one a second.
    private func log(_ report: StatusReport.BGP?, installed: Set<BGPRoute>,
                     work last: inout (installed: Set<BGPRoute>, reason: BGPDecision.Reason?, error: String?)) {
        let logger = service.logger
        if let report, installed != last.installed || report.reason != last.reason {
            logger.notice("\(report.text)")
        }
        if let error = report?.error, error != last.error {
            logger.error("bgp: \(error)")
        }
        last = (installed, report?.reason, report?.error)
    }
}
