/// When the second chance installs and removes what (`SecondChance`): events from the
/// instance in, actions out, the time passed in. A node that becomes master passes strays on
/// to the peer for `window` (the balancer's `drain` bound as set now: how long the old master
/// may still carry connections); a node that stops being master accepts the VIPs' packets
/// quietly for as long, or, once its instance has stopped, until its drain ends.
public struct SecondChancePlan: Equatable, Sendable {
    public enum Action: Equatable, Sendable {
        /// Attach the redirect program (`SecondChanceProgram.redirect`).
        case startRedirecting
        case stopRedirecting
        /// Attach the ARP silence (`SecondChanceProgram.arpSilence`), then put the VIPs on `lo`.
        case startAcceptingLocally
        /// Take the VIPs off `lo` and detach the program.
        case stopAcceptingLocally
    }

    private enum State: Equatable {
        /// Nothing installed: a backup.
        case idle
        case redirecting(since: VRRPInstant)
        /// Nothing installed, but leaving will leave connections behind.
        case masterPastWindow
        /// `untilDrainEnds`: the instance has stopped, and the process's drain ends it.
        case acceptingLocally(since: VRRPInstant, untilDrainEnds: Bool)
    }

    private var state = State.idle
    /// Follows `drain` (`windowChanged`): a window that is running ends at its new bound.
    private var window: UInt64

    /// `seconds`: the balancer's `drain` bound; 0 turns it all off.
    public init(seconds: Int) {
        window = Self.nanoseconds(seconds)
    }

    private static func nanoseconds(_ seconds: Int) -> UInt64 { UInt64(max(0, seconds)) * 1_000_000_000 }

    /// `drain N` changed: a running window now ends N seconds after it began (at once if that
    /// is past, or N is 0).
    public mutating func windowChanged(seconds: Int, now: VRRPInstant) -> [Action] {
        window = Self.nanoseconds(seconds)
        return tick(now: now)
    }

    public mutating func becameMaster(now: VRRPInstant) -> [Action] {
        let leaving: [Action]
        switch state {
        case .redirecting, .masterPastWindow: return []
        case .idle: leaving = []
        case .acceptingLocally: leaving = [.stopAcceptingLocally]
        }
        guard window > 0 else {
            state = .idle
            return leaving
        }
        state = .redirecting(since: now)
        return leaving + [.startRedirecting]
    }

    /// The instance goes on as master where another penha process left it (`penha upgrade`),
    /// its addresses in place: no window opens (the connections are this process's now), but
    /// leaving opens one, as for any master.
    public mutating func resumedAsMaster() {
        if case .idle = state { state = .masterPastWindow }
    }

    /// The virtual addresses went: after a master's handover, or with the instance (a
    /// backup's removal at its end changes nothing).
    public mutating func leftMaster(now: VRRPInstant) -> [Action] {
        let leaving: [Action]
        switch state {
        case .idle, .acceptingLocally: return []
        case .redirecting: leaving = [.stopRedirecting]
        case .masterPastWindow: leaving = []
        }
        guard window > 0 else {
            state = .idle
            return leaving
        }
        state = .acceptingLocally(since: now, untilDrainEnds: false)
        return leaving + [.startAcceptingLocally]
    }

    /// The instance's thread has ended: no more ticks. A redirect goes (no adverts any more);
    /// accepting locally goes on until `drainEnded`.
    public mutating func instanceStopped() -> [Action] {
        switch state {
        case .idle: return []
        case .masterPastWindow:
            state = .idle
            return []
        case .redirecting:
            state = .idle
            return [.stopRedirecting]
        case .acceptingLocally(let since, _):
            state = .acceptingLocally(since: since, untilDrainEnds: true)
            return []
        }
    }

    /// The process's drain is over (or it never drains): whatever is left goes.
    public mutating func drainEnded() -> [Action] {
        defer { state = .idle }
        switch state {
        case .idle, .masterPastWindow: return []
        case .redirecting: return [.stopRedirecting]
        case .acceptingLocally: return [.stopAcceptingLocally]
        }
    }

    /// A window that has passed closes.
    public mutating func tick(now: VRRPInstant) -> [Action] {
        guard let deadline = nextDeadline, now >= deadline else { return [] }
        switch state {
        case .redirecting:
            state = .masterPastWindow
            return [.stopRedirecting]
        case .acceptingLocally:
            state = .idle
            return [.stopAcceptingLocally]
        case .idle, .masterPastWindow:
            return []
        }
    }

    /// Whether a window is open: a redirect, or the VIPs on `lo` with the ARP silence, are
    /// installed (kernel state this process removes when the window ends); it ends at
    /// `nextDeadline`, or with the process's drain when that is nil.
    public var isWindowOpen: Bool {
        switch state {
        case .idle, .masterPastWindow: return false
        case .redirecting, .acceptingLocally: return true
        }
    }

    public var nextDeadline: VRRPInstant? {
        switch state {
        case .idle, .masterPastWindow, .acceptingLocally(_, untilDrainEnds: true): return nil
        case .redirecting(let since), .acceptingLocally(let since, untilDrainEnds: false): return since.advanced(by: window)
        }
    }
}
