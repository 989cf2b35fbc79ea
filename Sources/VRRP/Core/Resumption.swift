/// One VRRP instance as it moves to a new penha process on the same host (`penha upgrade`):
/// which instance (interface, VRID, family) and where its machine stood. A master goes on as
/// master in the new process with its next advertisement when the old one would have sent
/// it: no gap, and no address added or announced again (they stay on the interface). A backup
/// starts as a backup.
public struct VRRPResumption: Equatable, Sendable {
    public var interface: String
    public var vrid: UInt8
    public var family: IPAddress.Family
    /// When the master's next advertisement is due (monotonic nanoseconds: both processes
    /// read the same clock); nil for any other state.
    public var nextAdvertisement: VRRPInstant?

    public init(interface: String, vrid: UInt8, family: IPAddress.Family, nextAdvertisement: VRRPInstant?) {
        self.interface = interface
        self.vrid = vrid
        self.family = family
        self.nextAdvertisement = nextAdvertisement
    }

    public var isMaster: Bool { nextAdvertisement != nil }

    /// Whether it is the instance `configuration` runs.
    public func resumes(_ configuration: VRRPInstanceConfiguration) -> Bool {
        configuration.interface == interface && configuration.vrid == vrid && configuration.family == family
    }
}

/// A second chance's window open in an instance (`SecondChancePlan.isWindowOpen`): what it
/// installed lives in the kernel until the window ends, and only its process knows when, so
/// the instance does not move to another process meanwhile.
public struct OpenSecondChanceWindow: Equatable, Sendable {
    public var interface: String
    public var vrid: UInt8
    /// Whole seconds until it ends, one more than have fully to pass; nil: it ends with the process's drain.
    public var secondsLeft: Int?

    public init(interface: String, vrid: UInt8, secondsLeft: Int?) {
        self.interface = interface
        self.vrid = vrid
        self.secondsLeft = secondsLeft
    }
}

extension VRRPStateMachine {
    /// A master's next advertisement, for a handover to another process; nil in any other
    /// state (a resigning master is not handed over: it is stopping).
    public var nextAdvertisement: VRRPInstant? {
        guard case .master = state, !isResigning else { return nil }
        return nextDeadline
    }
}
