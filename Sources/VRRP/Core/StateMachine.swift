/// The VRRP router state machine (RFC 5798 section 6.4; RFC 3768 section 6.4 for version 2) as a
/// pure value, in the style of swift-nio-ssh's connection state machine: it never reads a clock,
/// opens a socket or arms a timer. The caller feeds it events stamped with `now`, performs the
/// returned `VRRPAction`s in order, and calls `tick(now:)` once `nextDeadline` has passed.

/// A point in time: nanoseconds since an arbitrary origin, such as `NIODeadline.uptimeNanoseconds`.
/// Durations in this file are nanoseconds too; intervals use VRRPv3's wire unit, centiseconds.
public struct VRRPInstant: Comparable, Hashable, Sendable {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) {
        self.nanoseconds = nanoseconds
    }

    public func advanced(by nanoseconds: UInt64) -> VRRPInstant {
        VRRPInstant(nanoseconds: self.nanoseconds + nanoseconds)
    }

    public static func < (lhs: VRRPInstant, rhs: VRRPInstant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    /// The earlier of two optional instants, nil if both are. Without an array: the instance's
    /// thread asks this for every advert.
    public static func earliest(_ first: VRRPInstant?, _ second: VRRPInstant?) -> VRRPInstant? {
        guard let first else { return second }
        guard let second else { return first }
        return min(first, second)
    }
}

/// The states of RFC 5798 section 6.4, plus Fault (link down) as keepalived names it.
public enum VRRPState: String, CaseIterable, Codable, Sendable {
    case initialize = "INIT"
    case backup = "BACKUP"
    case master = "MASTER"
    case fault = "FAULT"
}

/// What the caller must do, in the order given.
public enum VRRPAction: Equatable, Sendable {
    /// Multicast an advertisement. `interval` is in centiseconds for both versions
    /// (for version 2 it is a whole number of seconds times 100).
    case sendAdvertisement(priority: UInt8, interval: UInt16)
    case addVirtualAddresses
    /// Also on every entry into Backup, so it must succeed for addresses that are not there.
    case removeVirtualAddresses
    /// Gratuitous ARP / unsolicited Neighbor Advertisement for the virtual addresses;
    /// the caller repeats them as it sees fit.
    case announce
    case transition(from: VRRPState, to: VRRPState, reason: String)
}

/// A state change, kept for status display.
public struct VRRPTransition: Equatable, Sendable {
    public var from: VRRPState
    public var to: VRRPState
    public var reason: String
    public var at: VRRPInstant
}

public enum VRRPConfigurationError: Error, Equatable, CustomStringConvertible {
    case vrid
    case priority
    case advertisementInterval(UInt16)

    public var description: String {
        switch self {
        case .vrid: return "VRRP virtual router id must be 1...255"
        case .priority: return "VRRP priority must be 1...255 (255 only for the address owner)"
        case .advertisementInterval(let value):
            return "VRRP advertisement interval \(value) cs is invalid: version 3 takes 1...4095 centiseconds, "
                + "version 2 whole seconds 1...255"
        }
    }
}

public struct VRRPConfiguration: Equatable, Sendable {
    public enum Version: UInt8, Sendable {
        case v2 = 2
        case v3 = 3
    }

    public var version: Version
    public var vrid: UInt8
    /// 1...255; 255 means we own the virtual addresses (RFC 5798 section 6.1).
    public var priority: UInt8
    /// Centiseconds. Version 3 carries 12 bits (1...4095); version 2 whole seconds (100...25500, step 100).
    public var advertisementInterval: UInt16
    /// Whether a higher-priority backup takes over from a lower-priority master (RFC 5798 section 6.1).
    public var preempt: Bool
    /// Seconds after startup (`start` or `interfaceUp`) during which a backup does not preempt a
    /// lower-priority master, as keepalived's `preempt_delay`; it follows that master meanwhile,
    /// so takeover happens one Master_Down_Interval after the first advertisement it discards.
    public var preemptDelay: UInt16?
    /// Our own address on the interface: breaks priority ties and is reported as master address.
    public var primaryAddress: IPAddress

    public init(
        version: Version, vrid: UInt8, priority: UInt8, advertisementInterval: UInt16 = 100,
        preempt: Bool = true, preemptDelay: UInt16? = nil, primaryAddress: IPAddress
    ) throws {
        guard vrid != 0 else { throw VRRPConfigurationError.vrid }
        guard priority != 0 else { throw VRRPConfigurationError.priority }
        let validInterval: Bool
        switch version {
        case .v2: validInterval = advertisementInterval % 100 == 0 && (100...25500).contains(advertisementInterval)
        case .v3: validInterval = (1...4095).contains(advertisementInterval)
        }
        guard validInterval else { throw VRRPConfigurationError.advertisementInterval(advertisementInterval) }
        self.version = version
        self.vrid = vrid
        self.priority = priority
        self.advertisementInterval = advertisementInterval
        self.preempt = preempt
        self.preemptDelay = preemptDelay
        self.primaryAddress = primaryAddress
    }
}

public struct VRRPStateMachine: Sendable {
    public private(set) var configuration: VRRPConfiguration
    /// The priority used wherever the RFC says Priority (adverts, Skew_Time, comparisons).
    /// Only a configured owner may run at 255, and 255 is what makes it behave as the owner.
    public private(set) var effectivePriority: UInt8
    /// The sender of the last accepted advertisement, ourselves when master, nil when unknown.
    public private(set) var masterAddress: IPAddress?
    /// Master_Adver_Interval in centiseconds (RFC 5798 section 6.1).
    public private(set) var masterAdvertInterval: UInt16
    public private(set) var lastTransition: VRRPTransition?

    private var phase: Phase = .initialize
    private var preemptNotBefore = VRRPInstant(nanoseconds: 0)
    /// Set while this node, no longer master, still holds the virtual addresses.
    private var handover: Handover?
    /// When the addresses may next be announced again for another router (`reannouncement`).
    private var reannouncementAllowed = VRRPInstant(nanoseconds: 0)

    private enum Phase: Sendable {
        case initialize
        case backup(masterDownAt: VRRPInstant, cause: TakeoverCause)
        case master(advertAt: VRRPInstant)
        /// Shutdown of a master: priority 0 advertised (again each interval, in case one is lost),
        /// addresses still held and served until `handover` completes. Reported as Master.
        case resigning(advertAt: VRRPInstant)
        case fault
    }

    /// A planned switchover loses no connection when the old master answers for the addresses
    /// until every client has been told the new one: the new master's first advertisement
    /// precedes its gratuitous ARP (RFC 5798 section 6.4.2), so the old master waits for its
    /// second before it lets them go, or for `deadline` if no new master shows up.
    private struct Handover: Sendable {
        var advertisementsAwaited: Int
        var deadline: VRRPInstant
    }

    /// Why the Master_Down_Timer would fire; only for the transition reason.
    private enum TakeoverCause: Sendable {
        case silence
        case resigned(IPAddress)
        case preempting(priority: UInt8, sender: IPAddress)

        var reason: String {
            switch self {
            case .silence: return "master down timer expired"
            case .resigned(let sender): return "priority 0 from \(sender)"
            case .preempting(let priority, let sender): return "preempted lower priority \(priority) from \(sender)"
            }
        }
    }

    private static let nanosecondsPerCentisecond: UInt64 = 10_000_000
    private static let nanosecondsPerSecond: UInt64 = 1_000_000_000

    public init(configuration: VRRPConfiguration) {
        self.configuration = configuration
        self.effectivePriority = configuration.priority
        self.masterAdvertInterval = configuration.advertisementInterval
    }

    public var state: VRRPState {
        switch phase {
        case .initialize: return .initialize
        case .backup: return .backup
        case .master, .resigning: return .master
        case .fault: return .fault
        }
    }

    /// Whether the virtual addresses are on the interface by this machine's actions: as master,
    /// and after it while a handover lasts.
    public var holdsVirtualAddresses: Bool {
        switch phase {
        case .master, .resigning: return true
        case .backup: return handover != nil
        case .initialize, .fault: return false
        }
    }

    public var configuredPriority: UInt8 { configuration.priority }

    /// When `tick(now:)` must next be called; nil when no timer is armed (Initialize, Fault).
    public var nextDeadline: VRRPInstant? {
        let timer: VRRPInstant?
        switch phase {
        case .backup(let masterDownAt, _): timer = masterDownAt
        case .master(let advertAt), .resigning(let advertAt): timer = advertAt
        case .initialize, .fault: timer = nil
        }
        return VRRPInstant.earliest(timer, handover?.deadline)
    }

    /// Skew_Time in nanoseconds, from the effective priority.
    var skewTime: UInt64 {
        let weight = UInt64(256 - Int(effectivePriority))
        switch configuration.version {
        case .v2:  // RFC 3768 section 6.1: (256 - Priority) / 256 seconds
            return weight * Self.nanosecondsPerSecond / 256
        case .v3:  // RFC 5798 section 6.1: ((256 - Priority) * Master_Adver_Interval) / 256 centiseconds
            // Divided last, as keepalived does: in whole centiseconds every priority would get
            // the same skew, 0, at an interval of 1 cs, and two backups would take over together.
            return weight * UInt64(masterAdvertInterval) * Self.nanosecondsPerCentisecond / 256
        }
    }

    /// Master_Down_Interval in nanoseconds. Version 2 never adopts the master's interval,
    /// so there `masterAdvertInterval` is always our own Advertisement_Interval.
    var masterDownInterval: UInt64 {
        3 * UInt64(masterAdvertInterval) * Self.nanosecondsPerCentisecond + skewTime
    }

    /// The longest a handover keeps the addresses: three advertisement intervals, more than any
    /// backup's Skew_Time plus one interval, so the new master's second advert is in.
    var handoverBound: UInt64 {
        3 * UInt64(masterAdvertInterval) * Self.nanosecondsPerCentisecond
    }

    /// A stopping penha must be gone well within its 5 s shutdown deadline: its handover lasts at
    /// most 2 s, which covers Skew_Time plus one interval for advertisement intervals up to 1 s.
    var resignationBound: UInt64 {
        min(handoverBound, 2 * Self.nanosecondsPerSecond)
    }

    // MARK: Events

    public mutating func start(now: VRRPInstant) -> [VRRPAction] {
        guard case .initialize = phase else { return [] }
        return startUp(reason: "startup", now: now)
    }

    public mutating func advertisementReceived(
        priority: UInt8, maxAdvertInterval: UInt16, sender: IPAddress, now: VRRPInstant
    ) -> [VRRPAction] {
        switch phase {
        case .initialize, .fault:
            return []

        case .backup(let masterDownAt, _):
            let released = priority > 0 ? heardNewMaster() : []
            // RFC 5798 section 6.4.2
            if priority == 0 {
                phase = .backup(masterDownAt: now.advanced(by: skewTime), cause: .resigned(sender))
            } else if priority >= effectivePriority || !mayPreempt(now: now) {
                follow(master: sender, interval: maxAdvertInterval)
                phase = downTimerArmed(now: now)
            } else {
                // Discarded: the down timer runs out and we take over.
                phase = .backup(masterDownAt: masterDownAt, cause: .preempting(priority: priority, sender: sender))
            }
            return released

        case .resigning:
            // A priority 0 advert is another router resigning too: not the new master.
            guard priority > 0 else { return [] }
            let released = heardNewMaster()
            guard !released.isEmpty else { return [] }
            masterAddress = nil
            return released + [enter(.initialize, reason: "shutdown, handed over to \(sender)", now: now)]

        case .master:
            // RFC 5798 section 6.4.3
            if priority == 0 {
                phase = adverTimerArmed(now: now)
                return reannouncement(sender: sender, now: now) + [advertisement]
            }
            let reason: String
            if priority > effectivePriority {
                reason = "higher priority \(priority) from \(sender)"
            } else if priority == effectivePriority && sender > configuration.primaryAddress {
                reason = "equal priority \(priority) from higher address \(sender)"
            } else {
                return answerLowerMaster(sender: sender, now: now)
            }
            follow(master: sender, interval: maxAdvertInterval)
            // The addresses go with the new master's next advert: this one may precede its
            // gratuitous ARP. Priority 0 tells it we stopped being master, which it answers with
            // that advert and, having been master all along (a healed split brain), with an
            // announcement too: clients may have followed ours meanwhile.
            handover = Handover(advertisementsAwaited: 1, deadline: now.advanced(by: handoverBound))
            return [resignation, enter(downTimerArmed(now: now), reason: reason, now: now)]
        }
    }

    /// Fires whichever timer is due; does nothing before `nextDeadline`.
    public mutating func tick(now: VRRPInstant) -> [VRRPAction] {
        switch phase {
        case .master(let advertAt) where now >= advertAt:
            // RFC 5798 section 6.4.3: Adver_Timer fires
            phase = .master(advertAt: nextAdvertTime(due: advertAt, now: now))
            return [advertisement]
        case .backup(let masterDownAt, let cause) where now >= masterDownAt:
            // RFC 5798 section 6.4.2: Master_Down_Timer fires
            return becomeMaster(reason: cause.reason, now: now)
        case .backup where handover.map { now >= $0.deadline } == true:
            handover = nil
            return [.removeVirtualAddresses]
        case .resigning where handover.map { now >= $0.deadline } == true:
            handover = nil
            masterAddress = nil
            return [.removeVirtualAddresses, enter(.initialize, reason: "shutdown", now: now)]
        case .resigning(let advertAt) where now >= advertAt:
            phase = .resigning(advertAt: advertTime(after: now))
            return [resignation]
        default:
            return []
        }
    }

    /// Starts as the master another process on this host was (`penha upgrade`): the addresses
    /// are on the interface and announced already, so neither is done again, and the first
    /// advertisement goes when that process's next one was due (now, if that has passed).
    public mutating func resumeAsMaster(advertisingAt due: VRRPInstant, now: VRRPInstant) -> [VRRPAction] {
        guard case .initialize = phase else { return [] }
        preemptNotBefore = now.advanced(by: UInt64(configuration.preemptDelay ?? 0) * Self.nanosecondsPerSecond)
        masterAddress = configuration.primaryAddress
        masterAdvertInterval = configuration.advertisementInterval
        return [enter(.master(advertAt: due > now ? due : now), reason: "taken over from another process", now: now)]
    }

    /// A master resigning (shutdown), not to be handed over.
    var isResigning: Bool {
        if case .resigning = phase { return true }
        return false
    }

    /// Stops the instance (→ Initialize). A master says goodbye with priority 0 (RFC 5798
    /// section 6.4.3 Shutdown), so a backup takes over after Skew_Time, but keeps and serves the
    /// addresses until the handover completes; the caller keeps feeding it events until `state`
    /// is Initialize, which `nextDeadline` bounds.
    public mutating func shutdown(now: VRRPInstant) -> [VRRPAction] {
        switch phase {
        case .resigning: return []
        case .master: break
        default: return leave(to: .initialize, reason: "shutdown", now: now)
        }
        phase = .resigning(advertAt: advertTime(after: now))
        handover = Handover(advertisementsAwaited: 2, deadline: now.advanced(by: resignationBound))
        return [resignation]
    }

    /// A runtime change of the `vrrp` command: the new words apply from now on, in whatever
    /// state the machine is, with no transition of its own. A lower priority lets a backup
    /// preempt as `setEffectivePriority` does; a new interval goes into the next advertisement.
    public mutating func reconfigure(priority: UInt8, advertisementInterval: UInt16, preempt: Bool,
                                     preemptDelay: UInt16?) throws {
        configuration = try VRRPConfiguration(
            version: configuration.version, vrid: configuration.vrid, priority: priority,
            advertisementInterval: advertisementInterval, preempt: preempt, preemptDelay: preemptDelay,
            primaryAddress: configuration.primaryAddress)
        setEffectivePriority(priority)
        // Version 2 never adopts the master's interval, and a master advertises its own.
        if configuration.version == .v2 || state == .master { masterAdvertInterval = advertisementInterval }
    }

    /// The link is gone (→ Fault): give up the addresses; no advertisement can leave anyway.
    public mutating func interfaceDown(now: VRRPInstant) -> [VRRPAction] {
        leave(to: .fault, reason: "interface down", now: now)
    }

    /// Leaves Fault the way `start` leaves Initialize, preempt delay included.
    public mutating func interfaceUp(now: VRRPInstant) -> [VRRPAction] {
        guard case .fault = phase else { return [] }
        return startUp(reason: "interface up", now: now)
    }

    /// Health coupling: the priority to advertise and compare with from now on, clamped to 1...254
    /// (1...255 for a configured owner; 0 is reserved for the shutdown advert). Nothing happens at
    /// once: a master that drops below a peer is preempted by it, and a backup that rises above
    /// the master discards its adverts and takes over when its down timer runs out. An owner
    /// lowered below 255 behaves as an ordinary router until restored.
    public mutating func setEffectivePriority(_ priority: UInt8) {
        effectivePriority = min(max(priority, 1), configuration.priority == 255 ? 255 : 254)
    }

    // MARK: Helpers

    private var advertisement: VRRPAction {
        .sendAdvertisement(priority: effectivePriority, interval: configuration.advertisementInterval)
    }

    private var resignation: VRRPAction {
        .sendAdvertisement(priority: 0, interval: configuration.advertisementInterval)
    }

    private func advertTime(after now: VRRPInstant) -> VRRPInstant {
        now.advanced(by: UInt64(configuration.advertisementInterval) * Self.nanosecondsPerCentisecond)
    }

    /// The Adver_Timer reset when it fired late: one interval after it was due, so that a wake
    /// a little late does not stretch every interval (adverts stay Advertisement_Interval
    /// apart, as the backups' Master_Down_Interval assumes); after a stall of an interval or
    /// more, one interval from now, never a burst to catch up.
    private func nextAdvertTime(due: VRRPInstant, now: VRRPInstant) -> VRRPInstant {
        let next = advertTime(after: due)
        return next > now ? next : advertTime(after: now)
    }

    private func adverTimerArmed(now: VRRPInstant) -> Phase {
        .master(advertAt: advertTime(after: now))
    }

    /// Another router that believes it is master and loses to us: a split brain whose link has
    /// healed. RFC 5798 section 6.4.3 discards its advert; we also advertise at once, so it
    /// yields now rather than at our next interval, and announce the addresses again, since
    /// clients learnt its link address meanwhile (keepalived answers the same way).
    private mutating func answerLowerMaster(sender: IPAddress, now: VRRPInstant) -> [VRRPAction] {
        let announcing = reannouncement(sender: sender, now: now)
        guard !announcing.isEmpty else { return [] }
        phase = adverTimerArmed(now: now)
        return announcing + [advertisement]
    }

    /// A master that hears another router give up or lose mastership announces the addresses
    /// again, before its advert, so that the other's handover (which ends with that advert) never
    /// leaves a client pointing at it. At most once an interval, so a flood of such adverts
    /// cannot make us flood the link.
    private mutating func reannouncement(sender: IPAddress, now: VRRPInstant) -> [VRRPAction] {
        guard sender != configuration.primaryAddress, now >= reannouncementAllowed else { return [] }
        reannouncementAllowed = advertTime(after: now)
        return [.announce]
    }

    /// Counts an advertisement of the new master towards the handover; the addresses go
    /// (`removeVirtualAddresses`) with the last one awaited.
    private mutating func heardNewMaster() -> [VRRPAction] {
        guard var pending = handover else { return [] }
        pending.advertisementsAwaited -= 1
        handover = pending.advertisementsAwaited > 0 ? pending : nil
        return handover == nil ? [.removeVirtualAddresses] : []
    }

    private func downTimerArmed(now: VRRPInstant) -> Phase {
        .backup(masterDownAt: now.advanced(by: masterDownInterval), cause: .silence)
    }

    /// RFC 5798 section 6.1: the owner always preempts, whatever Preempt_Mode says.
    private func mayPreempt(now: VRRPInstant) -> Bool {
        effectivePriority == 255 || (configuration.preempt && now >= preemptNotBefore)
    }

    /// Records the master we now listen to; only version 3 adopts its interval (RFC 5798 section 6.4.2).
    private mutating func follow(master: IPAddress?, interval: UInt16) {
        masterAddress = master
        if configuration.version == .v3 { masterAdvertInterval = interval }
    }

    /// RFC 5798 section 6.4.1
    private mutating func startUp(reason: String, now: VRRPInstant) -> [VRRPAction] {
        preemptNotBefore = now.advanced(by: UInt64(configuration.preemptDelay ?? 0) * Self.nanosecondsPerSecond)
        if effectivePriority == 255 {
            return becomeMaster(reason: reason + " as address owner", now: now)
        }
        follow(master: nil, interval: configuration.advertisementInterval)
        // RFC 5798 section 6.4.2: a backup does not answer for the addresses, so it must not
        // hold one that an earlier run killed with SIGKILL left on the interface.
        return [.removeVirtualAddresses, enter(downTimerArmed(now: now), reason: reason, now: now)]
    }

    private mutating func becomeMaster(reason: String, now: VRRPInstant) -> [VRRPAction] {
        // Still holding them from a handover that the new master cut short by going away.
        let adding: [VRRPAction] = holdsVirtualAddresses ? [] : [.addVirtualAddresses]
        handover = nil
        masterAddress = configuration.primaryAddress
        masterAdvertInterval = configuration.advertisementInterval
        let change = enter(adverTimerArmed(now: now), reason: reason, now: now)
        return [advertisement] + adding + [.announce, change]
    }

    /// Shared by shutdown (→ Initialize) and interface down (→ Fault).
    private mutating func leave(to target: VRRPState, reason: String, now: VRRPInstant) -> [VRRPAction] {
        guard state != .initialize, state != target else { return [] }
        let actions: [VRRPAction] = holdsVirtualAddresses ? [.removeVirtualAddresses] : []
        handover = nil
        masterAddress = nil
        return actions + [enter(target == .fault ? .fault : .initialize, reason: reason, now: now)]
    }

    private mutating func enter(_ next: Phase, reason: String, now: VRRPInstant) -> VRRPAction {
        let from = state
        phase = next
        lastTransition = VRRPTransition(from: from, to: state, reason: reason, at: now)
        return .transition(from: from, to: state, reason: reason)
    }
}
