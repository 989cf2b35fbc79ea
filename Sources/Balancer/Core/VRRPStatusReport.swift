import VRRPCore

extension StatusReport.VRRPInstance {
    /// A running instance as reports show it; every drop reason is listed, with 0 if none.
    /// `now`: the wall clock, seconds since 1970, as the instance's transition times are.
    public init(_ status: VRRPInstanceStatus, now: Int) {
        self.init(
            vrid: Int(status.vrid), state: status.state, interface: status.interface, version: Int(status.version),
            priority: Int(status.configuredPriority), effectivePriority: Int(status.effectivePriority),
            advertMilliseconds: Int(status.advertisementInterval) * 10, master: status.masterAddress.map { "\($0)" },
            lastChange: status.lastTransitionTime ?? 0,
            // Not below 0 when the wall clock was set back since.
            lastChangeSecondsAgo: status.lastTransitionTime.map { max(0, now - $0) }, lastChangeReason: status.lastTransitionReason ?? "",
            sent: status.advertisementsSent, received: status.advertisementsReceived, malformed: status.malformed,
            dropped: Dictionary(uniqueKeysWithValues: VRRPDropReason.allCases.map { ($0, status.dropped[$0, default: 0]) }),
            virtualAddresses: status.virtualAddresses.map { VirtualAddress(address: "\($0.address)", onInterface: $0.onInterface) })
    }
}
