import VRRPCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One running VRRP instance: the pure `VRRPStateMachine` driven by a thread of its own,
/// which waits on the advertisement socket with a timeout bounded by the machine's next
/// deadline, and performs what the machine asks (adverts, addresses, announcements).
/// The thread shares nothing with the balancer but the snapshot and the inbox below.
public final class VRRPInstance: @unchecked Sendable {
    private let interface: NetworkInterface
    private let primaryAddress: IPAddress
    private let socket: AdvertisementSocket
    private let addresses: VirtualAddresses
    private let log: @Sendable (String) -> Void
    private let shared: Mutex<Shared>
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var thread: pthread_t?

    private struct Shared {
        /// Changed only by the instance's thread, when it adopts `pendingConfiguration`.
        var configuration: VRRPInstanceConfiguration
        var pendingConfiguration: VRRPInstanceConfiguration?
        var status: VRRPInstanceStatus
        var availableServers: Int?
        var stopping = false
    }

    /// The `vrrp` command the instance runs.
    public var configuration: VRRPInstanceConfiguration { shared.withLock { $0.configuration } }

    /// Gratuitous ARP / neighbour advertisements are repeated: the first one may be lost
    /// while a switch is still learning.
    static let announcements = 3
    static let announcementSpacing: UInt64 = 500_000_000
    /// The longest the thread sleeps: how soon it sees a link change or a stop.
    static let longestWait: UInt64 = 200_000_000
    /// A resigning master's handover ends within 2 s (`VRRPStateMachine.resignationBound`);
    /// this bounds the thread's wait for it whatever happens.
    static let longestResignation: UInt64 = 3_000_000_000

    public init(configuration: VRRPInstanceConfiguration, log: @escaping @Sendable (String) -> Void) throws {
        self.log = log
        interface = try NetworkInterface(name: configuration.interface)
        let vips = configuration.virtualAddresses.map(\.address)
        guard let primary = interface.primaryAddress(configuration.family, excluding: vips) else {
            throw VRRPSystemError("interface \(interface.name) has no \(configuration.family == .v4 ? "IPv4" : "IPv6 link-local") address of its own")
        }
        primaryAddress = primary
        socket = try AdvertisementSocket(family: configuration.family, interface: interface, source: primary)
        addresses = try VirtualAddresses()
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw VRRPSystemError("pipe", errno: errno) }
        for end in pipeEnds {
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = pipeEnds[0]
        wakeWrite = pipeEnds[1]
        shared = Mutex(Shared(configuration: configuration, status: VRRPInstanceStatus(
            state: .initialize, interface: configuration.interface, vrid: configuration.vrid,
            version: configuration.version.rawValue, configuredPriority: configuration.priority,
            effectivePriority: configuration.priority, advertisementInterval: configuration.advertisementInterval)))
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// Without asking the interface, unlike `status`.
    public var isMaster: Bool { shared.withLock { $0.status.state == .master } }

    public var status: VRRPInstanceStatus {
        var status = shared.withLock { $0.status }
        let present = interface.addresses(configuration.family)
        status.virtualAddresses = configuration.virtualAddresses.map {
            VRRPInstanceStatus.VirtualAddressStatus(address: $0, onInterface: present.contains($0.address))
        }
        return status
    }

    /// Health coupling: the number of servers the balancer could use right now.
    public func setAvailableServers(_ count: Int) {
        shared.withLock { $0.availableServers = count }
        wake()
    }

    public func start() throws {
        let machine = try VRRPStateMachine(configuration: VRRPConfiguration(
            version: configuration.version, vrid: configuration.vrid, priority: configuration.priority,
            advertisementInterval: configuration.advertisementInterval, preempt: configuration.preempt,
            preemptDelay: configuration.preemptDelay, primaryAddress: primaryAddress))
        thread = try startThread { [self] in run(machine) }
    }

    /// A runtime change of the `vrrp` command, applied by the thread on its next turn without
    /// a transition (`VRRPStateMachine.reconfigure`). Only what `changesInPlace(to:)` allows:
    /// another interface, VRID, version or address list is another instance.
    public func reconfigure(_ changed: VRRPInstanceConfiguration) {
        shared.withLock { $0.pendingConfiguration = changed }
        wake()
    }

    /// Resigns (a master sends priority 0 so a backup takes over after Skew_Time, and serves
    /// until the new master has taken the addresses), removes the virtual addresses and ends
    /// the thread. Returns within `longestResignation` plus `longestWait`.
    public func stop() {
        beginStopping()
        finishStopping()
    }

    /// `stop` in two halves, so that several instances resign at the same time.
    public func beginStopping() {
        shared.withLock { $0.stopping = true }
        wake()
    }

    public func finishStopping() {
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    // MARK: The instance's thread

    private func run(_ initial: VRRPStateMachine) {
        var machine = initial
        var driver = Driver(instance: self)
        var linkUp = interface.isUp
        driver.perform(machine.start(now: .now), machine: machine)
        if !linkUp { driver.perform(machine.interfaceDown(now: .now), machine: machine) }
        var resignedAt: VRRPInstant?
        while true {
            let (stopping, availableServers, changed) = shared.withLock { shared in
                defer { shared.pendingConfiguration = nil }
                return (shared.stopping, shared.availableServers, shared.pendingConfiguration)
            }
            if let changed { adopt(changed, into: &machine) }
            if stopping, resignedAt == nil {
                resignedAt = .now
                driver.perform(machine.shutdown(now: .now), machine: machine)
            }
            if let resignedAt, machine.state != .master || VRRPInstant.now >= resignedAt.advanced(by: Self.longestResignation) {
                break
            }
            if let availableServers {
                machine.setEffectivePriority(configuration.effectivePriority(availableServers: availableServers))
            }
            waitForWork(until: [machine.nextDeadline, driver.nextAnnouncement].compactMap { $0 }.min())
            let now = VRRPInstant.now
            // Bounded: at most a burst of 64 datagrams per turn, so timers are never starved.
            for _ in 0..<64 {
                guard let actions = receiveOne(&machine, now: now) else { break }
                driver.perform(actions, machine: machine)
            }
            let up = interface.isUp
            if up != linkUp {
                linkUp = up
                driver.perform(up ? machine.interfaceUp(now: now) : machine.interfaceDown(now: now), machine: machine)
            }
            driver.perform(machine.tick(now: now), machine: machine)
            driver.announceIfDue(now: now)
        }
        driver.perform(machine.shutdown(now: .now), machine: machine)
        // Whatever happened before, leave no virtual address behind.
        driver.perform([.removeVirtualAddresses], machine: machine)
    }

    private func adopt(_ changed: VRRPInstanceConfiguration, into machine: inout VRRPStateMachine) {
        do {
            try machine.reconfigure(priority: changed.priority, advertisementInterval: changed.advertisementInterval,
                                    preempt: changed.preempt, preemptDelay: changed.preemptDelay)
        } catch {
            return log("VRRP vrid \(changed.vrid) on \(changed.interface): change refused: \(error)")
        }
        shared.withLock { shared in
            shared.configuration = changed
            shared.status.configuredPriority = changed.priority
            shared.status.effectivePriority = machine.effectivePriority
            shared.status.advertisementInterval = changed.advertisementInterval
        }
        // Not the command's words: they may hold the auth password.
        log("VRRP vrid \(changed.vrid) on \(changed.interface): changed in place, priority \(changed.priority), "
            + "advert \(Int(changed.advertisementInterval) * 10) ms, preempt \(changed.preempt ? "on" : "off")")
    }

    private func waitForWork(until deadline: VRRPInstant?) {
        let now = VRRPInstant.now
        var wait = Self.longestWait
        if let deadline { wait = min(wait, deadline > now ? deadline.nanoseconds - now.nanoseconds : 0) }
        var descriptors = [pollfd(fd: socket.receiveDescriptor, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        _ = poll(&descriptors, 2, Int32((wait + 999_999) / 1_000_000))
        var drain = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &drain, drain.count) > 0 {}
    }

    /// Takes one datagram off the socket; nil when none is pending.
    private func receiveOne(_ machine: inout VRRPStateMachine, now: VRRPInstant) -> [VRRPAction]? {
        switch socket.receive() {
        case .nothingPending:
            return nil
        case .malformed:
            shared.withLock { $0.status.malformed += 1 }
            return []
        case .datagram(let datagram):
            // RFC 5798 section 7.1 and RFC 3768 section 7.1: every check, in the codec.
            let decoded = VRRPAdvertisement.decode(
                datagram.payload, source: datagram.source, destination: datagram.destination, ttl: datagram.ttl,
                expectedVersion: configuration.version.rawValue, expectedVRID: configuration.vrid,
                expectedInterval: configuration.advertisementInterval, authentication: authentication)
            switch decoded {
            case .failure(let reason):
                shared.withLock { $0.status.dropped[reason, default: 0] += 1 }
                return []
            case .success(let advertisement):
                shared.withLock { $0.status.advertisementsReceived += 1 }
                return machine.advertisementReceived(priority: advertisement.priority,
                                                     maxAdvertInterval: advertisement.maxAdvertInterval,
                                                     sender: datagram.source, now: now)
            }
        }
    }

    private var authentication: VRRPAuthentication {
        configuration.password.map(VRRPAuthentication.password) ?? .none
    }

    /// Carries out the machine's actions; remembers announcements still to repeat.
    private struct Driver {
        let instance: VRRPInstance
        var announcementsLeft = 0
        var nextAnnouncement: VRRPInstant?
        /// Notify processes started and not yet reaped.
        var notifyChildren: [pid_t] = []

        mutating func perform(_ actions: [VRRPAction], machine: VRRPStateMachine) {
            for action in actions { perform(action) }
            instance.shared.withLock { shared in
                shared.status.state = machine.state
                shared.status.effectivePriority = machine.effectivePriority
                shared.status.masterAddress = machine.masterAddress
            }
        }

        private mutating func perform(_ action: VRRPAction) {
            let configuration = instance.configuration
            switch action {
            case .sendAdvertisement(let priority, let interval):
                instance.sendAdvertisement(priority: priority, interval: interval)
            case .addVirtualAddresses:
                for address in configuration.virtualAddresses {
                    do { try instance.addresses.add(address, to: instance.interface) } catch { instance.log("VRRP: \(error)") }
                }
            case .removeVirtualAddresses:
                for address in configuration.virtualAddresses {
                    do { try instance.addresses.remove(address, from: instance.interface) } catch { instance.log("VRRP: \(error)") }
                }
                announcementsLeft = 0
                nextAnnouncement = nil
            case .announce:
                announcementsLeft = VRRPInstance.announcements
                nextAnnouncement = .now
                announceIfDue(now: .now)
            case .transition(let from, let to, let reason):
                // Only a master announces: a node that stopped being one (and may still hold the
                // addresses for a handover) must not point clients back at itself.
                if from == .master {
                    announcementsLeft = 0
                    nextAnnouncement = nil
                }
                instance.log("VRRP vrid \(configuration.vrid) on \(configuration.interface): \(from.rawValue) -> \(to.rawValue) (\(reason))")
                instance.shared.withLock { shared in
                    shared.status.lastTransitionTime = time(nil)
                    shared.status.lastTransitionReason = reason
                }
                if let notify = configuration.notify { runNotify(notify, state: to) }
            }
        }

        mutating func announceIfDue(now: VRRPInstant) {
            guard let due = nextAnnouncement, due <= now, announcementsLeft > 0 else { return }
            for address in instance.configuration.virtualAddresses.map(\.address) {
                do {
                    if address.family == .v4 {
                        try GratuitousARP.send(for: address, on: instance.interface)
                    } else {
                        try NeighborAdvertisement.send(for: address, on: instance.interface)
                    }
                } catch {
                    instance.log("VRRP: \(error)")
                }
            }
            announcementsLeft -= 1
            nextAnnouncement = announcementsLeft > 0 ? now.advanced(by: VRRPInstance.announcementSpacing) : nil
        }

        /// Starts `PATH STATE` and does not wait for it. Its own earlier notify processes that
        /// have exited are reaped here, by their ids: a library must not reap the process's
        /// other children (`waitpid(-1)` would take the daemon's or a test's).
        private mutating func runNotify(_ path: String, state: VRRPState) {
            var status: Int32 = 0
            notifyChildren.removeAll { waitpid($0, &status, WNOHANG) != 0 }
            var pid: pid_t = 0
            let arguments = [path, state.rawValue]
            var pointers = arguments.map { strdup($0) } + [nil]
            defer { pointers.forEach { free($0) } }
            let result = posix_spawn(&pid, path, nil, nil, &pointers, environ)
            if result == 0 { notifyChildren.append(pid) }
            if result != 0 { instance.log("VRRP: notify \(path) \(state.rawValue): \(String(cString: strerror(result)))") }
        }
    }

    private func sendAdvertisement(priority: UInt8, interval: UInt16) {
        let advertisement = VRRPAdvertisement(
            version: configuration.version.rawValue, vrid: configuration.vrid, priority: priority,
            maxAdvertInterval: interval, addresses: configuration.virtualAddresses.map(\.address),
            authentication: authentication)
        let destinations = configuration.peers.isEmpty ? [socket.multicastGroup] : configuration.peers
        for destination in destinations {
            do {
                try socket.send(try advertisement.encode(source: primaryAddress, destination: destination), to: destination)
                shared.withLock { $0.status.advertisementsSent += 1 }
            } catch {
                log("VRRP: \(error)")
            }
        }
    }
}

extension VRRPInstant {
    /// CLOCK_MONOTONIC: the instance's timers must not jump with the wall clock.
    static var now: VRRPInstant {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return VRRPInstant(nanoseconds: UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec))
    }
}

/// Runs `body` on a new POSIX thread (not a libdispatch worker: those change the signal mask).
func startThread(_ body: @escaping () -> Void) throws -> pthread_t {
    final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    let result = pthread_create(&thread, nil, { context in
        let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        throw VRRPSystemError("thread", errno: result)
    }
    return thread
}
