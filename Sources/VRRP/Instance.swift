import VRRPCore
import CVRRPSockets
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One running VRRP instance: the pure `VRRPStateMachine` driven by a thread of its own,
/// which waits on the advertisement socket with a timeout bounded by the machine's next
/// deadline, and performs what the machine asks (adverts, addresses, announcements).
/// The thread shares nothing with the balancer but the snapshot and the inbox below.
// Unchecked: what other threads reach is `shared` (a Mutex) and the wake pipe; the `var`s are
// the instance thread's alone (`thread` is set before it starts and read after it is joined).
public final class VRRPInstance: @unchecked Sendable {
    private let interface: NetworkInterface
    private let primaryAddress: IPAddress
    private let socket: AdvertisementSocket
    private let addresses: VirtualAddresses
    /// With `second_chance`: nil without.
    private let secondChance: SecondChanceTraffic?
    private let log: @Sendable (String) -> Void
    private let stateChanged: @Sendable () -> Void
    private let shared: Mutex<Shared>
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// Readable when a link goes up or down (rtnetlink): the thread need not ask each turn.
    private let linkMonitor: Int32
    private var thread: pthread_t?
    /// The thread's own, never touched by another: what it made of the last datagram, for a
    /// repeat of it (`AdvertisementSocket.Reception.repeated`), and the advertisement it last
    /// encoded, sent again as long as priority and interval stay the same. Both are forgotten
    /// when the configuration changes.
    private var lastOutcome: ReceiveOutcome?
    private var encodedAdvertisement: (priority: UInt8, interval: UInt16, messages: [(IPAddress, [UInt8])])?

    private enum ReceiveOutcome {
        case malformed
        case dropped(VRRPDropReason)
        case accepted(priority: UInt8, interval: UInt16, sender: IPAddress)
    }

    private struct Shared {
        /// Changed only by the instance's thread, when it adopts `pendingConfiguration`.
        var configuration: VRRPInstanceConfiguration
        var pendingConfiguration: VRRPInstanceConfiguration?
        var status: VRRPInstanceStatus
        /// `drain N` as set now: the second chance's window.
        var drainSeconds: Int
        var availableServers: Int?
        var stopping = false
        /// `handOff`: the thread ends as it is, and says where its machine stood.
        var handingOff = false
        var resumption: VRRPResumption?
        /// Loop turns so far, for the watchdog: a thread that stops turning is wedged.
        var turns: UInt64 = 0
    }

    /// The `vrrp` command the instance runs.
    public var configuration: VRRPInstanceConfiguration { shared.withLock { $0.configuration } }

    /// Gratuitous ARP / neighbour advertisements are repeated: the first one may be lost
    /// while a switch is still learning.
    static let announcements = 3
    static let announcementSpacing: UInt64 = 500_000_000
    /// The longest the thread sleeps when no timer is due: then it reads the link state even
    /// without a link notice (one may be lost when the netlink socket's buffer overflows).
    /// Stops, changes and link notices wake it at once.
    static let longestWait: UInt64 = 1_000_000_000
    /// A resigning master's handover ends within 2 s (`VRRPStateMachine.resignationBound`);
    /// this bounds the thread's wait for it whatever happens.
    static let longestResignation: UInt64 = 3_000_000_000

    /// `stateChanged`: called on the instance's thread after each change of state, once the
    /// status shows the new one. `drainSeconds`: the balancer's `drain` bound, the second
    /// chance's window (`setDrainSeconds` follows it). `logError`: what fails and leaves a
    /// promise unkept (a second chance that cannot be installed).
    public init(configuration: VRRPInstanceConfiguration, drainSeconds: Int = 0, log: @escaping @Sendable (String) -> Void,
                logError: @escaping @Sendable (String) -> Void, stateChanged: @escaping @Sendable () -> Void) throws {
        self.log = log
        self.stateChanged = stateChanged
        interface = try NetworkInterface(name: configuration.interface)
        let vips = configuration.virtualAddresses.map(\.address)
        guard let primary = interface.primaryAddress(configuration.family, excluding: vips) else {
            throw VRRPSystemError("interface \(interface.name) has no \(configuration.family == .v4 ? "IPv4" : "IPv6 link-local") address of its own")
        }
        primaryAddress = primary
        socket = try AdvertisementSocket(family: configuration.family, interface: interface, source: primary)
        addresses = try VirtualAddresses()
        let interface = interface
        secondChance = try configuration.secondChance.map {
            try SecondChanceTraffic($0, configuration: configuration, interface: interface, window: drainSeconds, log: log,
                                    logError: logError)
        }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw VRRPSystemError("pipe", errno: errno) }
        for end in pipeEnds {
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = pipeEnds[0]
        wakeWrite = pipeEnds[1]
        linkMonitor = cvrrp_open_link_monitor()
        guard linkMonitor >= 0 else {
            let code = errno
            close(wakeRead)
            close(wakeWrite)
            throw VRRPSystemError("netlink socket for link changes", errno: code)
        }
        shared = Mutex(Shared(configuration: configuration, status: VRRPInstanceStatus(
            state: .initialize, interface: configuration.interface, vrid: configuration.vrid,
            version: configuration.version.rawValue, configuredPriority: configuration.priority,
            effectivePriority: configuration.priority, advertisementInterval: configuration.advertisementInterval),
            drainSeconds: drainSeconds))
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
        close(linkMonitor)
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

    /// Health coupling: the number of servers the balancer could use right now. Wakes the
    /// thread only for a new count: it is told every second.
    public func setAvailableServers(_ count: Int) {
        let changed = shared.withLock { shared in
            defer { shared.availableServers = count }
            return shared.availableServers != count
        }
        if changed { wake() }
    }

    /// `drain N` as set now (told every second, like the server count): a second chance's
    /// running window ends at the new bound.
    public func setDrainSeconds(_ seconds: Int) {
        let changed = shared.withLock { shared in
            defer { shared.drainSeconds = seconds }
            return shared.drainSeconds != seconds
        }
        if changed { wake() }
    }

    /// `resuming`: where the instance stood in the penha process this one took over from
    /// (`penha upgrade`); a master goes on as master (`VRRPStateMachine.resumeAsMaster`).
    public func start(resuming: VRRPResumption? = nil) throws {
        let machine = try VRRPStateMachine(configuration: VRRPConfiguration(
            version: configuration.version, vrid: configuration.vrid, priority: configuration.priority,
            advertisementInterval: configuration.advertisementInterval, preempt: configuration.preempt,
            preemptDelay: configuration.preemptDelay, primaryAddress: primaryAddress))
        let resumedAt = resuming?.nextAdvertisement
        thread = try startThread { [self] in run(machine, resumingAsMasterAt: resumedAt) }
    }

    /// Another penha process on this host goes on with the instance (`penha upgrade`): the
    /// thread ends with no resignation and no address removed, and says where its machine
    /// stood. In two halves, as `stop`, so that several instances hand off together.
    public func beginHandOff() {
        shared.withLock { shared in
            shared.handingOff = true
            // Its thread ends: the watchdog no longer counts its turns.
            shared.stopping = true
        }
        wake()
    }

    /// Returns within `longestWait` of `beginHandOff`.
    public func finishHandOff() -> VRRPResumption {
        finishStopping()
        let configuration = configuration
        return shared.withLock { $0.resumption }
            ?? VRRPResumption(interface: configuration.interface, vrid: configuration.vrid, family: configuration.family,
                              nextAdvertisement: nil)
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

    /// The process's drain is over, or the instance was removed at runtime: a stopped
    /// instance's second chance (its VIPs on `lo` and its filter) goes.
    public func endSecondChance() {
        secondChance?.drainEnded()
    }

    /// Its second chance's window, while one is open: the instance then does not move to
    /// another process (`penha upgrade` is refused until it ends).
    public var openSecondChanceWindow: OpenSecondChanceWindow? {
        guard let end = secondChance?.openWindowEnd else { return nil }
        let now = VRRPInstant.now
        let secondsLeft = end.map { Int(($0.nanoseconds > now.nanoseconds ? $0.nanoseconds - now.nanoseconds : 0) / 1_000_000_000) + 1 }
        return OpenSecondChanceWindow(interface: configuration.interface, vrid: configuration.vrid, secondsLeft: secondsLeft)
    }

    /// Loop turns of the instance's thread so far; nil once its stop has begun (the thread
    /// ends, and the watchdog must not take that for a stall).
    public var turns: UInt64? { shared.withLock { $0.stopping ? nil : $0.turns } }

    /// Makes the thread turn once now, so that a waiting one shows it is alive.
    public func nudge() { wake() }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    // MARK: The instance's thread

    private func run(_ initial: VRRPStateMachine, resumingAsMasterAt resumedAt: VRRPInstant?) {
        var machine = initial
        var driver = Driver(instance: self)
        var linkUp = interface.isUp
        var linkReadAt = VRRPInstant.now
        secondChance?.removeLeftovers()
        if let resumedAt {
            secondChance?.resumedAsMaster()
            driver.perform(machine.resumeAsMaster(advertisingAt: resumedAt, now: .now), machine: machine)
        } else {
            driver.perform(machine.start(now: .now), machine: machine)
        }
        if !linkUp { driver.perform(machine.interfaceDown(now: .now), machine: machine) }
        var resignedAt: VRRPInstant?
        var appliedServers: Int?
        var appliedDrainSeconds: Int?
        // Made once: this loop runs for every advert.
        var descriptors = [pollfd(fd: socket.receiveDescriptor, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: linkMonitor, events: Int16(POLLIN), revents: 0)]
        var drain = [UInt8](repeating: 0, count: 8192)
        while true {
            let (stopping, handingOff, availableServers, drainSeconds, changed) = shared.withLock { shared in
                defer {
                    shared.pendingConfiguration = nil
                    shared.turns &+= 1
                }
                return (shared.stopping, shared.handingOff, shared.availableServers, shared.drainSeconds, shared.pendingConfiguration)
            }
            if handingOff, resignedAt == nil {
                let configuration = configuration
                let resumption = VRRPResumption(interface: configuration.interface, vrid: configuration.vrid, family: configuration.family,
                                                nextAdvertisement: machine.nextAdvertisement)
                shared.withLock { $0.resumption = resumption }
                return
            }
            if let changed {
                adopt(changed, into: &machine)
                appliedServers = nil
            }
            if stopping, resignedAt == nil {
                resignedAt = .now
                driver.perform(machine.shutdown(now: .now), machine: machine)
            }
            if let resignedAt, machine.state != .master || VRRPInstant.now >= resignedAt.advanced(by: Self.longestResignation) {
                break
            }
            if drainSeconds != appliedDrainSeconds {
                appliedDrainSeconds = drainSeconds
                secondChance?.windowChanged(seconds: drainSeconds, now: .now)
            }
            if let availableServers, availableServers != appliedServers {
                appliedServers = availableServers
                machine.setEffectivePriority(configuration.effectivePriority(availableServers: availableServers))
            }
            let deadline = VRRPInstant.earliest(machine.nextDeadline, driver.nextAnnouncement)
            waitForWork(&descriptors, until: .earliest(deadline, secondChance?.nextDeadline))
            let now = VRRPInstant.now
            // One datagram a turn: the wait returns at once while more are pending, and the
            // timers below run between any two.
            if descriptors[0].revents != 0, let actions = receiveOne(&machine, now: now) {
                driver.perform(actions, machine: machine)
            }
            if descriptors[1].revents != 0 { Self.drain(wakeRead, into: &drain) }
            if descriptors[2].revents != 0 { Self.drain(linkMonitor, into: &drain) }
            if descriptors[2].revents != 0 || now >= linkReadAt.advanced(by: Self.longestWait) {
                linkReadAt = now
                let up = interface.isUp
                if up != linkUp {
                    linkUp = up
                    driver.perform(up ? machine.interfaceUp(now: now) : machine.interfaceDown(now: now), machine: machine)
                }
            }
            driver.perform(machine.tick(now: now), machine: machine)
            driver.announceIfDue(now: now)
            secondChance?.tick(now: now)
            if machine.state != .master { secondChance?.refreshPeer(now: now) }
        }
        driver.perform(machine.shutdown(now: .now), machine: machine)
        // Whatever happened before, leave no virtual address behind.
        driver.perform([.removeVirtualAddresses], machine: machine)
        secondChance?.instanceStopped()
    }

    private func adopt(_ changed: VRRPInstanceConfiguration, into machine: inout VRRPStateMachine) {
        do {
            try machine.reconfigure(priority: changed.priority, advertisementInterval: changed.advertisementInterval,
                                    preempt: changed.preempt, preemptDelay: changed.preemptDelay)
        } catch {
            return log("VRRP vrid \(changed.vrid) on \(changed.interface): change refused: \(error)")
        }
        lastOutcome = nil
        encodedAdvertisement = nil
        socket.forgetPrevious()
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

    /// Empties a non-blocking descriptor whose contents only say "look": bounded, 64 reads
    /// being far more than one turn leaves in the wake pipe or the link monitor.
    private static func drain(_ descriptor: Int32, into buffer: inout [UInt8]) {
        for _ in 0..<64 {
            guard read(descriptor, &buffer, buffer.count) > 0 else { return }
        }
    }

    /// Sleeps until `deadline` to the nanosecond (ppoll), or until a descriptor is readable;
    /// `revents` says which (ppoll sets it for every descriptor, a timeout clears them all;
    /// after an error, such as a signal, nothing is taken as readable).
    private func waitForWork(_ descriptors: inout [pollfd], until deadline: VRRPInstant?) {
        let now = VRRPInstant.now
        var wait = Self.longestWait
        if let deadline { wait = min(wait, deadline > now ? deadline.nanoseconds - now.nanoseconds : 0) }
        guard cvrrp_wait(&descriptors, nfds_t(descriptors.count), wait) < 0 else { return }
        for index in descriptors.indices { descriptors[index].revents = 0 }
    }

    /// Takes one datagram off the socket; nil when none is pending.
    private func receiveOne(_ machine: inout VRRPStateMachine, now: VRRPInstant) -> [VRRPAction]? {
        let outcome: ReceiveOutcome
        switch socket.receive() {
        case .nothingPending:
            return nil
        case .repeated:
            guard let lastOutcome else { return nil }
            outcome = lastOutcome
        case .malformed:
            outcome = .malformed
        case .datagram(let datagram):
            // RFC 5798 section 7.1 and RFC 3768 section 7.1: every check, in the codec.
            let decoded = VRRPAdvertisement.decode(
                datagram.payload, source: datagram.source, destination: datagram.destination, ttl: datagram.ttl,
                expectedVersion: configuration.version.rawValue, expectedVRID: configuration.vrid,
                expectedInterval: configuration.advertisementInterval, authentication: authentication)
            switch decoded {
            case .failure(let reason):
                outcome = .dropped(reason)
            case .success(let advertisement):
                outcome = .accepted(priority: advertisement.priority, interval: advertisement.maxAdvertInterval,
                                    sender: datagram.source)
            }
        }
        lastOutcome = outcome
        switch outcome {
        case .malformed:
            shared.withLock { $0.status.malformed += 1 }
            return []
        case .dropped(let reason):
            shared.withLock { $0.status.dropped[reason, default: 0] += 1 }
            return []
        case .accepted(let priority, let interval, let sender):
            shared.withLock { $0.status.advertisementsReceived += 1 }
            return machine.advertisementReceived(priority: priority, maxAdvertInterval: interval, sender: sender, now: now)
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
        /// What the status shows of the machine, published again only when it changed (an
        /// accepted advert changes the master address without any action).
        var published: (state: VRRPState, priority: UInt8, master: IPAddress?)?

        mutating func perform(_ actions: [VRRPAction], machine: VRRPStateMachine) {
            for action in actions { perform(action) }
            let current = (state: machine.state, priority: machine.effectivePriority, master: machine.masterAddress)
            // Field by field: a tuple's == is generic, slow in a debug build, and this runs per advert.
            if let published, published.state == current.state, published.priority == current.priority,
               published.master == current.master { return }
            let stateChanged = published?.state != current.state
            published = current
            instance.shared.withLock { shared in
                shared.status.state = current.state
                shared.status.effectivePriority = current.priority
                shared.status.masterAddress = current.master
            }
            if stateChanged { instance.stateChanged() }
        }

        private mutating func perform(_ action: VRRPAction) {
            if case .sendAdvertisement(let priority, let interval) = action {
                // Before the configuration is read: this is the one action of every advert.
                return instance.sendAdvertisement(priority: priority, interval: interval)
            }
            let configuration = instance.configuration
            switch action {
            case .sendAdvertisement:
                break
            case .addVirtualAddresses:
                instance.secondChance?.becameMaster(now: .now)
                for address in configuration.virtualAddresses {
                    do { try instance.addresses.add(address, to: instance.interface) } catch { instance.log("VRRP: \(error)") }
                }
            case .removeVirtualAddresses:
                for address in configuration.virtualAddresses {
                    do { try instance.addresses.remove(address, from: instance.interface) } catch { instance.log("VRRP: \(error)") }
                }
                instance.secondChance?.leftMaster(now: .now)
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
        if let encoded = encodedAdvertisement, encoded.priority == priority, encoded.interval == interval {
            return send(encoded.messages)
        }
        let configuration = configuration
        let advertisement = VRRPAdvertisement(
            version: configuration.version.rawValue, vrid: configuration.vrid, priority: priority,
            maxAdvertInterval: interval, addresses: configuration.virtualAddresses.map(\.address),
            authentication: authentication)
        let destinations = configuration.peers.isEmpty ? [socket.multicastGroup] : configuration.peers
        do {
            let messages = try destinations.map { ($0, try advertisement.encode(source: primaryAddress, destination: $0)) }
            encodedAdvertisement = (priority, interval, messages)
            send(messages)
        } catch {
            log("VRRP: \(error)")
        }
    }

    private func send(_ messages: [(IPAddress, [UInt8])]) {
        for (destination, message) in messages {
            do {
                try socket.send(message, to: destination)
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
public func startThread(_ body: @escaping () -> Void) throws -> pthread_t {
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
