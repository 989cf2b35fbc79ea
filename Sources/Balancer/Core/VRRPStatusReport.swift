import VRRPCore

extension StatusReport.VRRPInstance {
    /// A running instance as reports show it; every drop reason is listed, with 0 if none.
    public init(_ status: VRRPInstanceStatus) {
        self.init(
            vrid: Int(status.vrid), state: status.state, interface: status.interface, version: Int(status.version),
            priority: Int(status.configuredPriority), effectivePriority: Int(status.effectivePriority),
            advertMilliseconds: Int(status.advertisementInterval) * 10, master: status.masterAddress.map { "\($0)" },
            lastChange: status.lastTransitionTime ?? 0, lastChangeReason: status.lastTransitionReason ?? "",
            sent: status.advertisementsSent, received: status.advertisementsReceived, malformed: status.malformed,
            dropped: Dictionary(uniqueKeysWithValues: VRRPDropReason.allCases.map { ($0.statusName, status.dropped[$0, default: 0]) }),
            virtualAddresses: status.virtualAddresses.map { VirtualAddress(address: "\($0.address)", onInterface: $0.onInterface) })
    }
}
