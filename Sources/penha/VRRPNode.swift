import Balancer
import BalancerCore
import Logging
import NIOCore
import Synchronization
import VRRP
import VRRPCore

/// The VRRP instances of one penha, next to its balancer: started after the listener is
/// bound, told every second how many servers the balancer could use (health coupling),
/// changed at runtime by `vrrp` and `no vrrp` commands, and stopped before exit so that a
/// master resigns and no virtual address stays behind.
final class VRRPNode: VRRPControl {
    /// A class of its own so that the health report can hold it before `self` exists.
    /// Once stopped it takes no new list: a batch that started instances while penha stopped
    /// (a `vrrp` command during the drain) must not leave them running past the exit.
    private final class Instances: Sendable {
        private struct State {
            var list: [VRRPInstance]
            var stopped = false
        }

        private let state: Mutex<State>
        init(_ list: [VRRPInstance]) { state = Mutex(State(list: list)) }
        var all: [VRRPInstance] { state.withLock { $0.list } }
        var isStopped: Bool { state.withLock { $0.stopped } }

        /// False when penha is stopping: the list is not taken.
        func set(_ new: [VRRPInstance]) -> Bool {
            state.withLock { state in
                guard !state.stopped else { return false }
                state.list = new
                return true
            }
        }

        /// Takes no list from now on; returns what runs, to be stopped.
        func stopAll() -> [VRRPInstance] {
            state.withLock { state in
                state.stopped = true
                return state.list
            }
        }
    }

    static let stopping = ConfigurationError("penha is stopping")

    /// Who hears of an instance's change of state (systemd's STATUS=), set once it exists.
    private final class StateListener: Sendable {
        let body = Mutex<(@Sendable () -> Void)?>(nil)
        func call() { body.withLock { $0 }?() }
    }

    private let instances: Instances
    private let listener = StateListener()
    private let make: @Sendable (VRRPInstanceConfiguration) throws -> VRRPInstance
    private let healthCheck: RepeatedTask

    /// Starts nothing when the configuration has no `vrrp` command: penha runs standalone
    /// (until a `vrrp` command adds an instance). `resuming`: where the instances stood in the
    /// penha this one took over from (`penha upgrade`).
    init(configuration: Configuration, service: BalancerService, logger: Logger, resuming: [VRRPResumption] = []) throws {
        let log: @Sendable (String) -> Void = { logger.notice("\($0)") }
        let logError: @Sendable (String) -> Void = { logger.error("\($0)") }
        let listener = self.listener
        make = {
            try VRRPInstance(configuration: $0, drainSeconds: service.drainBound, log: log, logError: logError,
                             stateChanged: listener.call)
        }
        let started = try configuration.vrrpInstances.map(make)
        let instances = Instances(started)
        self.instances = instances
        // `drain N` too: it bounds the second chance's window, and a command or a reload changes it.
        let report: @Sendable () -> Void = {
            guard !instances.all.isEmpty else { return }
            service.withState { $0.availableServerCount(now: .now()) }.whenSuccess { count in
                let drainSeconds = service.drainBound
                for instance in instances.all {
                    instance.setAvailableServers(count)
                    instance.setDrainSeconds(drainSeconds)
                }
            }
        }
        report()
        healthCheck = service.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in report() }
        for instance in started {
            try instance.start(resuming: resuming.first { $0.resumes(instance.configuration) })
        }
    }

    /// `body` runs (on the instance's thread) after any instance changes state.
    func onStateChange(_ body: @escaping @Sendable () -> Void) {
        listener.body.withLock { $0 = body }
    }

    /// Each instance's thread and its loop turns, for the watchdog.
    var threadTurns: [ProgressWatch.Turns] {
        instances.all.compactMap { instance in
            guard let turns = instance.turns else { return nil }
            let configuration = instance.configuration
            let family = configuration.family == .v4 ? "IPv4" : "IPv6"
            return ProgressWatch.Turns(thread: "VRRP vrid \(configuration.vrid) \(family) on \(configuration.interface)",
                                       count: turns)
        }
    }

    /// Makes every instance's thread turn once, so that a waiting one shows it is alive.
    func nudgeThreads() {
        for instance in instances.all { instance.nudge() }
    }

    /// What `penha status` shows of each instance.
    var statuses: [VRRPInstanceStatus] { instances.all.map(\.status) }

    var running: [VRRPInstanceConfiguration] { instances.all.map(\.configuration) }

    var holdsVirtualAddresses: Bool { instances.all.isEmpty || instances.all.contains(where: \.isMaster) }

    /// Keeps an instance whose command did not change (no transition, no gap in its adverts),
    /// changes one in place when it can (`changesInPlace`), replaces one that changed its
    /// version or addresses (it resigns, then the new one starts as backup), stops those no
    /// longer wanted and starts new ones. Every new instance is made before anything changes,
    /// so one that cannot be made changes nothing.
    func apply(_ wanted: [VRRPInstanceConfiguration]) throws {
        guard !instances.isStopped else { throw Self.stopping }
        let current = instances.all
        let made = try wanted.filter { next in
            !current.contains { $0.configuration.changesInPlace(to: next) }
        }.map(make)
        var result: [VRRPInstance] = []
        var leaving: [VRRPInstance] = []
        for instance in current {
            if let next = wanted.first(where: instance.configuration.changesInPlace(to:)) {
                if next != instance.configuration { instance.reconfigure(next) }
                result.append(instance)
            } else {
                leaving.append(instance)
            }
        }
        // Together, and before a replacement starts, so that it never meets its predecessor.
        for instance in leaving { instance.beginStopping() }
        for instance in leaving { instance.finishStopping() }
        // At once, not after its window: nothing would tick a stopped instance's window (the
        // process does not drain), a replacement shares its tc filter's pref (49152 + VRID)
        // and may be master here again in a moment, behind its predecessor's ARP silence.
        for instance in leaving { instance.endSecondChance() }
        var failure: Error?
        for instance in made {
            do {
                try instance.start()
                result.append(instance)
            } catch {
                failure = error
                break
            }
        }
        guard instances.set(result) else {
            // penha stopped meanwhile: what this call started stops too.
            let started = made.filter { new in result.contains { $0 === new } }
            for instance in started { instance.beginStopping() }
            for instance in started { instance.finishStopping() }
            throw Self.stopping
        }
        if let failure { throw failure }
    }

    /// After the process's drain: what a second chance kept for it (the VIPs on `lo`) goes.
    func drainEnded() {
        for instance in instances.all { instance.endSecondChance() }
    }

    var openSecondChanceWindows: [OpenSecondChanceWindow] { instances.all.compactMap(\.openSecondChanceWindow) }

    /// Another penha process goes on with the instances (`penha upgrade`): they stop as they
    /// are, a master without resigning or removing its addresses; returns where each stood.
    func handOff() -> [VRRPResumption] {
        healthCheck.cancel()
        let all = instances.stopAll()
        for instance in all { instance.beginHandOff() }
        return all.map { $0.finishHandOff() }
    }

    func stop() {
        healthCheck.cancel()
        let all = instances.stopAll()
        for instance in all { instance.beginStopping() }
        for instance in all { instance.finishStopping() }
    }
}
