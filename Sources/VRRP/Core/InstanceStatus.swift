/// What `penha status` shows of a running instance: a snapshot the instance's thread
/// publishes, plain data.
public struct VRRPInstanceStatus: Sendable {
    public struct VirtualAddressStatus: Sendable {
        public let address: VirtualAddress
        public let onInterface: Bool

        public init(address: VirtualAddress, onInterface: Bool) {
            self.address = address
            self.onInterface = onInterface
        }
    }

    public var state: VRRPState
    public var interface: String
    public var vrid: UInt8
    public var version: UInt8
    public var configuredPriority: UInt8
    public var effectivePriority: UInt8
    /// Centiseconds.
    public var advertisementInterval: UInt16
    public var masterAddress: IPAddress?
    /// Filled in when a report asks, since it asks the interface.
    public var virtualAddresses: [VirtualAddressStatus] = []
    /// Wall-clock seconds since 1970, and why.
    public var lastTransitionTime: Int?
    public var lastTransitionReason: String?
    public var advertisementsSent: UInt64 = 0
    public var advertisementsReceived: UInt64 = 0
    public var dropped: [VRRPDropReason: UInt64] = [:]
    /// IPv4 datagrams whose IP header did not even parse.
    public var malformed: UInt64 = 0

    /// A starting instance's status: no master known, no advert yet.
    public init(state: VRRPState, interface: String, vrid: UInt8, version: UInt8, configuredPriority: UInt8,
                effectivePriority: UInt8, advertisementInterval: UInt16) {
        self.state = state
        self.interface = interface
        self.vrid = vrid
        self.version = version
        self.configuredPriority = configuredPriority
        self.effectivePriority = effectivePriority
        self.advertisementInterval = advertisementInterval
    }
}
