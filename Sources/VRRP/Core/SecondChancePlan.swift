/// When the second chance installs and removes what (`SecondChance`): events from the
/// instance in, actions out, the time passed in. A node that becomes master passes strays on
/// to the peer for `window` (the balancer's `drain` bound: how long the old master may still
/// carry connections); a node that stops being master accepts the VIPs' packets quietly for
/// as long, or, once its instance has stopped, until its drain ends.
public struct SecondChancePlan: Equatable, Sendable {
    public enum Action: Equatable, Sendable {
        /// Attach the redirect program (`SecondChanceProgram.redirect`).
        case startRedirecting
        case stopRedirecting
        /// Put the VIPs on `lo` and attach the ARP silence (`SecondChanceProgram.arpSilence`).
        case startAcceptingLocally
        /// Take the VIPs off `lo` and detach the program.
        case stopAcceptingLocally
    }

    private enum State: Equatable {
        /// Nothing installed: a backup.
        case idle
        case redirecting(until: VRRPInstant)
        /// Nothing installed, but leaving will leave connections behind.
        case masterPastWindow
        /// Until nil: the instance has stopped, and the process's drain ends it.
        case acceptingLocally(until: VRRPInstant?)
    }

    private var state = State.idle
    private let window: UInt64

    /// `seconds`: the balancer's `drain` bound; 0 turns it all off.
    public init(seconds: Int) {
        window = UInt64(max(0, seconds)) * 1_000_000_000
    }

    public mutating func becameMaster(now: VRRPInstant) -> [Action] {
        guard window > 0 else { return [] }
        let leaving: [Action]
        switch state {
        case .redirecting, .masterPastWindow: return []
        case .idle: leaving = []
        case .acceptingLocally: leaving = [.stopAcceptingLocally]
        }
        state = .redirecting(until: now.advanced(by: window))
        return leaving + [.startRedirecting]
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
        state = .acceptingLocally(until: now.advanced(by: window))
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
        case .acceptingLocally:
            state = .acceptingLocally(until: nil)
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

    public var nextDeadline: VRRPInstant? {
        switch state {
        case .idle, .masterPastWindow: return nil
        case .redirecting(let until): return until
        case .acceptingLocally(let until): return until
        }
    }
}
